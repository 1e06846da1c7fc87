"""Online serving (sim.online, PapiServe-v0): queueing laws, conservation, capacity, rewards."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import papi_env
from agents.policies import make_policy
from agents.rules import fcfs_rule
from hardware.systems import CostModel, prefill_from_terms
from hardware.workloads import WorkloadError
from sim import serve_kernels as sk
from sim.online import OnlineServer, Workload, load_trace, sample_workload, serve, summarise, trace_rate, trace_window
from sim.serve_engine import KVPolicy, ServeEngine

PAPI = CostModel("papi", "llama-65b")
SERVE = papi_env.SERVE_ENV_ID


SERVER_OPTIONS = {"reserve": {}, "paged": {"kv": KVPolicy("paged")}, "chunked": {"token_budget": 512},
                  "paged-chunked": {"kv": KVPolicy("paged"), "token_budget": 256},
                  "shortest": {"queue_order": "shortest"},
                  "deadline-paged-chunked": {"kv": KVPolicy("paged"), "token_budget": 512, "queue_order": "deadline"}}


@pytest.mark.parametrize("options", SERVER_OPTIONS.values(), ids=SERVER_OPTIONS.keys())
def test_littles_law_on_a_long_run(options):
    """Mean number in the system (from the server's own per-iteration counts) = arrival rate x mean
    time in the system (from the requests' timestamps), for either KV policy, prefills whole or
    chunked."""
    rate = 8.0
    w = sample_workload(rate, 4000, "creative-writing", np.random.default_rng(3))
    server = OnlineServer(PAPI, w, **options)
    records = serve(server, fcfs_rule(PAPI, tlp=2))
    horizon = records[-1].end_s
    area = sum(r.in_system_area for r in records)
    latency = server.request_metrics()["latency_s"]
    assert area == pytest.approx(latency.sum(), rel=1e-9)  # the two bookkeepings agree
    number_in_system = area / horizon
    # the nominal rate: equal within sampling error (4000 Poisson arrivals: ~1.6% sd of the rate)
    assert number_in_system == pytest.approx(rate * latency.mean(), rel=0.06)
    assert number_in_system == pytest.approx(len(w.arrival_s) / horizon * latency.mean(), rel=1e-9)


@pytest.mark.parametrize("kv", [None, KVPolicy("paged")], ids=["reserve", "paged"])
def test_at_a_very_low_rate_each_request_costs_what_it_costs_alone(kv):
    drawn = sample_workload(1.0, 12, "creative-writing", np.random.default_rng(0))
    w = Workload(np.arange(12) * 1000.0, drawn.lin, drawn.lout)  # 1000 s apart: no request meets another
    server = OnlineServer(PAPI, w, kv=kv)
    serve(server, fcfs_rule(PAPI, tlp=1))
    m = server.request_metrics()
    for i in range(w.size):
        lin, lout = int(w.lin[i]), int(w.lout[i])
        assert m["ttft_s"][i] == pytest.approx(PAPI.prefill([lin]).time, rel=1e-12)
        # alone, RLP x TLP = 1 is below PAPI's crossover: FC on FC-PIM; context = prompt + tokens so far
        decode = sum(PAPI.iteration(1, 1, lin + k, "pim").time for k in range(1, lout))
        if lout > 1:
            assert m["tpot_s"][i] == pytest.approx(decode / (lout - 1), rel=1e-9)
        assert m["queue_s"][i] == 0.0


@pytest.mark.parametrize("options", SERVER_OPTIONS.values(), ids=SERVER_OPTIONS.keys())
def test_every_request_is_served_once_and_completely(options):
    w = sample_workload(30.0, 600, "general-qa", np.random.default_rng(1))
    server = OnlineServer(CostModel("gpu_only", "llama-65b"), w, max_batch=64, **options)
    records = serve(server, fcfs_rule(server.cm, fc="gpu", tlp=3))
    admitted = np.concatenate([r.admitted for r in records])
    finished = np.concatenate([r.finished for r in records])
    if "kv" in options:  # preempted requests are admitted again
        admitted = np.unique(admitted)
    assert sorted(admitted.tolist()) == list(range(w.size)) == sorted(finished.tolist())
    assert np.array_equal(server.generated, w.lout)
    assert sum(r.tokens for r in records) == int(w.lout.sum())
    assert max(r.rlp for r in records) <= 64
    m = server.request_metrics()
    assert np.all(m["ttft_s"] > 0) and np.all(m["latency_s"] >= m["ttft_s"])
    assert sum(r.energy_j for r in records) == pytest.approx(m["energy_j"].sum(), rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rate=st.floats(0.5, 200.0), tlp=st.integers(1, 4), admit=st.integers(0, 8),
       acceptance=st.sampled_from([None, 0.5, 0.9]), paged=st.booleans(), budget=st.sampled_from([None, 64, 700]))
def test_kv_never_exceeds_capacity_and_time_moves_forward(seed, rate, tlp, admit, acceptance, paged, budget):
    rng = np.random.default_rng(seed)
    n = 40
    lin = rng.integers(500, 4000, n)
    lout = rng.integers(1, 3000, n)
    w = Workload(np.cumsum(rng.exponential(1 / rate, n)), lin, lout)
    cm = CostModel("gpu_only", "llama-65b")  # 230 GB of KV: ~10-25 such requests at once
    server = OnlineServer(cm, w, acceptance_rate=acceptance, rng=rng, kv=KVPolicy("paged") if paged else None,
                          token_budget=budget)
    t = 0.0
    while not server.done:
        r = server.iteration("gpu", tlp, int(rng.integers(0, admit + 1)))
        assert server.kv_used <= server.kv_capacity * (1 + 1e-12)
        assert r.end_s > r.start_s >= t and r.energy_j > 0
        if budget is not None:
            assert r.rlp * tlp + r.prefill_tokens <= max(budget, r.rlp * tlp)
        t = r.end_s
    assert np.array_equal(server.generated, lout)
    assert server.prefilling == 0 and server.prefill_backlog == 0


def test_chunked_prefill_by_hand():
    """Chunked prefill on a hand-computed case. Alone, a 1000-token prompt with a 256-token budget
    takes four chunks, each attending to the chunks before it (its causal sum counts their keys,
    and it re-reads their KV); its first token comes with the last. Then a decoding request shares
    iterations with a second one's chunks: the budget less one decoded token, and FC on the GPUs
    reads the weights once for both (CostModel.fused_fc_saving)."""
    def chunk_s(c, prior):
        return prefill_from_terms(PAPI.prefill_terms(c), c * prior + c * (c + 1) / 2, prior)[0]

    alone = OnlineServer(PAPI, Workload(np.array([0.0]), np.array([1000]), np.array([3])), token_budget=256)
    ends = [alone.iteration("pim", 1, 1).end_s for _ in range(4)]
    expected = np.cumsum([chunk_s(256, 0), chunk_s(256, 256), chunk_s(256, 512), chunk_s(232, 768)])
    assert ends == pytest.approx(expected, rel=1e-12)
    assert alone.first_token_s[0] == ends[-1] and alone.prefilling == 0 and alone.generated[0] == 1
    alone.iteration("pim", 1, 1)
    assert alone.generated[0] == 2 and alone.t == pytest.approx(ends[-1] + PAPI.iteration(1, 1, 1001, "pim").time,
                                                                rel=1e-12)

    w = Workload(np.array([0.0, 1e-9]), np.array([100, 600]), np.array([3, 2]))
    server = OnlineServer(PAPI, w, token_budget=512)
    t1 = server.iteration("gpu", 1, 8).end_s  # A's whole prompt; B arrives meanwhile
    assert t1 == pytest.approx(chunk_s(100, 0), rel=1e-12)
    plan = server.plan("gpu", 1, 8)
    assert (plan.rlp, plan.admitted, plan.prefill_tokens) == (1, 1, 511)
    r2 = server.iteration("gpu", 1, 8)  # A decodes one token beside B's first 511 prompt tokens
    fused = PAPI.iteration(1, 1, 101, "gpu").time - PAPI.fused_fc_saving(1, 511).time
    assert (r2.prefill_s, r2.decode_s) == (pytest.approx(chunk_s(511, 0), rel=1e-12), pytest.approx(fused, rel=1e-9))
    assert PAPI.fused_fc_saving(1, 511).time > 0 and server.prefill_backlog == 89
    r3 = server.iteration("gpu", 1, 8)  # A's last token; B's last 89 prompt tokens and its first token
    assert r3.prefill_s == pytest.approx(chunk_s(89, 511), rel=1e-12)
    assert r3.decode_s == pytest.approx(PAPI.iteration(1, 1, 102, "gpu").time - PAPI.fused_fc_saving(1, 89).time,
                                        rel=1e-9)
    assert server.finish_s[0] == r3.end_s == server.first_token_s[1] and r3.tokens == 2
    r4 = server.iteration("gpu", 1, 8)
    assert r4.decode_s == pytest.approx(PAPI.iteration(1, 1, 601, "gpu").time, rel=1e-12) and server.done
    assert server.request_metrics()["ttft_s"][1] == pytest.approx(r3.end_s - 1e-9, rel=1e-12)


@pytest.mark.parametrize("option", list(SERVER_OPTIONS))
def test_plan_all_prices_every_candidate_as_plan_does(option):
    """OnlineServer.plan_all (one kernel call for a planner's candidates) gives, at every (unit,
    TLP), the fields plan gives, along a served workload under each server option."""
    w = sample_workload(24.0, 40, "general-qa", np.random.default_rng(4))
    server = OnlineServer(PAPI, w, acceptance_rate=0.7, rng=np.random.default_rng(5), **SERVER_OPTIONS[option])
    step = 0
    while not server.done:
        admit = step % 5
        grid = server.plan_all(["pim", "gpu"], 4, admit)
        for k, unit in enumerate(("pim", "gpu")):
            for tlp in range(1, 5):
                assert tuple(f[k, tlp - 1] for f in grid) == tuple(server.plan(unit, tlp, admit))
        server.iteration("gpu" if step % 3 else "pim", 1 + step % 4, admit)
        step += 1


def test_an_idle_server_admits_a_request_inside_the_paged_watermark():
    """Paged KV keeps a watermark free at admission, but a server with nothing running admits the
    head of the queue even when its blocks reach into the watermark (it fits the cache)."""
    cm = CostModel("gpu_only", "llama-65b")
    lin = int(cm.kv_capacity_bytes / cm.model.kv_bytes_per_token * 0.995) // 16 * 16 - 16
    w = Workload(np.array([0.0, 0.0]), np.array([100, lin]), np.array([2, 1]))
    server = OnlineServer(cm, w, kv=KVPolicy("paged"), max_batch=1)
    first = server.iteration("gpu", 1, 1)
    assert first.admitted.tolist() == [0] and server.admissible() == 0  # full batch
    server.iteration("gpu", 1, 1)
    assert server.admissible() == 0 and len(server.running) == 0  # inside the watermark: not admissible
    last = server.iteration("gpu", 1, 0)
    assert last.admitted.tolist() == [1] and server.done


def test_queue_orders_by_hand():
    """One request runs at a time (max_batch 1): FCFS takes the queue by arrival, ``shortest`` by
    prompt length, ``deadline`` the requests still within their TTFT target before the late ones."""
    w = Workload(np.array([0.0, 1e-3, 2e-3, 3e-3]), np.array([1000, 2000, 100, 500]), np.array([50, 5, 5, 5]))
    for order, expected in (("fcfs", [0, 1, 2, 3]), ("shortest", [0, 2, 3, 1])):
        server = OnlineServer(PAPI, w, max_batch=1, queue_order=order)
        records = serve(server, fcfs_rule(PAPI))
        assert np.concatenate([r.admitted for r in records]).tolist() == expected
        assert server.queue == [] and server.done
    late = Workload(np.array([0.0, 1e-3, 0.45]), np.array([1000, 100, 100]), np.array([50, 5, 5]))
    engine = ServeEngine(1, [PAPI], 1, late.size)
    engine.load(0, late.arrival_s, late.lin, late.lout, 0, 0, ttft_target_s=0.2, queue_order="deadline")
    server = OnlineServer.view(engine, 0, late)
    first = server.iteration("pim", 1, 1)
    while len(server.running):
        assert server.queue == [1, 2][:server.arrived - 1]
        server.iteration("pim", 1, 1)
    assert server.t - late.arrival_s[1] > 0.2 > server.t - late.arrival_s[2]  # request 1 is late, 2 is not
    assert server.iteration("pim", 1, 1).admitted.tolist() == [2] and first.admitted.tolist() == [0]


def test_papis_rule_counts_the_fused_chunk_with_chunked_prefill():
    """PAPI's test is on the tokens through the FC kernels: RLP x TLP, and with chunked prefill the
    prompt chunk fused with them too (here 1 decoded token + a 511-token chunk: the GPUs)."""
    from agents.rules import fcfs_decision
    from hardware.calibrate import CALIBRATION_MAX_TOKENS, calibrate_alpha

    alpha = calibrate_alpha(PAPI, CALIBRATION_MAX_TOKENS, "latency")
    w = Workload(np.array([0.0, 1e-9]), np.array([100, 3000]), np.array([50, 4]))
    units = {}
    for budget in (None, 512):
        server = OnlineServer(PAPI, w, token_budget=budget)
        server.iteration("pim", 1, 1)  # A alone; B arrives meanwhile
        units[budget] = fcfs_decision(server, alpha, 1)[0]
    assert 1 < alpha < 512 and units == {None: "pim", 512: "gpu"}


def test_chunked_prefill_shares_the_budget_in_the_queue_order():
    """A short prompt arriving while a long one is being prefilled in chunks: FCFS finishes the long
    prompt first; ``shortest`` gives the short one the budget first (shortest remaining prompt)."""
    w = Workload(np.array([0.0, 1e-3]), np.array([3000, 100]), np.array([4, 4]))
    first_token_iteration = {}
    for order in ("fcfs", "shortest"):
        server = OnlineServer(PAPI, w, token_budget=512, queue_order=order)
        ends = [server.iteration("gpu", 1, 8).end_s for _ in range(8)]
        first_token_iteration[order] = [ends.index(t) for t in server.first_token_s]
    assert first_token_iteration["fcfs"] == [5, 6]  # chunks of 512 until the 3000 tokens are done, then B
    assert first_token_iteration["shortest"] == [6, 1]  # B's 100 tokens go first in the second iteration


def test_a_population_of_systems_and_their_descriptors():
    """``population``: each episode draws a (system, model) pair, with its own FC units, PAPI
    crossover and latency targets (unloaded on that system); ``hardware_features`` ends the
    observation with the pair's descriptor (hardware.calibrate)."""
    from hardware.calibrate import DESCRIPTOR_SIZE, descriptor

    pairs = [["papi", "llama-65b"], ["gpu_only", "llama-65b"]]
    env = gym.make(SERVE, population=pairs, hardware_features=True, requests=24, warmup=2, rate=[16.0])
    base = env.unwrapped
    assert env.observation_space.shape == (papi_env.serve_env.OBS_SIZE + DESCRIPTOR_SIZE,)
    seen = set()
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        cm = base.cost_model
        seen.add(cm.system.name)
        assert np.allclose(obs[-DESCRIPTOR_SIZE:], descriptor(cm).astype(np.float32))
        assert base.unit_mask.tolist() == [u in cm.fc_units for u in ("pim", "gpu")]
        assert base.alpha() == (math.inf if cm.system.name == "gpu_only" else pytest.approx(base.alpha()))
        rule = make_policy("threshold", env).bind(env)
        _, _, _, _, info = env.step(rule.act(base))
        assert info["placement"] in cm.fc_units
        assert base.server.ttft_target_s == base.ttft_target_s
    assert seen == {"papi", "gpu_only"}
    targets = {name: papi_env.PapiServeEnv(population=[[name, "llama-65b"]]).tpot_target_s
               for name in ("papi", "gpu_only")}
    assert targets["papi"] < targets["gpu_only"]  # each member's own unloaded TPOT
    assert papi_env.PapiServeEnv(system="gpu_only").tpot_target_s == targets["papi"]  # one system: PAPI's
    with pytest.raises(ValueError, match="not both"):
        papi_env.PapiServeEnv(population=pairs, system="gpu_only")


def test_same_seed_same_numbers():
    def run(seed):
        env = gym.make(SERVE, requests=48, warmup=4, acceptance_rate=0.7, reward="energy")
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        out = [obs]
        done = False
        while not done:
            obs, reward, term, trunc, info = env.step(env.action_space.sample())
            out.append(np.append(obs, reward))
            done = term or trunc
        return np.concatenate(out), info["score"]

    a, b, c = run(5), run(5), run(6)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0][:11], c[0][:11]) or a[1] != c[1]


