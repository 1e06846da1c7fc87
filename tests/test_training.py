"""Training end to end in seconds: train, save, load, evaluate; configs; resume."""

import json

import pytest

pytest.importorskip("stable_baselines3")

from experiments import evaluate, run_config, run_records, train  # noqa: E402

TINY = dict(batch_size=[4, 16], tlp=[1, 4], dataset="general-qa")


def tiny_config(algo):
    cfg = run_config.load_config(algo, "papi_env/PapiSchedule-v0")
    cfg.update(n_envs=1 if algo == "dqn" else 2, eval_freq=256, eval_episodes=2, checkpoint_freq=256, env_kwargs=TINY)
    if algo in ("ppo", "maskable_ppo"):
        cfg["hyperparams"] = {**cfg["hyperparams"], "n_steps": 128, "batch_size": 64, "n_epochs": 2}
    if algo == "dqn":
        cfg["hyperparams"] = {**cfg["hyperparams"], "learning_starts": 64, "buffer_size": 1000}
    return cfg


def test_every_shipped_config_loads():
    import yaml

    found = 0
    for path in run_config.CONFIG_DIR.glob("*.yaml"):
        for env_id in yaml.safe_load(path.read_text()):
            if env_id == run_config.EXTRAS_KEY:
                continue
            cfg = run_config.load_config(path.stem, env_id)
            assert cfg["n_timesteps"] > 0 and isinstance(cfg["hyperparams"], dict)
            found += 1
    assert found >= 8  # every algorithm on PapiSchedule-v0, PPO on every variant, SAC on the split


def test_config_errors(tmp_path):
    with pytest.raises(run_config.ConfigError, match="unknown algorithm"):
        run_config.load_config("trpo", "papi_env/PapiSchedule-v0")
    bad = tmp_path / "c.yaml"
    bad.write_text("papi_env/PapiSchedule-v0:\n  n_envz: 2\n")
    with pytest.raises(run_config.ConfigError, match=r"unknown key\(s\) \['n_envz'\]"):
        run_config.load_config("ppo", "papi_env/PapiSchedule-v0", bad)
    bad.write_text("other-env: {}\n")
    with pytest.raises(run_config.ConfigError, match="no block for env"):
        run_config.load_config("ppo", "papi_env/PapiSchedule-v0", bad)
    bad.write_text("a: [unclosed\n")
    with pytest.raises(run_config.ConfigError, match="not valid YAML"):
        run_config.load_config("ppo", "papi_env/PapiSchedule-v0", bad)
    for value in ("fast", "lin_", "lin_-1e-4"):
        bad.write_text(f"papi_env/PapiSchedule-v0:\n  learning_rate: '{value}'\n")
        with pytest.raises(run_config.ConfigError, match=r"learning_rate must be .*'lin_<positive number>'"):
            run_config.load_config("ppo", "papi_env/PapiSchedule-v0", bad)


def test_linear_schedules_decay_to_zero_and_train(tmp_path):
    params = run_config.parse_schedules({"learning_rate": "lin_3e-4", "clip_range": 0.2, "n_steps": 128}, "test")
    lr = params["learning_rate"]
    assert lr(1.0) == pytest.approx(3e-4) and lr(0.5) == pytest.approx(1.5e-4) and lr(0.0) == 0.0
    assert params["clip_range"] == 0.2 and params["n_steps"] == 128
    cfg = tiny_config("ppo")
    cfg["hyperparams"] = {**cfg["hyperparams"], "learning_rate": "lin_3e-4", "clip_range": "lin_0.2"}
    run = train.train("ppo", "papi_env/PapiSchedule-v0", cfg, 256, 0, tmp_path, progress_bar=False, verbose=0)
    assert json.loads((run / "run.json").read_text())["config"]["hyperparams"]["learning_rate"] == "lin_3e-4"


