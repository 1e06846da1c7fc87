"""The compiled kernels: the same numbers as plain Python (NUMBA_DISABLE_JIT=1), tables filled on
demand, and a cache that makes a fresh process start quickly."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import papi_env  # noqa: F401
from hardware.cost_tables import CostTables

ROOT = Path(__file__).resolve().parent.parent
TRAJECTORY = """
import pickle, sys
import gymnasium as gym, numpy as np
import papi_env
SPEC = "papi_env/PapiSpecSchedule-v0"
STATIC = {"reward": "edp", "batch_size": [4, 16], "max_steps": 60}
SERVE = {"requests": 16, "warmup": 2, "rate": [16.0, 64.0], "acceptance_rate": 0.7, "max_steps": 60,
         "shaping": "remaining"}
runs = []
for env_id, kwargs, time_key in (
        ("papi_env/PapiSchedule-v0", {**STATIC, "tlp": [1, 2, 4]}, "time_fc"),
        ("papi_env/PapiKernelSchedule-v0", STATIC, "time_fc"),
        ("papi_env/PapiSplitSchedule-v0", {**STATIC, "tlp": [[0, 1], [5, 3]]}, "time_fc"), (SPEC, STATIC, "time_fc"),
        (SPEC, {**STATIC, "token_credit": "best", "reward_tokens": "expected", "reward": "latency_target"}, "time_fc"),
        (papi_env.SERVE_ENV_ID, SERVE, "time")):
    vec = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    obs, _ = vec.reset(seed=5)
    vec.action_space.seed(2)
    steps = []
    for _ in range(80):
        obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
        steps.append((obs, reward, terminated, truncated, info.get(time_key, 0.0), info.get("tokens", 0)))
    runs.append((env_id, steps))
sys.stdout.buffer.write(pickle.dumps(runs))
"""


def _trajectories(disable_jit: bool) -> list:
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1" if disable_jit else "0"}
    out = subprocess.run([sys.executable, "-c", TRAJECTORY], cwd=ROOT, env=env, capture_output=True, check=True)
    return pickle.loads(out.stdout)


def test_compiled_kernels_equal_plain_python():
    """NUMBA_DISABLE_JIT=1 runs the kernels as the Python they are written in. The lock-step
    variants give the same bits; the speculation and serving variants' exp and log come from the C
    library when compiled and from numpy or math in Python, so their numbers agree to the last
    bits (the episode ends and every discrete outcome exactly)."""
    compiled, plain = _trajectories(disable_jit=False), _trajectories(disable_jit=True)
    for (env_id, a), (_, b) in zip(compiled, plain, strict=True):
        for x, y in zip(a, b, strict=True):
            for part_x, part_y in zip(x, y, strict=True):
                if env_id.endswith(("PapiSpecSchedule-v0", "PapiServe-v0")) and np.asarray(part_x).dtype.kind == "f":
                    np.testing.assert_allclose(part_x, part_y, rtol=1e-12, atol=0, err_msg=env_id)
                else:
                    assert np.array_equal(part_x, part_y), env_id


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("papi_env/PapiSchedule-v0", {"tlp": 2}), ("papi_env/PapiKernelSchedule-v0", {"tlp": 2}),
    ("papi_env/PapiSplitSchedule-v0", {"tlp": 2}), ("papi_env/PapiSpecSchedule-v0", {"token_credit": "best"})])
def test_kernels_fill_missing_table_entries_from_the_cost_model(env_id, kwargs):
    """From empty tables (the target's and the draft model's), the compiled step fills what it
    needs from CostModel and gives the numbers it gives with every entry filled already."""
    def run() -> list[float]:
        env = gym.make(env_id, batch_size=8, **kwargs)
        env.reset(seed=3)
        env.action_space.seed(1)
        return [env.step(env.action_space.sample())[1] for _ in range(30)]

    CostTables.clear_shared()
    cold = run()
    warm = run()  # the same process's shared tables, now filled
    assert cold == warm
    core = gym.make(env_id).unwrapped.core
    assert not np.isnan(core.tables.fixed).all()


def test_a_fresh_process_starts_fast_from_the_cache():
    """The kernels load from numba's on-disk cache (papi_env.precompile fills it): import, make,
    reset and a first step in a new process take well under the seconds a compile takes."""
    subprocess.run([sys.executable, "-m", "papi_env.precompile"], cwd=ROOT, check=True, capture_output=True)
    script = ("import time; t = time.perf_counter(); import gymnasium as gym, papi_env; "
              "e = gym.make('papi_env/PapiSchedule-v0'); e.reset(seed=0); e.step(1); "
              "print(time.perf_counter() - t)")
    seconds = float(subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                                   check=True).stdout)
    assert seconds < 2.0, f"{seconds:.2f} s: the kernels were compiled again, not loaded from the cache"

