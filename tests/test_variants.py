"""The richer variants (kernel, split, spec): API, accounting, masks, splits, speculation, rules."""

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import papi_env
from agents.planners import Oracle, time_to_go
from agents.policies import RULES_BY_VARIANT, make_policy
from experiments import evaluate
from experiments.evaluate import run_episode
from hardware.speculation import DraftCost
from hardware.systems import FC_KERNELS, CostModel
from papi_env import REWARDS, PapiKernelScheduleEnv, PapiScheduleEnv, PapiSpecScheduleEnv
from sim.acceptance import AcceptanceModel, expected_gain, leading_accepts

SMALL = dict(batch_size=(4, 8), tlp=(1, 2), dataset="general-qa")
VARIANTS = {
    "papi_env/PapiKernelSchedule-v0": SMALL,
    "papi_env/PapiSplitSchedule-v0": SMALL,
    "papi_env/PapiSpecSchedule-v0": dict(batch_size=(4, 8), dataset="general-qa"),
}


def rollout(env, policy, seed):
    """(objective terms of the rewards, observations, last info)."""
    if hasattr(policy, "bind"):
        policy.bind(env)
    obs, _ = env.reset(seed=seed)
    rewards, trace = [], []
    while True:
        a, _ = policy.predict(obs)
        obs, r, term, trunc, info = env.step(a)
        rewards.append(info.get("objective_reward", r))
        trace.append(obs.tobytes())
        if term or trunc:
            return rewards, trace, info


@pytest.mark.parametrize("env_id", VARIANTS)
def test_registered_and_pass_the_checkers(env_id):
    env = gym.make(env_id, **VARIANTS[env_id])
    check_env(env.unwrapped, skip_render_check=True)
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3_checker.check_env(gym.make(env_id, **VARIANTS[env_id]).unwrapped, warn=True)


@pytest.mark.parametrize("env_id", VARIANTS)
@pytest.mark.parametrize("reward", papi_env.REWARDS)
def test_rewards_sum_to_the_objective(env_id, reward):
    env = gym.make(env_id, reward=reward, **VARIANTS[env_id]).unwrapped
    rewards, _, info = rollout(env, make_policy("random", env, seed=1), seed=3)
    t, e, n, misses = info["episode_time"], info["episode_energy"], info["episode_tokens"], info["episode_misses"]
    expected = {"latency": -t / env.time_scale, "energy": -e / env.energy_scale,
                "edp": -t * e / (env.time_scale * env.energy_scale),
                "latency_target": -t / env.time_scale - env.miss_penalty * misses}[reward]
    assert sum(rewards) == pytest.approx(expected, rel=1e-9)
    assert n == env.batch.total_output  # every token of every request, exactly once


@pytest.mark.parametrize("env_id", VARIANTS)
def test_same_seed_same_trajectory(env_id):
    env = gym.make(env_id, **VARIANTS[env_id]).unwrapped
    a = rollout(env, make_policy("random", env, seed=5), seed=9)
    b = rollout(env, make_policy("random", env, seed=5), seed=9)
    assert a[1] == b[1] and a[0] == b[0]


@pytest.mark.parametrize("env_id, bad", [
    ("papi_env/PapiKernelSchedule-v0", [0, 1, 2, 0]),
    ("papi_env/PapiKernelSchedule-v0", [0, 1]),
    ("papi_env/PapiSplitSchedule-v0", [0.5, 1.5, 0.0]),
    ("papi_env/PapiSplitSchedule-v0", [np.nan, 0, 0]),
    ("papi_env/PapiSpecSchedule-v0", [8, 0]),
    ("papi_env/PapiSpecSchedule-v0", [1.5, 0]),
])
def test_invalid_actions_fail_clearly(env_id, bad):
    env = gym.make(env_id, **VARIANTS[env_id]).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(np.array(bad))