@pytest.mark.parametrize("reward, shaping", [(r, "none") for r in papi_env.SERVE_REWARDS]
                         + [("latency", "remaining"), ("goodput", "on-track")])
def test_step_rewards_sum_to_the_episode_objective(reward, shaping):
    env = gym.make(SERVE, requests=96, warmup=16, rate=12.0, reward=reward, acceptance_rate=0.8, shaping=shaping)
    env.reset(seed=2)
    rule = make_policy("fixed-tlp:2", env).bind(env)
    total, done, rewards = 0.0, False, []
    while not done:
        _, r, term, trunc, info = env.step(rule.act(env.unwrapped))
        total += r
        rewards.append(r)
        done = term or trunc
    if shaping == "on-track":  # arrivals on track are credited when they come, and going off track costs
        assert max(rewards) > 0 and min(rewards) < 0
    m = env.unwrapped.server.request_metrics()
    scored = slice(16, None)
    if reward == "latency":
        assert total == pytest.approx(-m["latency_s"][scored].mean(), rel=1e-9)
        assert info["score"] == pytest.approx(-1 / total, rel=1e-9)
    elif reward == "energy":
        assert total == pytest.approx(-m["energy_j"][scored].sum() / m["tokens"][scored].sum(), rel=1e-9)
        assert info["score"] == pytest.approx(-1 / total, rel=1e-9)
    else:
        assert total == pytest.approx(info["score"], rel=1e-12 if shaping == "none" else 1e-9)
        assert info["summary"]["goodput_rps"] == pytest.approx(total, rel=1e-9)


