"""The one training job (experiments.jobs) and the one run configuration (experiments.run_config)."""

import json

import pytest

pytest.importorskip("stable_baselines3")

from experiments import jobs, run_config, sweep  # noqa: E402
from experiments.cli import UsageError  # noqa: E402

ENV = "papi_env/PapiSchedule-v0"


def test_run_names_follow_one_scheme(tmp_path):
    assert jobs.TrainJob("ppo", ENV, 3, str(tmp_path)).name == "ppo_PapiSchedule-v0_s3"
    assert jobs.TrainJob("ppo", ENV, 0, str(tmp_path), label="edp").name == "ppo_PapiSchedule-v0_edp_s0"
    assert jobs.TrainJob("ppo", ENV, 0, str(tmp_path), run_name="mine").run_dir == tmp_path / "mine"
    with pytest.raises(ValueError, match="resume must be one of"):
        jobs.TrainJob("ppo", ENV, 0, str(tmp_path), resume="maybe")


def test_job_config_lays_env_kwargs_and_overrides_over_the_yaml(tmp_path):
    job = jobs.TrainJob("ppo", ENV, 0, str(tmp_path), 1000, env_kwargs={"reward": "edp"},
                        overrides={"n_envs": 2, "learning_rate": 1e-3})
    cfg = job.config()
    assert cfg["env_kwargs"]["reward"] == "edp" and cfg["n_envs"] == 2 and cfg["n_timesteps"] == 1000
    assert cfg["hyperparams"]["learning_rate"] == 1e-3
    base = run_config.load_config("ppo", ENV)
    assert {k: v for k, v in cfg["env_kwargs"].items() if k != "reward"} == {
        k: v for k, v in base["env_kwargs"].items() if k != "reward"}


@pytest.mark.parametrize("job_kwargs, match", [
    ({"env_kwargs": {"reward": "speed"}}, "reward must be one of"),
    ({"overrides": {"n_envs": 0}}, "n_envs must be a positive integer"),
    ({"overrides": {"n_stepz": 8}}, r"unknown key\(s\) \['n_stepz'\]"),
    ({"overrides": {"vec": "gpu"}}, "vec must be one of"),
])
def test_bad_jobs_fail_before_any_training(tmp_path, job_kwargs, match):
    with pytest.raises(UsageError, match=match):  # a ConfigError, or the env's own check
        jobs.check_jobs([jobs.TrainJob("ppo", ENV, 0, str(tmp_path), **job_kwargs)])
    assert not any(tmp_path.iterdir())


def test_continue_keeps_a_finished_run_and_overwrite_retrains(tmp_path):
    tiny = {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "eval_freq": 128, "eval_episodes": 1, "n_envs": 1}
    job = jobs.TrainJob("ppo", ENV, 0, str(tmp_path), 128, overrides=tiny, resume="continue")
    run = jobs.run_job(job)
    assert jobs.finished(run)
    stamp = (run / "final_model.zip").stat().st_mtime_ns
    assert jobs.run_job(job) == run and (run / "final_model.zip").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="not empty"):
        jobs.run_job(jobs.TrainJob("ppo", ENV, 0, str(tmp_path), 128, overrides=tiny, resume="fail"))
    again = jobs.run_job(jobs.TrainJob("ppo", ENV, 0, str(tmp_path), 128, overrides=tiny, resume="overwrite"))
    assert json.loads((again / "evaluations.json").read_text()) == json.loads((run / "evaluations.json").read_text())
    # continue keeps a finished run only if it is this job's: other settings (not steps) are refused up front
    jobs.check_jobs([job])
    other_env = jobs.TrainJob("ppo", ENV, 0, str(tmp_path), 128, env_kwargs={"model": "gpt3-175b"}, overrides=tiny,
                              resume="continue")
    with pytest.raises(ValueError, match=r"other settings.*config\.env_kwargs\.model"):
        jobs.check_jobs([other_env])
    jobs.check_jobs([jobs.TrainJob("ppo", ENV, 0, str(tmp_path), 256, overrides=tiny, resume="continue")])


def test_two_jobs_may_not_share_a_run_directory(tmp_path):
    twins = [jobs.TrainJob("ppo", ENV, 0, str(tmp_path)), jobs.TrainJob("ppo", ENV, 0, str(tmp_path))]
    with pytest.raises(ValueError, match="share a run directory"):
        jobs.run_jobs(twins)


@pytest.mark.parametrize("space, match", [
    ({"learning_rate": {"normal": [0.1, 1]}}, "'normal' is not a search-space function"),
    ({"env_kwargs": {"reward": {"grid_search": ["latency", "speed"]}}}, "reward must be one of"),
    ({"n_envs": {"grid_search": [2, 0]}}, "space.n_envs must be a positive integer, got 0"),
    ({"n_envs": {"choice": [2, -1]}}, "space.n_envs must be a positive integer, got -1"),
    ({"learning_rate": {"loguniform": [-1, 1e-3]}}, "learning_rate"),
])
def test_sweep_spaces_are_checked_value_by_value_before_ray(space, match):
    with pytest.raises(UsageError, match=match):
        sweep.tune_space(space, "ppo", ENV, "random")