def test_kernel_env_masks_gpu_attention_when_the_kv_mirror_does_not_fit():
    env = PapiKernelScheduleEnv(model="gpt3-175b", batch_size=64, tlp=4, on_masked="raise")
    env.reset(seed=0)
    assert env.action_masks()[-1]  # short prompts fit at first
    while env.kv_fill() <= 1:  # contexts grow until the mirror no longer fits
        env.step(np.array([0, 0, 0, 0]))
    assert env.cost_model.gpu_kv_capacity_bytes < 13e9  # 360 GB of HBM minus 348 GB of FC weights
    assert env.kv_fill() > 1 and not env.action_masks()[-1]
    with pytest.raises(ValueError, match="attention on the GPU is masked"):
        env.step(np.array([0, 0, 0, 1]))
    assert all(a[3] == 0 for a in env.candidate_actions())
    lenient = PapiKernelScheduleEnv(model="gpt3-175b", batch_size=64, tlp=4)
    lenient.reset(seed=0)
    while lenient.kv_fill() <= 1:
        lenient.step(np.array([0, 0, 0, 0]))
    _, _, _, _, info = lenient.step(np.array([0, 0, 0, 1]))
    assert info["masked"] and info["attention"] == "pim"  # ran on Attn-PIM instead
    with pytest.raises(ValueError, match="on_masked"):
        PapiKernelScheduleEnv(on_masked="ignore")
    small = PapiKernelScheduleEnv(**SMALL)
    small.reset(seed=0)
    assert small.action_masks().all()


def test_kernel_placement_matches_the_whole_fc_cost():
    cm = CostModel("papi", "llama-65b")
    for unit in ("pim", "gpu"):
        same = cm.iteration(16, 2, 5000.0, (unit,) * 3)
        assert same == cm.iteration(16, 2, 5000.0, unit)
    mixed = cm.iteration(16, 2, 5000.0, ("pim", "gpu", "pim"))
    parts = sum(cm.fc_kernel(k, 32, u).time for k, u in zip(FC_KERNELS, ("pim", "gpu", "pim"), strict=True))
    assert mixed.fc_time == pytest.approx(parts)
    # attention on the GPUs reads a KV mirror at HBM speed: far slower than Attn-PIM at TLP 1
    assert cm.attention(16, 1, 5000.0, "gpu").time > 5 * cm.attention(16, 1, 5000.0, "pim").time


@settings(max_examples=40, deadline=None)
@given(tokens=st.integers(1, 512), f=st.floats(0.0, 1.0), kernel=st.sampled_from(FC_KERNELS))
def test_split_cost_bounds(tokens, f, kernel):
    """A split never beats the better unit by more than sharing allows, and is never free."""
    cm = CostModel("papi", "llama-65b")
    c = cm.fc_split(kernel, tokens, f)
    pim, gpu = cm.fc_kernel(kernel, tokens, "pim"), cm.fc_kernel(kernel, tokens, "gpu")
    assert c.time > 0 and c.energy > 0
    assert c.time <= pim.time + gpu.time  # at worst the two run one after the other
    assert c.time >= 0.4 * min(pim.time, gpu.time)
    assert cm.fc_split(kernel, tokens, 0.0) == pim and cm.fc_split(kernel, tokens, 1.0) == gpu


def test_split_gains_only_when_the_gpu_is_compute_bound():
    cm = CostModel("papi", "llama-65b")
    grid = [k / 32 for k in range(33)]
    for tokens, gains in ((16, False), (48, False), (256, True)):
        best = min(cm.fc_split("ffn", tokens, f).time for f in grid)
        ends = min(cm.fc_kernel("ffn", tokens, u).time for u in ("pim", "gpu"))
        assert (best < 0.9 * ends) == gains, tokens


def test_acceptance_process_varies_across_requests_and_time():
    env = PapiSpecScheduleEnv(batch_size=64, dataset="general-qa")
    env.reset(seed=0)
    p0 = env.acceptance.probabilities()
    assert ((p0 > 0) & (p0 < 1)).all() and p0.std() > 0.05
    for _ in range(20):
        env.step(np.array([0, 0]))
    live = env.batch.live_mask()
    assert np.abs(env.acceptance.probabilities()[live] - p0[live]).mean() > 0.02