def test_env_checkers_pass():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(gym.make(SERVE, requests=16, warmup=2).unwrapped)
    sb3_check_env(papi_env.PapiServeEnv(requests=16, warmup=2))
    chunked = papi_env.PapiServeEnv(requests=16, warmup=2, token_budget=512)
    sb3_check_env(chunked)
    assert chunked.observation_space.shape == (papi_env.serve_env.OBS_SIZE + 1,)


def test_masks_clamps_and_fallbacks():
    env = papi_env.PapiServeEnv(system="gpu_only", requests=32, warmup=0, rate=1000.0, max_admit=8)
    env.reset(seed=0)
    mask = env.action_masks()
    assert mask[:2].tolist() == [False, True]  # no FC-PIM on GPU-only
    assert not mask[2 + env.max_tlp]  # nothing runs: admitting none is not offered
    _, _, _, _, info = env.step(np.array([0, 0, 8]))
    assert info["unit_fallback"] and info["placement"] == "gpu" and info["admitted"] >= 1
    with pytest.raises(ValueError, match="outside"):
        env.step(np.array([0, 9, 0]))
    with pytest.raises(ValueError, match="3 integers"):
        env.step(np.array([0, 1]))


@pytest.mark.parametrize("kwargs, message", [
    ({"reward": "throughput"}, "reward must be one of"),
    ({"rate": -2.0}, "rate must be a positive number"),
    ({"rate": []}, "rate must be a positive number"),
    ({"warmup": 300}, "warmup must be an integer in [0, requests)"),
    ({"arrival": "uniform"}, "arrival must be one of"),
    ({"max_admit": 0}, "max_admit must be a positive integer"),
    ({"acceptance_rate": 1.5}, "acceptance_rate must be in (0, 1]"),
    ({"model": "gpt-5"}, "gpt-5"),
    ({"token_budget": 0}, "token_budget must be None (whole prompts) or an integer in [1, 4096]"),
    ({"token_budget": 8192}, "token_budget must be None"),
    ({"reward": "goodput", "shaping": "remaining"}, "shaping 'remaining' shapes the latency reward, not 'goodput'"),
    ({"queue_order": "lifo"}, "queue_order must be one of ['fcfs', 'shortest', 'deadline']"),
])
def test_bad_settings_fail_clearly(kwargs, message):
    with pytest.raises((ValueError, KeyError, WorkloadError)) as err:
        env = gym.make(SERVE, **kwargs)
        env.reset(seed=0)
    assert message in str(err.value)


