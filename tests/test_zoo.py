"""rl-baselines3-zoo trains from our configs unchanged (issue 15)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rl_zoo3")
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("algo, env_id, steps", [("ppo", "papi_env/PapiSchedule-v0", 2048),
                                                 ("dqn", "papi_env/PapiSpecSchedule-v0", 600)])
def test_rl_zoo3_trains_from_our_configs(tmp_path, algo, env_id, steps):
    cmd = [sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", env_id, "--gym-packages", "papi_env",
           "--conf-file", str(ROOT / "experiments" / "configs" / f"{algo}.yaml"), "-n", str(steps),
           "-f", str(tmp_path), "--seed", "0", "--eval-freq", "-1"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert list(tmp_path.rglob("*.zip")), res.stdout[-2000:]