def test_leading_accepts_is_geometric_and_capped():
    u = np.random.default_rng(0).uniform(size=200_000)
    for p in (0.3, 0.8):
        drafts = leading_accepts(u, p, 3)
        for j in range(1, 4):
            assert (drafts >= j).mean() == pytest.approx(p**j, abs=0.005)  # P(>= j) = p^j
        assert drafts.max() == 3 and drafts.dtype == np.int64
    assert (leading_accepts(u[:10], 1.0, 5) == 5).all()  # p = 1 accepts every draft
    assert (leading_accepts(u[:10], np.array([0.5] * 10), np.zeros(10, dtype=np.int64)) == 0).all()
    with pytest.raises(ValueError, match="mean_range"):
        AcceptanceModel(mean_range=(0.9, 0.2))
    with pytest.raises(ValueError, match="unknown acceptance field"):
        AcceptanceModel.from_any({"mean": 0.5})


def test_expected_gain_and_draft_cost():
    assert expected_gain(np.array([0.5]), 1)[0] == 1
    assert expected_gain(np.array([0.5]), 3)[0] == pytest.approx(1 + 0.5 + 0.25)
    d = DraftCost("papi")
    assert d.draft(8, 1, 1000.0).time == 0
    assert d.draft(8, 4, 1000.0).time == pytest.approx(3 * d.step(8, 1000.0).time)


def test_spec_reward_credits_tokens_at_the_non_speculative_price():
    env = PapiSpecScheduleEnv(batch_size=16, dataset="general-qa")
    env.reset(seed=0)
    value = env.token_value()
    _, r, _, _, info = env.step(np.array([0, 0]))  # TLP 1 with FC on FC-PIM: PAPI's own choice here
    assert r == pytest.approx(info["objective_reward"] + info["tokens"] * value)
    assert abs(r) < 1e-9  # exactly the reference: no gain, no loss


@pytest.mark.parametrize("reward", REWARDS)
def test_spec_best_credit_pays_about_zero_only_for_the_cheapest_action_per_token(reward):
    env = PapiSpecScheduleEnv(batch_size=16, dataset="general-qa", reward=reward, token_credit="best")
    env.reset(seed=3)
    for _ in range(5):
        env.step(np.array([1, 0]))
    values = np.array([[env.step_objective(np.array([t, u])) for u in (0, 1)] for t in range(env.max_tlp)])
    scale = np.abs(values).max()
    assert values.max() == pytest.approx(0.0, abs=1e-9 * scale)  # the best action breaks even
    assert (values <= 1e-9 * scale).all() and values.min() < -1e-3 * scale
    # the oracle ranks actions by the objective's own marginal cost per token, as the reward does
    assert tuple(Oracle(env).act(env)) == np.unravel_index(int(values.argmax()), values.shape)
    credit = env.best_token_value()
    _, r, _, _, info = env.step(np.array([2, 0]))
    assert r == pytest.approx(info["objective_reward"] + info["tokens"] * credit)


@pytest.mark.parametrize("reward", REWARDS)
def test_spec_expected_reward_tokens_change_the_reward_only(reward):
    """reward_tokens="expected": the reward is the action's expected reward (step_objective);
    the trajectory, objective and score are those of the default env on the same seed."""
    kw = dict(batch_size=16, dataset="general-qa", reward=reward, token_credit="best")
    drawn, expected = PapiSpecScheduleEnv(**kw), PapiSpecScheduleEnv(reward_tokens="expected", **kw)
    drawn.reset(seed=5)
    expected.reset(seed=5)
    for t in range(12):
        action = np.array([t % 4, t % 2])
        promised = expected.step_objective(action)
        obs_d, r_d, term_d, _, info_d = drawn.step(action)
        obs_e, r_e, term_e, _, info_e = expected.step(action)
        assert r_e == pytest.approx(promised, rel=1e-12, abs=1e-15)
        assert np.array_equal(obs_d, obs_e) and term_d == term_e
        assert info_d["tokens"] == info_e["tokens"] and info_d["objective_reward"] == info_e["objective_reward"]
        if term_d:
            break
    with pytest.raises(ValueError, match="reward_tokens"):
        PapiSpecScheduleEnv(reward_tokens="mean")