def test_trace_csv(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,lin,lout\n0.0,10,5\n0.5,20,3\n0.5,7,1\n")
    w = load_trace(path)
    assert w.arrival_s.tolist() == [0.0, 0.5, 0.5] and w.lout.tolist() == [5, 3, 1]
    env = gym.make(SERVE, trace=str(path), warmup=0)
    env.reset(seed=0)
    done, rule = False, make_policy("threshold", env).bind(env)
    while not done:
        *_, term, trunc, info = env.step(rule.act(env.unwrapped))
        done = term or trunc
    assert info["summary"]["requests"] == 3
    for text, message in [("arrival_s,lin\n0,1\n", "header must hold"),
                          ("arrival_s,lin,lout\n1.0,5,5\n0.5,5,5\n", "not before the row above"),
                          ("arrival_s,lin,lout\n0,x,5\n", ":2:"), ("arrival_s,lin,lout\n", "no requests"),
                          ("arrival_s,lin,lout\n0,0,5\n", "lengths must be")]:
        path.write_text(text)
        with pytest.raises(WorkloadError, match=message):
            load_trace(path)


def test_bursty_arrivals_have_the_asked_variability():
    from sim.online import inter_arrival_times

    gaps = inter_arrival_times(10.0, 200_000, np.random.default_rng(0), "gamma", cv=3.0)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.05)


