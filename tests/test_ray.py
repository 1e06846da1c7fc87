"""Ray as the engine: Tune sweeps, fan-out of the multi-run scripts, a two-node cluster, RLlib."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import papi_env

ray = pytest.importorskip("ray")  # installed by the README's set-up; a clear skip elsewhere

MINIMAL = ["--algo", "ppo", "--env", "papi_env/PapiSchedule-v0", "--seeds", "2", "--total-timesteps", "2048",
           "--episodes", "2"]
METRICS = ("score_vs_threshold", "gap_to_oracle", "gpu_share", "joules_per_token")


@pytest.fixture
def fresh_ray():
    """Each test starts its own Ray (a local instance or a cluster) and leaves none behind."""
    ray.shutdown()
    yield
    ray.shutdown()


def _trial_metrics(record: dict) -> list[tuple]:
    return [(t["seed"], *(t[m] for m in METRICS)) for t in record["trials"]]


@pytest.mark.slow  # ~20 s; the fan-out tests keep Ray in the fast set
def test_minimal_sweep(tmp_path, fresh_ray):
    from experiments import sweep

    assert sweep.main([*MINIMAL, "--num-cpus", "2", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["engine"] == "ray" and record["ray_version"] == ray.__version__
    assert [t["seed"] for t in record["trials"]] == [0, 1]
    for t in record["trials"]:
        assert t["error"] is None and t["node"] and t["timesteps"] >= 2048
        assert all(t[m] is not None and np.isfinite(t[m]) for m in METRICS)
        assert (tmp_path / "runs" / t["run_dir"].rsplit("/", 1)[-1] / "tb").is_dir()  # TensorBoard per trial
    # the trials are the project's own training runs: the same numbers as train.train alone
    history = json.loads((tmp_path / "runs" / record["trials"][1]["run_dir"].rsplit("/", 1)[-1]
                          / "evaluations.json").read_text())
    assert history[-1]["score_vs_threshold"] == record["trials"][1]["score_vs_threshold"]
    held_out = record["best"][0]["held_out"]
    assert len(held_out["vs_threshold"]) == 2 and held_out["episodes"] == 2
    assert "| 2 |" in (tmp_path / "sweep.md").read_text()
    # Tune reads each trial's metrics from its JSON log (without it: "Failed to fetch metrics" per trial)
    assert len(list((tmp_path / "tune").rglob("result.json"))) == 2
    # --resume of a finished sweep retrains nothing and gives the same trials
    speed = [(tmp_path / "runs" / t["run_dir"].rsplit("/", 1)[-1] / "train_speed.json").read_text()
             for t in record["trials"]]
    assert sweep.main(["--out", str(tmp_path), "--resume", "--num-cpus", "2"]) == 0
    again = json.loads((tmp_path / "sweep.json").read_text())
    assert _trial_metrics(again) == _trial_metrics(record)
    assert speed == [(tmp_path / "runs" / t["run_dir"].rsplit("/", 1)[-1] / "train_speed.json").read_text()
                     for t in record["trials"]]


@pytest.mark.parametrize("space, args, message", [
    ({"space": {"not_a_knob": 1}}, [], "unknown key(s) ['not_a_knob']"),
    ({"space": {"learning_rate": {"loguniform": "x"}}}, [], "loguniform takes a non-empty list"),
    ({"space": {"env_kwargs": {"model": {"choice": ["gpt-5"]}}}}, [], "space.env_kwargs"),
    ({"space": {"n_steps": {"grid_search": [64, 128]}}}, ["--search", "optuna"], "replace grid_search"),
    ({"seeds": 0}, [], "--seeds must be a positive integer"),
    ({"colour": "red"}, [], "top-level keys may be"),
])
def test_sweep_rejects_bad_spaces(tmp_path, capsys, space, args, message):
    import yaml

    from experiments import sweep

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    assert sweep.main(["--space", str(path), *args, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "tune").exists()  # nothing started


def test_sweep_resume_needs_a_sweep(tmp_path, capsys):
    from experiments import sweep

    assert sweep.main(["--out", str(tmp_path), "--resume"]) == 2
    assert "no sweep to resume" in capsys.readouterr().err


def test_fanout_gives_the_in_process_results(fresh_ray):
    """A headroom cell computed as a Ray task equals the same cell computed here."""
    from experiments import fanout, headroom

    job = ("papi_env/PapiKernelSchedule-v0", "default", "latency", 1, False)
    [(remote, node)] = fanout.run_all(headroom.cell, [job], num_cpus=1, with_nodes=True)
    assert remote == headroom.cell(job) and node == ray.get_runtime_context().get_node_id()
    with pytest.raises(RuntimeError, match="failed"):
        fanout.run_all(headroom.cell, [("papi_env/NoSuchEnv-v0", "default", "latency", 1, False)], num_cpus=1)


def test_policies_evaluated_as_ray_tasks_equal_one_after_another(fresh_ray):
    from experiments import evaluate

    kwargs = {"reward": "edp", "batch_size": [2, 8], "token_credit": "best"}
    args = ("papi_env/PapiSpecSchedule-v0", ["threshold", "fixed-tlp:2", "oracle", "greedy-ema"], 3, 0, kwargs)
    assert evaluate.evaluate(*args, num_cpus=2, parallel=True) == evaluate.evaluate(*args)


def test_envs_take_rllib_env_config():
    env = papi_env.PapiScheduleEnv({"batch_size": [4], "reward": "energy"})
    assert env.reward_kind == "energy"
    split = papi_env.PapiSplitScheduleEnv({"batch_size": [4]}, render_mode="ansi")
    assert split.render_mode == "ansi"
    with pytest.raises(ValueError, match="both in env_config and as keyword"):
        papi_env.PapiSpecScheduleEnv({"batch_size": [4]}, batch_size=[8])
    with pytest.raises(TypeError, match="env_config must be a dict"):
        papi_env.PapiKernelScheduleEnv("batch_size=4")


def test_register_ray_envs_builds_every_env_by_name():
    from ray.tune.registry import ENV_CREATOR, _global_registry

    ids = papi_env.register_ray_envs()
    assert ids == list(papi_env.ALL_ENV_IDS) and papi_env.SERVE_ENV_ID in ids
    for env_id in ids:
        config = {"requests": 8, "warmup": 0} if env_id == papi_env.SERVE_ENV_ID else {"batch_size": [4]}
        env = _global_registry.get(ENV_CREATOR, env_id)(config)
        assert isinstance(env.unwrapped, (papi_env.PapiBaseEnv, papi_env.PapiServeEnv))
        env.reset(seed=0)
        env.close()


@pytest.mark.slow
def test_two_node_cluster_sweep_matches_one_node(tmp_path, fresh_ray):
    """A head and a worker node in-process (Ray's own test utility): the same command with --address
    runs trials on both nodes, with the numbers of the single-node run."""
    from ray.cluster_utils import Cluster

    from experiments import sweep

    assert sweep.main([*MINIMAL, "--num-cpus", "2", "--out", str(tmp_path / "one")]) == 0
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        assert sweep.main([*MINIMAL, "--address", cluster.address, "--out", str(tmp_path / "two")]) == 0
    finally:
        ray.shutdown()
        cluster.shutdown()
    one = json.loads((tmp_path / "one" / "sweep.json").read_text())
    two = json.loads((tmp_path / "two" / "sweep.json").read_text())
    assert two["nodes"] == 2 and len({t["node"] for t in two["trials"]}) == 2  # trials landed on both nodes
    assert _trial_metrics(two) == _trial_metrics(one)


@pytest.mark.slow
def test_rllib_ppo_trains_on_papi_schedule(fresh_ray):
    """RLlib finds the env by name (register_ray_envs), passes env_config positionally, and reports
    the episode score through a callback."""
    pytest.importorskip("ray.rllib")
    from ray.rllib.algorithms.ppo import PPOConfig

    from experiments.rllib_metrics import ScoreMetrics

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    papi_env.register_ray_envs()
    config = (PPOConfig().environment("papi_env/PapiSchedule-v0", env_config={"batch_size": [4]})
              .env_runners(num_env_runners=1).training(train_batch_size=512, minibatch_size=128, num_epochs=1)
              .callbacks(ScoreMetrics).debugging(seed=0))
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    runners = result["env_runners"]
    assert runners["num_episodes"] >= 1 and runners["score"] > 0
    assert gym.make("papi_env/PapiSchedule-v0", batch_size=[4]).unwrapped.reward_kind == "latency"


@pytest.mark.slow
def test_optuna_search_with_asha(tmp_path, fresh_ray):
    import yaml

    from experiments import sweep

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"space": {"learning_rate": {"loguniform": [1e-4, 1e-3]},
                                               "n_steps": {"choice": [128, 256]}}}))
    assert sweep.main(["--space", str(space), "--search", "optuna", "--scheduler", "asha", "--num-samples", "3",
                       "--total-timesteps", "1024", "--episodes", "1", "--num-cpus", "2",
                       "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert record["search"] == "optuna" and len(record["trials"]) == 3
    for t in record["trials"]:
        assert 1e-4 <= t["config"]["learning_rate"] <= 1e-3 and t["config"]["n_steps"] in (128, 256)
        assert t["seed"] == sweep.config_seed(t["config"], 0) and t["error"] is None