def test_flat_discrete_actions_cover_the_multidiscrete_space():
    from papi_env.wrappers import FlatDiscreteActions, unflatten_action

    env = FlatDiscreteActions(PapiSpecScheduleEnv(batch_size=4, dataset="general-qa", max_tlp=4))
    assert env.action_space.n == 8
    seen = {tuple(env.action(k)) for k in range(8)}
    assert seen == {(t, u) for t in range(4) for u in (0, 1)}
    env.reset(seed=0)
    _, _, _, _, info = env.step(5)  # (TLP - 1, unit) = (2, 1)
    assert info["tlp"] == 3 and info["placement"] == "gpu"
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        unflatten_action(8, (4, 2))
    with pytest.raises(ValueError, match="MultiDiscrete"):
        FlatDiscreteActions(PapiScheduleEnv())


def test_spec_env_errors():
    with pytest.raises(ValueError, match="max_tlp"):
        PapiSpecScheduleEnv(max_tlp=0)
    with pytest.raises(ValueError, match="per request"):
        PapiSpecScheduleEnv(acceptance_rate=0.7)
    with pytest.raises(ValueError, match="token_credit"):
        PapiSpecScheduleEnv(token_credit="hindsight")


@pytest.mark.parametrize("env_id", ["papi_env/PapiKernelSchedule-v0", "papi_env/PapiSplitSchedule-v0"])
@pytest.mark.parametrize("reward", ["latency", "energy"])
def test_oracle_is_never_beaten_by_a_rule_where_it_is_exact(env_id, reward):
    env = gym.make(env_id, reward=reward, **SMALL)
    for seed in range(3):
        oracle = run_episode(env, make_policy("oracle", env), seed)["score"]
        for rule in ("threshold", "kernel-threshold" if "Kernel" in env_id else "split-table", "always-pim"):
            assert run_episode(env, make_policy(rule, env), seed)["score"] <= oracle * (1 + 1e-9)


def test_randomised_models_and_systems_per_episode():
    env = PapiKernelScheduleEnv(model=["llama-65b", "gpt3-66b"], system=["papi", {"base": "papi", "gpu": "H100"}],
                                **SMALL)
    seen = set()
    for seed in range(12):
        _, _, info = rollout(env, make_policy("threshold", env), seed)
        seen.add((info["model"], env.cost_model.system.gpu.name))
    assert len(seen) >= 3


def test_evaluate_reports_best_rule_per_variant():
    result = evaluate.evaluate("papi_env/PapiSpecSchedule-v0", None, 2, 0, VARIANTS["papi_env/PapiSpecSchedule-v0"])
    names = list(result["policies"])
    assert names[0] == "threshold" and set(RULES_BY_VARIANT["spec"]) <= set(names)
    assert result["policies"][result["best_rule"]]["kind"] == "rule"
    assert result["policies"][result["best_rule"]]["ratio_vs_best_rule"] == pytest.approx(1.0)
    md = evaluate.to_markdown(result)
    assert f"best rule: {result['best_rule']}" in md and f"P(> {result['best_rule']})" in md


