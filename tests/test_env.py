"""PapiSchedule-v0: API conformance, reward accounting, determinism, errors."""

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import papi_env
from agents.policies import AlwaysGPU, AlwaysPIM, Oracle, RandomPolicy, ThresholdCharacterizer, make_policy
from experiments import evaluate
from papi_env import DEFAULT_ENV_ID, PapiScheduleEnv

SMALL = dict(batch_size=(4, 8), tlp=(1, 2), dataset="general-qa")


def rollout(env, policy, seed):
    obs, _ = env.reset(seed=seed)
    trace, total = [], 0.0
    while True:
        a, _ = policy.predict(obs)
        obs, r, term, trunc, info = env.step(int(a))
        trace.append((obs.tobytes(), r, info["rlp"], info["tlp"]))
        total += r
        if term or trunc:
            return trace, total, info


def test_gymnasium_checker_passes():
    check_env(gym.make(DEFAULT_ENV_ID, **SMALL).unwrapped, skip_render_check=True)


def test_sb3_checker_passes():
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3_checker.check_env(PapiScheduleEnv(**SMALL), warn=True)


def test_same_seed_same_trajectory():
    env = gym.make(DEFAULT_ENV_ID)
    a = rollout(env, RandomPolicy(3), seed=11)
    b = rollout(env, RandomPolicy(3), seed=11)
    assert a[0] == b[0] and a[1] == b[1]
    assert rollout(env, RandomPolicy(3), seed=12)[0] != a[0]


@pytest.mark.parametrize("reward", ["latency", "energy", "edp"])
def test_rewards_sum_to_the_episode_objective(reward):
    env = PapiScheduleEnv(reward=reward, **SMALL)
    _, total, info = rollout(env, RandomPolicy(0), seed=5)
    t, e = info["episode_time"], info["episode_energy"]
    expected = {"latency": -t / env.time_scale, "energy": -e / env.energy_scale,
                "edp": -t * e / (env.time_scale * env.energy_scale)}[reward]
    assert total == pytest.approx(expected, rel=1e-9)


def test_latency_reward_is_about_one_per_step():
    env = PapiScheduleEnv()
    trace, _, _ = rollout(env, AlwaysGPU(), seed=0)
    rewards = np.array([r for _, r, _, _ in trace])
    assert 0.3 < -rewards.mean() < 5


def test_info_and_episode_totals():
    env = PapiScheduleEnv(**SMALL)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["rlp"] == info["batch_size"]
    tokens = 0
    while True:
        obs, r, term, trunc, info = env.step(0)
        assert env.observation_space.contains(obs)
        parts = [info[k] for k in info if k.startswith("time_")]
        assert r == pytest.approx(-sum(parts) / env.time_scale)
        tokens += info["tokens"]
        if term:
            break
    assert tokens == info["episode_tokens"] == env.batch.total_output
    assert info["tokens_per_s"] == pytest.approx(tokens / info["episode_time"])


def test_invalid_actions_fail_clearly():
    env = PapiScheduleEnv(**SMALL)
    env.reset(seed=0)
    for bad in (2, -1, 0.5, "gpu"):
        with pytest.raises(ValueError, match=r"invalid action .* expected 0 \(FC-PIM\) or 1 \(GPU\)"):
            env.step(bad)
    with pytest.raises(RuntimeError, match="reset"):
        PapiScheduleEnv(**SMALL).step(0)


def test_masks_on_single_unit_systems():
    env = PapiScheduleEnv(system="a100_attacc", **SMALL)
    assert env.action_masks().tolist() == [False, True]
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"not available on system 'a100_attacc'; allowed: \[1\]"):
        env.step(0)
    assert PapiScheduleEnv(**SMALL).action_masks().tolist() == [True, True]