def test_train_save_load_evaluate(tmp_path):
    run = train.train("ppo", "papi_env/PapiSchedule-v0", tiny_config("ppo"), 512, 0, tmp_path,
                      progress_bar=False, verbose=0)
    for name in ("run.json", "best_model.zip", "final_model.zip", "evaluations.json",
                 "final_model_vecnormalize.pkl"):
        assert (run / name).exists(), name
    record = json.loads((run / "run.json").read_text())
    assert record["seed"] == 0 and record["config"]["env_kwargs"] == TINY and "versions" in record
    history = json.loads((run / "evaluations.json").read_text())
    keys = {"score_vs_threshold", "speedup_vs_threshold", "gap_to_oracle", "gpu_share", "joules_per_token"}
    assert keys <= set(history[-1])
    assert list((run / "tb").rglob("events.out.tfevents.*"))
    res = evaluate.evaluate("papi_env/PapiSchedule-v0", ["threshold", f"ppo:{run / 'best_model.zip'}"], 2, 0, TINY)
    assert res["policies"][f"ppo:{run / 'best_model.zip'}"]["tokens_per_s"] > 0


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    cfg = tiny_config("ppo")
    run = train.train("ppo", "papi_env/PapiSchedule-v0", cfg, 512, 1, tmp_path, progress_bar=False, verbose=0)
    before = json.loads((run / "evaluations.json").read_text())
    train.train("ppo", "papi_env/PapiSchedule-v0", cfg, 1024, 1, tmp_path, resume=True, progress_bar=False, verbose=0)
    after = json.loads((run / "evaluations.json").read_text())
    assert after[: len(before)] == before and after[-1]["timesteps"] >= 1024
    assert all(p.is_file() for p in (run / "tb").iterdir())  # the same TensorBoard run, appended


def test_resume_without_checkpoint_fails(tmp_path):
    with pytest.raises(run_records.RunDirError, match="nothing to resume"):
        train.train("ppo", "papi_env/PapiSchedule-v0", tiny_config("ppo"), 256, 0, tmp_path, resume=True,
                    progress_bar=False, verbose=0)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["a2c", "dqn", "maskable_ppo"])
def test_other_algorithms_train(tmp_path, algo):
    run = train.train(algo, "papi_env/PapiSchedule-v0", tiny_config(algo), 512, 0, tmp_path,
                      progress_bar=False, verbose=0)
    assert (run / "best_model.zip").exists()
    res = evaluate.evaluate("papi_env/PapiSchedule-v0", [f"{algo}:{run / 'best_model.zip'}"], 1, 0, TINY)
    assert len(res["policies"]) == 2


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    from experiments import demo

    assert demo.main(["--out", str(tmp_path), "--total-timesteps", "2048", "--episodes", "3", "--no-progress"]) == 0
    data = json.loads((tmp_path / "eval.json").read_text())
    assert any(k.startswith("ppo:") for k in data["policies"])
    assert (tmp_path / "demo.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("algo, env_id", [("ppo", "papi_env/PapiKernelSchedule-v0"),
                                          ("ppo", "papi_env/PapiSpecSchedule-v0"),
                                          ("ppo", "papi_env/PapiSplitSchedule-v0"),
                                          ("sac", "papi_env/PapiSplitSchedule-v0"),
                                          ("dqn", "papi_env/PapiSpecSchedule-v0")])
def test_variants_train_and_evaluate(tmp_path, algo, env_id):
    cfg = run_config.load_config(algo, env_id)
    kwargs = dict(batch_size=[4, 8], dataset="general-qa", reward="edp")
    cfg.update(n_envs=1, eval_freq=256, eval_episodes=1, checkpoint_freq=256, env_kwargs=kwargs)
    if algo == "ppo":
        cfg["hyperparams"] = {**cfg["hyperparams"], "n_steps": 128, "batch_size": 64, "n_epochs": 2}
    else:
        cfg["hyperparams"] = {**cfg["hyperparams"], "learning_starts": 64, "buffer_size": 1000}
    run = train.train(algo, env_id, cfg, 512, 0, tmp_path, progress_bar=False, verbose=0)
    name = f"{algo}:{run / 'best_model.zip'}"
    res = evaluate.evaluate(env_id, ["threshold", "oracle", name], 1, 0, kwargs)
    assert res["objective"] == "edp" and res["policies"][name]["score"] > 0