def test_ragged_cost_of_one_tlp_per_batch_is_the_envs_cost():
    from experiments.headroom import ragged_cost

    env = PapiSpecScheduleEnv(batch_size=16, dataset="general-qa")
    env.reset(seed=1)
    for _ in range(3):
        env.step(np.array([2, 0]))
    n = env.batch.live
    ctx = np.full(n, env.sum_context / n - env.tlp)
    for tlp in (1, 3, 8):
        for unit, name in enumerate(("pim", "gpu")):
            mine, theirs = ragged_cost(env, np.full(n, tlp), ctx, name), env.cost_at(tlp, unit)
            assert mine.time == pytest.approx(theirs.time, rel=1e-9)
            assert mine.energy == pytest.approx(theirs.energy, rel=1e-9)
    mixed = np.array([1] * (n // 2) + [4] * (n - n // 2))  # between all-1 and all-4 in every part
    assert ragged_cost(env, np.ones(n, int), ctx, "gpu").time < ragged_cost(env, mixed, ctx, "gpu").time
    assert ragged_cost(env, mixed, ctx, "gpu").time < ragged_cost(env, np.full(n, 4), ctx, "gpu").time


def test_per_request_tlp_never_loses_to_one_tlp_per_batch():
    from experiments.headroom import ragged_gain

    gain = ragged_gain({"batch_size": 8, "dataset": "general-qa", "acceptance": {"request_spread": 2.0}}, [5])
    assert gain >= 1.0


@pytest.mark.slow
def test_headroom_table(tmp_path):
    from experiments import headroom

    assert headroom.main(["--variants", "PapiSpecSchedule,PapiKernelSchedule", "--objectives", "edp,latency",
                          "--scenarios", "default,homogeneous", "--episodes", "1", "--num-cpus", "1", "--no-ragged",
                          "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "headroom.json").read_text())
    cells = [(r["env"].split("/")[1], r["scenario"]) for r in rows][::2]
    assert cells == [("PapiKernelSchedule-v0", "default"), ("PapiSpecSchedule-v0", "default"),
                     ("PapiSpecSchedule-v0", "homogeneous")]
    assert all(r["best_rule"] in headroom.RULES[r["env"]] for r in rows)
    assert all(r["oracle_vs_best_rule"][0] > 0 for r in rows)
    assert (tmp_path / "headroom.md").read_text().count("| PapiSpecSchedule-v0 |") == 4
    with pytest.raises(SystemExit):
        headroom.main(["--scenarios", "nowhere", "--out", str(tmp_path)])
    # a second run replaces its own cells and keeps the others
    assert headroom.main(["--variants", "PapiKernelSchedule", "--objectives", "latency", "--scenarios", "default",
                          "--episodes", "2", "--num-cpus", "1", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "headroom.json").read_text())
    assert [(r["env"], r["scenario"], r["objective"]) for r in again] == [
        (r["env"], r["scenario"], r["objective"]) for r in rows]
    assert [r["episodes"] for r in again] == [2, 1, 1, 1, 1, 1]  # kernel: latency, then edp (REWARDS order)


def test_lookahead_oracle_time_to_go():
    env = PapiSpecScheduleEnv(batch_size=8, dataset="general-qa")
    env.reset(seed=2)
    remaining = env.batch.remaining()[env.batch.live_mask()].astype(float)
    never, always = np.zeros_like(remaining), np.full_like(remaining, 0.99)
    ttg = {t: (time_to_go(env, t, never, remaining), time_to_go(env, t, always, remaining)) for t in (1, 4, 8)}
    assert ttg[1][0] < ttg[4][0] < ttg[8][0]  # nothing accepted: drafting only costs
    assert ttg[8][1] < ttg[4][1] < ttg[1][1]  # everything accepted, small batch: speculate
    assert ttg[1][0] == pytest.approx(ttg[1][1])  # TLP 1 does not depend on acceptance
    env_edp = gym.make("papi_env/PapiSpecSchedule-v0", reward="edp", **SMALL)
    with pytest.raises(ValueError, match="latency"):
        make_policy("oracle-lookahead", env_edp).bind(env_edp)
    lookahead = make_policy("oracle-lookahead").bind(env)
    score = run_episode(env, lookahead, 2)["score"]
    assert score >= 0.95 * run_episode(env, make_policy("fixed-tlp:1"), 2)["score"]


def test_planner_does_not_read_the_hidden_output_lengths():
    env = PapiSpecScheduleEnv(batch_size=8, dataset="general-qa")
    env.reset(seed=4)
    planner = make_policy("greedy-ema").bind(env)
    capped = env.expected_tokens(4, 0.9)
    assert env.expected_tokens(4, 0.9, known_lengths=False) >= capped
    assert env.expected_tokens(4, 0.9, known_lengths=False) == pytest.approx(env.batch.live * expected_gain(0.9, 4))

    def hidden():
        raise AssertionError("the planner read the requests' remaining output lengths")

    env.batch.remaining = hidden
    for _ in range(5):
        env.step(planner.act(env))