@pytest.mark.parametrize("kwargs, match", [
    (dict(reward="speed"), "reward must be one of"),
    (dict(batch_size=-4), "batch_size must be"),
    (dict(tlp=0), "tlp must be"),
    (dict(max_steps=0), "max_steps"),
    (dict(model="gpt-5"), "unknown model"),
    (dict(dataset="poetry"), "unknown dataset"),
    (dict(render_mode="human"), "render_mode"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PapiScheduleEnv(**kwargs)


def test_tlp_schedule_and_truncation():
    env = PapiScheduleEnv(batch_size=8, tlp=[[0, 1], [5, 4]], max_steps=8, dataset="creative-writing")
    env.reset(seed=1)
    seen = []
    for _ in range(8):
        _, _, term, trunc, info = env.step(1)
        seen.append(info["tlp"])
        if term or trunc:
            break
    assert seen[:5] == [1] * 5 and set(seen[5:]) == {4}
    assert trunc and "episode_time" in info


def test_render_ansi():
    env = PapiScheduleEnv(render_mode="ansi", **SMALL)
    env.reset(seed=0)
    env.step(1)
    assert "RLP" in env.render() and "gpu" in env.render()


def test_threshold_reads_rlp_and_tlp_from_the_observation():
    env = PapiScheduleEnv(batch_size=64, tlp=4)
    obs, _ = env.reset(seed=0)
    assert ThresholdCharacterizer(alpha=255).predict(obs)[0] == 1  # 64 x 4 = 256 > 255
    assert ThresholdCharacterizer(alpha=256).predict(obs)[0] == 0
    batch = np.stack([obs, obs])
    assert ThresholdCharacterizer(alpha=10).predict(batch)[0].tolist() == [1, 1]
    assert AlwaysPIM().predict(batch)[0].tolist() == [0, 0]


def test_threshold_is_near_the_oracle_and_beats_static():
    result = evaluate.evaluate(DEFAULT_ENV_ID, ["threshold", "oracle", "always-gpu", "always-pim", "random"], 6, 0)
    p = result["policies"]
    assert p["threshold"]["ratio_vs_threshold"] == 1.0
    assert p["oracle"]["ratio_vs_threshold"] >= 0.9999
    assert p["threshold"]["tokens_per_s"] >= 0.98 * p["oracle"]["tokens_per_s"]
    assert p["always-gpu"]["ratio_vs_threshold"] < 0.9
    assert p["random"]["ratio_vs_threshold"] < p["oracle"]["ratio_vs_threshold"]


def test_oracle_needs_env_and_unknown_policy():
    with pytest.raises(RuntimeError, match="needs its environment"):
        Oracle().predict(np.zeros(8, dtype=np.float32))
    with pytest.raises(ValueError, match="unknown policy 'smart'"):
        make_policy("smart")


def test_evaluate_cli_writes_results(tmp_path):
    rc = evaluate.main(["--policies", "threshold,always-pim", "--episodes", "2", "--out", str(tmp_path),
                        "--env-kwargs", json.dumps(SMALL)])
    assert rc == 0
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["episodes"] == 2 and set(data["policies"]) == {"threshold", "always-pim"}
    assert {"tokens_per_s", "ratio_vs_threshold"} <= set(data["policies"]["always-pim"])
    assert evaluate.main(["--policies", "nonsense", "--episodes", "1", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x" / "eval.json").exists()


def test_env_and_simulator_never_import_torch():
    code = ("import sys, gymnasium as gym, papi_env, hardware.calibrate; "
            "e = gym.make(papi_env.DEFAULT_ENV_ID); e.reset(seed=0); e.step(1); "
            "print('torch' in sys.modules, 'stable_baselines3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_registered():
    assert papi_env.DEFAULT_ENV_ID in gym.registry


def test_bench_prints_every_variant(capsys):
    from experiments import bench

    bench.main(["--steps", "500"])
    out = capsys.readouterr().out
    for env_id in papi_env.ALL_ENV_IDS:
        assert env_id in out
    assert "as trained" in out and "x CartPole" in out and "(target 0.1x)" in out and "peak memory" in out


@pytest.mark.parametrize("env_id", list(papi_env.ALL_ENV_IDS))
def test_time_limit_from_make_ends_with_a_score(env_id):
    """gymnasium.make(id, max_episode_steps=K) in EpisodeEndInfo: the episode gymnasium's TimeLimit
    truncates comes with its score and episode infos so far; the env's own max_steps=K gives the
    same score unwrapped."""
    from papi_env.wrappers import EpisodeEndInfo

    kwargs = {"requests": 64, "warmup": 4} if env_id == papi_env.SERVE_ENV_ID else {"batch_size": 64}
    own = gym.make(env_id, max_steps=5, **kwargs)
    own.reset(seed=0)
    own.action_space.seed(0)
    for _ in range(5):
        *_, own_info = own.step(own.action_space.sample())
    env = EpisodeEndInfo(gym.make(env_id, max_episode_steps=5, **kwargs))
    env.reset(seed=0)
    env.action_space.seed(0)
    for step in range(5):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not terminated and truncated == (step == 4)
    assert "episode_time" in info and info["episode_time"] > 0 and info["score"] == own_info["score"]
    assert info["score"] > 0 if env_id != papi_env.SERVE_ENV_ID else info["score"] >= 0  # none served yet