@pytest.mark.slow
def test_beyond_end_to_end(tmp_path):
    from experiments import beyond

    assert beyond.main(["--variants", "PapiKernelSchedule", "--objectives", "latency", "--seeds", "1",
                        "--total-timesteps", "512", "--episodes", "1", "--num-cpus", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert rows[0]["best_rule"] in ("threshold", "kernel-threshold") and rows[0]["seeds"] == 1
    assert (tmp_path / "curves_PapiKernelSchedule.png").exists()
    assert (tmp_path / "PapiKernelSchedule" / "latency" / "eval.md").exists()
    assert beyond.main(["--variants", "PapiKernelSchedule", "--objectives", "latency", "--seeds", "1", "--reuse",
                        "--model", "final", "--episodes", "1", "--num-cpus", "1", "--out", str(tmp_path)]) == 0
    policies = json.loads((tmp_path / "PapiKernelSchedule" / "latency" / "eval.json").read_text())["policies"]
    assert any(name.endswith("/final_model.zip") for name in policies)


def test_tensorboard_tags_have_descriptions_config_and_hparams(tmp_path):
    """Read as TensorBoard's scalars plugin reads a run (its data-class-aware loader)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    cfg = tiny_config("ppo")
    cfg["env_kwargs"] = {**TINY, "reward": "energy"}
    run = train.train("ppo", "papi_env/PapiSchedule-v0", cfg, 512, 0, tmp_path, progress_bar=False, verbose=0)
    ea = EventAccumulator(str(run / "tb"))
    ea.Reload()
    scalars = {tag for tag in ea.Tags()["tensors"] if ea.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"}
    assert {"eval/score_vs_threshold", "eval/gap_to_oracle", "hparams/final_score_vs_threshold"} <= scalars
    # not a speedup on an energy run; constant lines are not written
    assert not scalars & {"eval/speedup_vs_threshold", "eval/threshold_tokens_per_s", "eval/mean_tlp",
                          "eval/missed_target_share"}
    assert "paired per validation episode" in ea.SummaryMetadata("eval/score_vs_threshold").summary_description
    assert "run/config/text_summary" in ea.Tags()["tensors"]


@pytest.mark.slow
def test_tensorboard_default_loader_shows_the_descriptions(tmp_path):
    """A plain ``tensorboard --logdir`` (the fast Rust loader) shows the eval/* descriptions."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    run = train.train("ppo", "papi_env/PapiSchedule-v0", tiny_config("ppo"), 512, 0, tmp_path, progress_bar=False,
                      verbose=0)
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(run / "tb"), "--port",
                              str(port), "--load_fast=true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tags: dict = {}
        for _ in range(60):
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/data/plugin/scalars/tags") as page:
                    tags = next(iter(json.loads(page.read()).values()), {})
            except OSError:
                continue
            if "eval/score_vs_threshold" in tags:
                break
        assert "paired per validation episode" in tags["eval/score_vs_threshold"]["description"]
    finally:
        board.terminate()
        board.wait(10)


def test_fine_tuning_starts_from_a_saved_agent(tmp_path):
    """train --init-model: a run starts from a saved agent's weights and VecNormalize statistics
    (issue "Agents that transfer": few-shot fine-tuning on a target); a bad path exits 2."""
    from experiments import train as train_module

    common = ["--env", "papi_env/PapiSchedule-v0", "--no-progress", "--eval-freq", "1024", "--eval-episodes", "1",
              "--checkpoint-freq", "1024", "--n-envs", "2"]
    assert train_module.main(["--total-timesteps", "2048", "--logdir", str(tmp_path / "a"), *common]) == 0
    source = tmp_path / "a" / "ppo_PapiSchedule-v0_s0" / "final_model.zip"
    assert train_module.main(["--total-timesteps", "1024", "--logdir", str(tmp_path / "b"), "--init-model",
                              str(source), "--env-kwargs", '{"model": "gpt3-175b"}', *common]) == 0
    from stable_baselines3 import PPO

    start = PPO.load(source, device="cpu").policy.state_dict()
    tuned_run = tmp_path / "b" / "ppo_PapiSchedule-v0_s0"
    tuned = PPO.load(tuned_run / "final_model.zip", device="cpu").policy.state_dict()
    assert all(start[k].shape == tuned[k].shape for k in start)
    assert any(not (start[k] == tuned[k]).all() for k in start)  # trained further
    import json

    assert json.loads((tuned_run / "run.json").read_text())["config"]["init_model"] == str(source)
    assert train_module.main(["--total-timesteps", "1024", "--logdir", str(tmp_path / "c"), "--init-model",
                              str(tmp_path / "missing.zip"), *common]) == 2
