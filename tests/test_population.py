"""The population of systems and models (hardware.population): reproducible, within its split's
rule, every member simulable, and usable as an environment's population."""

import gymnasium as gym
import numpy as np
import pytest

import papi_env  # noqa: F401
from hardware.population import HELD_OUT_GPU_FLOPS, HELD_OUT_HIDDEN, in_split, named_targets, population


def test_the_same_seed_draws_the_same_members_and_another_seed_others():
    assert population(3, 5) == population(3, 5)
    assert population(3, 5) != population(4, 5)


@pytest.mark.parametrize("split", ["train", "held_out"])
def test_members_follow_the_split_rule_and_pass_the_capacity_checks(split):
    for member in population(0, 12, split):
        cm = member.cost_model()  # raises on a member that cannot be simulated
        held_out = cm.system.gpu.peak_flops > HELD_OUT_GPU_FLOPS or cm.model.hidden > HELD_OUT_HIDDEN
        assert held_out == (split == "held_out") and in_split(member, split)
        assert {"pim", "gpu"} <= set(cm.fc_units) and cm.system.attention_unit == "pim"


@pytest.mark.parametrize("split", ["train", "held_out"])
def test_free_hbm_beside_the_weights_runs_from_nearly_none_to_ample(split):
    """The GPUs hold the weights, at most their FC-PIM stacks' capacity, and the room left for a KV
    mirror spans the spare_hbm bounds (so a kernel agent sees full GPUs in training)."""
    from hardware.population import HELD_OUT_BOUNDS, TRAIN_BOUNDS

    bounds = TRAIN_BOUNDS if split == "train" else HELD_OUT_BOUNDS
    spares = []
    for member in population(0, 32, split):
        cm = member.cost_model()
        hbm = cm.system.num_gpus * cm.system.gpu.memory_capacity
        assert cm.model.weight_bytes <= hbm <= cm.weight_capacity_bytes * (1 + 1e-12)
        spares.append(cm.gpu_kv_capacity_bytes / cm.model.weight_bytes)
    assert min(spares) >= 0 and max(spares) <= bounds.spare_hbm[1] * (1 + 1e-9)
    assert min(spares) < 0.05 and max(spares) > 0.5


def test_named_targets_and_bad_arguments():
    names = [m.name for m in named_targets()]
    assert "gpt3-175b on papi-h100" in names and len(names) == 3
    with pytest.raises(ValueError, match="split must be one of"):
        population(0, 2, "validation")
    with pytest.raises(ValueError, match="size must be a positive integer"):
        population(0, 0)


def test_an_environment_draws_its_episodes_from_a_population():
    members = population(1, 4)
    pairs = [[m.system, m.model] for m in members]
    env = gym.make("papi_env/PapiSpecSchedule-v0", population=pairs, hardware_features=True)
    drawn = set()
    for seed in range(12):
        env.reset(seed=seed)
        drawn.add(int(env.unwrapped.core.cm[0]))
    assert len(drawn) > 1 and len(env.unwrapped.core.cost_models) == 4
    with pytest.raises(ValueError, match="population .* or model and system, not both"):
        gym.make("papi_env/PapiSchedule-v0", population=pairs, model="gpt3-175b")
    with pytest.raises(ValueError, match="list of \\[system, model\\] pairs"):
        gym.make("papi_env/PapiSchedule-v0", population=["papi"])
    assert np.isfinite(env.step(env.action_space.sample())[1])


@pytest.mark.slow
def test_transfer_script_end_to_end(tmp_path):
    """experiments.transfer trains on a population and evaluates on every named target."""
    import json

    from experiments import transfer

    assert transfer.main(["--variants", "kernel", "--objectives", "latency", "--seeds", "1", "--total-timesteps",
                          "1024", "--train-size", "3", "--held-out-size", "1", "--episodes", "1", "--num-cpus", "1",
                          "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "transfer.json").read_text())
    assert [r["system"] for r in record["rows"]] == [*(m.name for m in named_targets()), "held_out-0"]
    assert all(isinstance(r["target_met"], bool) and len(r["agents_vs_threshold"]) == 1 for r in record["rows"])
    assert "gpt3-175b on papi-h100" in (tmp_path / "transfer.md").read_text()
    assert (tmp_path / "transfer.png").exists() and (tmp_path / "transfer.pdf").exists()
    assert not all(r["target_met"] for r in record["rows"])  # 1,024 steps: some miss (deterministic)
    for row in record["rows"]:  # a miss says where the agent's placement departs from the crossover
        assert ("placement_vs_crossover" in row) == (not row["target_met"])
        if not row["target_met"]:
            shares = row["placement_vs_crossover"]["fc_gpu_share"]
            assert set(shares) == {"PAPI's rule", "oracle", "PPO seed 0"}
            assert all(v is None or 0.0 <= v <= 1.0 for pair in shares.values() for v in pair)


@pytest.mark.slow
def test_transfer_few_shot_curves_run_end_to_end(tmp_path):
    """experiments.transfer --few-shot: every trained agent is fine-tuned on each named target
    (train --init-model) and validated along the way; the curves, table and figure are written."""
    import json

    ray = pytest.importorskip("ray")
    from experiments import transfer

    try:
        assert transfer.main(["--variants", "kernel", "--objectives", "latency", "--seeds", "1", "--total-timesteps",
                              "1024", "--train-size", "2", "--held-out-size", "0", "--episodes", "1", "--few-shot",
                              "1024", "--num-cpus", "2", "--out", str(tmp_path)]) == 0
    finally:
        ray.shutdown()
    record = json.loads((tmp_path / "transfer.json").read_text())
    curves = record["few_shot"]["curves"]
    assert len(curves) == 3 and all(len(c["steps"]) == len(c["mean"]) >= 2 for c in curves)
    assert (tmp_path / "few_shot.png").exists() and "Few-shot" in (tmp_path / "transfer.md").read_text()
    run = next((tmp_path / "few_shot").iterdir())
    assert json.loads((run / "run.json").read_text())["config"]["init_model"].endswith("best_model.zip")