def test_rules_and_summary():
    w = sample_workload(12.0, 300, "creative-writing", np.random.default_rng(4))
    papi = OnlineServer(PAPI, w)
    serve(papi, fcfs_rule(PAPI))
    gpu = OnlineServer(CostModel("a100_attacc", "llama-65b"), w)
    serve(gpu, fcfs_rule(gpu.cm, fc="gpu"))
    a, b = summarise(papi, 30, 0.1, 0.05), summarise(gpu, 30, 0.1, 0.05)
    assert a["requests"] == b["requests"] == 270
    assert a["joules_per_token"] < b["joules_per_token"]  # FC-PIM at low RLP saves energy
    assert 0 <= a["slo_attainment"] <= 1 and math.isfinite(a["goodput_rps"])
    with pytest.raises(ValueError, match="runs FC on"):
        OnlineServer(gpu.cm, w).iteration("pim", 1, 1)


def test_serve_script_refuses_bad_rates_and_arrivals(tmp_path):
    from experiments import serve

    assert serve.main(["--rates", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert serve.main(["--arrival", "gamma", "--cv", "0", "--out", str(tmp_path / "bad")]) == 2


@pytest.mark.slow
def test_ppo_trains_on_papiserve_and_the_figure_script_runs(tmp_path):
    """The existing training script trains on PapiServe-v0 (scalar envs in a DummyVecEnv), and
    experiments.serve draws the latency-versus-rate table with the agent on it."""
    import json

    ray = pytest.importorskip("ray")
    from experiments import run_config, serve, train

    cfg = run_config.load_config("ppo", SERVE)
    cfg.update(n_envs=2, eval_freq=512, eval_episodes=1, checkpoint_freq=512,
               env_kwargs={**cfg["env_kwargs"], "requests": 16, "warmup": 2, "rate": 8.0})
    cfg["hyperparams"] = {**cfg["hyperparams"], "n_steps": 128, "batch_size": 64, "n_epochs": 1}
    run = train.train("ppo", SERVE, cfg, 512, 0, tmp_path / "runs", progress_bar=False, verbose=0)
    history = json.loads((run / "evaluations.json").read_text())
    assert history[-1]["score_vs_threshold"] > 0 and 1 <= history[-1]["mean_tlp"] <= 4
    ray.shutdown()
    try:
        assert serve.main(["--rates", "4", "--episodes", "1", "--requests", "12", "--warmup", "2", "--num-cpus", "1",
                           "--agent", f"ppo:{run / 'best_model.zip'}", "--out", str(tmp_path / "serve")]) == 0
    finally:
        ray.shutdown()
    record = json.loads((tmp_path / "serve" / "serve.json").read_text())
    assert set(serve.BASELINES) | {serve.BEST_TLP, serve.VALIDATED} <= set(record["curves"])
    assert all(v > 0 for v in record["saturation_rps"].values())
    [row] = record["learned_vs_rules"]
    assert row["rate"] == 4.0 and row["vs PAPI rule"]["iqm"] > 0 and row[f"vs {serve.VALIDATED}"]["iqm"] > 0
    assert (tmp_path / "serve" / "serve.png").exists() and "Saturation" in (tmp_path / "serve" / "serve.md").read_text()


def test_azure_trace_windows_splits_and_load_scale(tmp_path):
    """The shipped Azure conversation trace loads by name; an Azure-format CSV (gzip too) reads as
    seconds since the first request; episodes draw windows of ``requests`` within their split,
    compressed by ``rate_scale``."""
    import gzip

    from sim.online import load_trace, trace_window

    azure = load_trace("azure-conv")
    assert azure.size == 19366 and azure.arrival_s[0] == 0.0 and 3400 < azure.arrival_s[-1] < 3600
    text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 23:59:59.5000000,10,3\n"
            "2023-11-17 00:00:00.2500000,20,4\n")
    with gzip.open(tmp_path / "t.csv.gz", "wt") as fh:
        fh.write(text)
    w = load_trace(tmp_path / "t.csv.gz")
    assert w.arrival_s.tolist() == [0.0, 0.75] and w.lin.tolist() == [10, 20] and w.lout.tolist() == [3, 4]
    window = trace_window(azure, 100, 50, rate_scale=2.0)
    assert window.size == 50 and window.arrival_s[0] == 0.0
    assert window.arrival_s[-1] == pytest.approx((azure.arrival_s[149] - azure.arrival_s[100]) / 2.0)
    env = gym.make(SERVE, trace="azure-conv", trace_split="test", rate_scale=2.0, requests=64, warmup=8).unwrapped
    _, info = env.reset(seed=1)
    assert info["requests"] == 64 and info["rate"] == pytest.approx(trace_rate(env.server.w))
    first = env.server.w.lin.tolist()  # the window lies in the last 20% of the trace
    lo = round(0.8 * azure.size)
    rows = {tuple(azure.lin[k:k + 64]) for k in range(lo, azure.size - 63)}
    assert tuple(first) in rows
    for kwargs, message in [({"trace_split": "dev"}, "trace_split must be one of"),
                            ({"rate_scale": 0.0}, "rate_scale must be a positive number"),
                            ({"trace": "azure-code"}, "shipped traces")]:
        with pytest.raises((ValueError, WorkloadError), match=message):
            gym.make(SERVE, **{"trace": "azure-conv", **kwargs})


def test_evaluate_reports_serving_latency_and_steadiness():
    """experiments.evaluate on PapiServe-v0 reports TTFT/TPOT percentiles, SLO attainment, goodput
    and whether each load point kept up with its arrivals; a trace's targets come from its own
    median request, and slo_scale tightens them."""
    from experiments.evaluate import SERVING_METRICS, evaluate, to_markdown

    result = evaluate(SERVE, ["threshold", "fixed-tlp:2"], episodes=2, seed=0, intervals=False,
                      env_kwargs={"requests": 48, "warmup": 8, "rate": [6.0]})
    for row in result["policies"].values():
        assert set(SERVING_METRICS) <= set(row) and row["steady"] == 1.0 and row["offered_rps"] > 0
        assert 0 < row["ttft_p50_s"] <= row["ttft_p99_s"] and 0 <= row["slo_attainment"] <= 1
    assert "Serving latency" in to_markdown(result)
    medium = gym.make(SERVE, trace="azure-conv").unwrapped
    tight = gym.make(SERVE, trace="azure-conv", slo_scale=2.0).unwrapped
    plain = gym.make(SERVE).unwrapped
    assert medium.ttft_target_s > 3 * plain.ttft_target_s  # the trace's prompts are longer
    assert tight.ttft_target_s == pytest.approx(0.4 * medium.ttft_target_s)


def test_validated_tlp_chooses_on_validation_episodes_only():
    """validated-tlp runs PAPI's rule at every TLP on validation seeds (a trace's validation split)
    and keeps the best mean score; it never sees the evaluation's episodes."""
    from agents.rules import VALIDATION_SEED

    kwargs = {"requests": 24, "warmup": 4, "rate": [8.0], "acceptance_rate": 0.8, "max_tlp": 3}
    env = gym.make(SERVE, **kwargs)
    rule = make_policy("validated-tlp", env).bind(env)
    scores = rule.validation_scores
    assert sorted(scores) == [1, 2, 3] and rule.tlp == max(scores, key=scores.get)
    by_hand = []
    for k in range(4):
        env.reset(seed=VALIDATION_SEED + k)
        fixed, done = make_policy(f"fixed-tlp:{rule.tlp}", env).bind(env), False
        while not done:
            *_, term, trunc, info = env.step(fixed.act(env.unwrapped))
            done = term or trunc
        by_hand.append(info["score"])
    assert np.mean(by_hand) == pytest.approx(scores[rule.tlp], rel=1e-12)
    trace = gym.make(SERVE, trace="azure-conv", trace_split="test", requests=16, warmup=2, max_tlp=2)
    chosen = make_policy("validated-tlp", trace).bind(trace)
    assert chosen.tlp in (1, 2) and len(chosen.chosen) == 1
    with pytest.raises(ValueError, match="gymnasium.make"):
        make_policy("validated-tlp", papi_env.PapiServeEnv(requests=8, warmup=0)).bind(
            papi_env.PapiServeEnv(requests=8, warmup=0))


def test_smartspec_is_the_oracle_when_its_estimate_is_the_truth():
    """smartspec prices (TLP, unit) by expected tokens per second with the runtime's acceptance
    estimate; with every draft accepted the estimate stays 1 and it decides as the oracle does,
    and with rejections it differs from the oracle only through its estimate."""
    env = gym.make(SERVE, requests=32, warmup=4, rate=[16.0])
    env.reset(seed=3)
    smart, oracle = make_policy("smartspec", env).bind(env), make_policy("oracle", env).bind(env)
    done = False
    while not done:
        a = smart.act(env.unwrapped)
        assert np.array_equal(a, oracle.act(env.unwrapped))
        *_, term, trunc, _ = env.step(a)
        done = term or trunc
    noisy = gym.make(SERVE, requests=32, warmup=4, rate=[16.0], acceptance_rate=0.6)
    noisy.reset(seed=3)
    for _ in range(40):
        noisy.step(make_policy("fixed-tlp:4", noisy).bind(noisy).act(noisy.unwrapped))
    assert noisy.unwrapped.accept_ema < 0.9  # the estimate has learnt the rejections
    from agents.planners import serve_greedy

    estimate = noisy.unwrapped.accept_ema
    assert np.array_equal(make_policy("smartspec", noisy).bind(noisy).act(noisy.unwrapped),
                          serve_greedy(noisy.unwrapped, estimate))


def test_arrival_mixtures_draw_a_source_per_episode():
    """arrival as a list: each episode draws its source (and a gamma cv, a trace load scale);
    generated arrivals take their lengths from the trace split when a trace is given."""
    env = gym.make(SERVE, trace="azure-conv", trace_split="train", arrival=["trace", "poisson", "gamma"],
                   cv=[2.0, 4.0], rate=[4.0], rate_scale=[0.5, 1.0], requests=32, warmup=4).unwrapped
    azure = load_trace("azure-conv")
    train_pairs = set(zip(azure.lin[:round(0.6 * azure.size)].tolist(), azure.lout[:round(0.6 * azure.size)].tolist(),
                          strict=True))
    seen = set()
    for seed in range(12):
        _, info = env.reset(seed=seed)
        seen.add(info["arrival"])
        w = env.server.w
        assert set(zip(w.lin.tolist(), w.lout.tolist(), strict=True)) <= train_pairs
    assert seen == {"trace", "poisson", "gamma"}
    with pytest.raises(ValueError, match="arrival must be one of"):
        gym.make(SERVE, arrival=["poisson", "uniform"])
    with pytest.raises(ValueError, match="needs a trace"):
        gym.make(SERVE, arrival="trace")
    with pytest.raises(ValueError, match="cv must be a positive number"):
        gym.make(SERVE, arrival="gamma", cv=[2.0, -1.0])


@pytest.mark.slow
def test_goodput_study_runs_end_to_end(tmp_path):
    """experiments.serve_goodput at one load, one episode, with a given agent (a tiny PPO run):
    every policy evaluated, the learned comparison and the figure written."""
    import json

    ray = pytest.importorskip("ray")
    from experiments import serve_goodput

    try:
        assert serve_goodput.main(["--loads", "0.5", "--episodes", "1", "--requests", "48", "--warmup", "8",
                                   "--train-seeds", "1", "--total-timesteps", "2048", "--num-cpus", "1",
                                   "--out", str(tmp_path)]) == 0
    finally:
        ray.shutdown()
    record = json.loads((tmp_path / "serve_goodput.json").read_text())
    [point] = record["points"]
    assert set(serve_goodput.BASELINES) <= set(point["policies"])
    assert point["best_deployable"] in serve_goodput.DEPLOYABLE and "ppo" in point["learned"]
    assert (tmp_path / "serve_goodput.png").exists() and (tmp_path / "serve_goodput.pdf").exists()
    assert "Goodput versus load" in (tmp_path / "serve_goodput.md").read_text()


def test_paged_kv_admits_more_preempts_by_recompute_and_serves_everything():
    """Paged KV (vLLM): more requests run at once than when each reserves its full length; when
    the running ones cannot grow, the most recently admitted are preempted and later readmitted
    with their context recomputed; every request is still served once to its last token, its
    first token time kept, and the KV in use is what its requests hold."""
    cm = CostModel("gpu_only", "llama-65b")  # 230 GB of KV: the Azure prompts fill it at 20x load
    w = trace_window(load_trace("azure-conv"), 0, 600, 20.0)
    reserve, paged = OnlineServer(cm, w), OnlineServer(cm, w, kv=KVPolicy("paged"))
    rec_r = serve(reserve, fcfs_rule(cm, fc="gpu", tlp=2))
    rec_p = []
    while not paged.done:
        rec_p.append(paged.iteration("gpu", 2, 256))
        held = paged.engine.field(0, sk.R_KV_HELD).sum()
        assert paged.kv_used == pytest.approx(held, rel=1e-9) and paged.kv_used <= paged.kv_capacity
    assert max(r.rlp for r in rec_p) > max(r.rlp for r in rec_r)
    assert paged.preemptions > 0 and paged.recomputed_tokens > 0
    assert np.array_equal(paged.generated, w.lout) and sum(r.tokens for r in rec_p) == int(w.lout.sum())
    admitted = np.concatenate([r.admitted for r in rec_p])
    assert set(admitted.tolist()) == set(range(w.size)) and len(admitted) == w.size + paged.preemptions
    m = paged.request_metrics()
    assert np.all(m["ttft_s"] > 0) and np.all(m["latency_s"] >= m["ttft_s"])
    with pytest.raises(ValueError, match="kv_policy must be one of"):
        KVPolicy("swap")
    env = gym.make(SERVE, kv_policy="paged", system="gpu_only", trace="azure-conv", rate_scale=20.0, requests=200,
                   warmup=10)
    env.reset(seed=0)
    done, preempted = False, 0
    while not done:
        *_, term, trunc, info = env.step(np.array([1, 1, 16]))
        preempted += info["preempted"]
        done = term or trunc
    assert preempted == env.unwrapped.server.preemptions and info["summary"]["requests"] == 190


def test_a_forked_server_steps_as_the_original_and_the_rollout_oracle_acts():
    """ServeEngine.fork copies a server exactly (future arrivals and acceptance draws included):
    each copy steps as the original would; the rollout oracle picks a valid action from such copies."""
    env = gym.make(SERVE, requests=64, warmup=8, rate=[24.0], acceptance_rate=0.7, reward="goodput")
    env.reset(seed=5)
    smart = make_policy("smartspec", env).bind(env)
    for _ in range(30):
        env.step(smart.act(env.unwrapped))
    s = env.unwrapped.server
    fork = s.engine.fork(s.i, 3)
    fork.iterate(np.array([1, 1, 1]), np.array([3, 3, 3]), np.array([5, 5, 5]), np.ones(3, dtype=bool))
    _, _, _, _, info = env.step(np.array([1, 2, 5]))
    for k in range(3):
        assert fork.out[k, sk.O_END] - fork.out[k, sk.O_START] == info["time"]
        assert fork.out[k, sk.O_TOKENS] == info["tokens"] and fork.out[k, sk.O_ADMITTED] == info["admitted"]
    rollout = make_policy("oracle-rollout", env).bind(env)
    action = rollout.act(env.unwrapped)
    assert env.action_space.contains(action.astype(env.action_space.dtype))
    env.step(action)
    # a runtime's copy (the lookahead planner's): only the arrived requests, its own acceptance draws
    blind = s.engine.fork(s.i, 2, hindsight=False, acceptance_rate=0.5, key=7)
    assert blind.size(0) == s.arrived < s.w.size and blind.srv[0, sk.S_ACCEPT_P] == 0.5 and blind.keys[0] == 7
    pending = np.ones(2, dtype=bool)
    while pending.any():
        pending = blind.srv[:, sk.S_FINISHED] < blind.srv[:, sk.S_SIZE]
        blind.iterate(np.array([1, 1]), np.array([2, 2]), np.array([16, 16]), pending.copy())
    assert np.all(blind.srv[:, sk.S_FINISHED] == s.arrived)  # it ends with the requests it was shown
    planner = make_policy("planner-rollout", env).bind(env)
    assert planner.kind == "planner"
    action = planner.act(env.unwrapped)
    assert env.action_space.contains(action.astype(env.action_space.dtype))
