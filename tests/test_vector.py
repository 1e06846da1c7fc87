"""The native vector environments give exactly what N scalar environments give (SyncVectorEnv)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import papi_env

SETTINGS = {
    "papi_env/PapiSchedule-v0": [
        {}, {"reward": "edp", "batch_size": [1, 4], "tlp": [4, 8]}, {"reward": "latency_target", "max_steps": 40},
        {"acceptance_rate": 0.7, "reward": "energy", "batch_size": 8, "max_steps": 50},
        {"system": ["papi", "gpu_only"], "model": ["llama-65b", "gpt3-66b"], "batch_size": [2, 16]},
        {"tlp": [[0, 1], [5, 4]], "batch_size": 4},
    ],
    "papi_env/PapiKernelSchedule-v0": [
        {}, {"reward": "edp", "model": "gpt3-175b", "tlp": 8, "batch_size": [1, 4]},
        {"reward": "energy", "max_steps": 70},
    ],
    "papi_env/PapiSplitSchedule-v0": [{"max_steps": 90}, {"reward": "edp", "batch_size": [4, 64]}],
    "papi_env/PapiSpecSchedule-v0": [
        {}, {"reward": "edp", "token_credit": "best"}, {"reward_tokens": "expected", "reward": "energy"},
        {"reward": "latency_target", "max_tlp": 4, "batch_size": [1, 4], "max_steps": 30},
    ],
}
CASES = [(env_id, kwargs) for env_id, settings in SETTINGS.items() for kwargs in settings]


def _equal(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and all(_equal(x, y) if isinstance(x, np.ndarray) else x == y
                                          for x, y in zip(a.ravel(), b.ravel(), strict=True))
    return a.dtype == b.dtype and np.array_equal(a, b)


def _same_info(vec: dict, sync: dict) -> None:
    assert set(vec) == set(sync), set(vec) ^ set(sync)
    for key in sync:
        if isinstance(sync[key], dict):  # SAME_STEP's final_info
            _same_info(vec[key], sync[key])
        elif key.startswith("_"):
            assert np.array_equal(vec[key], sync[key]), key
        else:  # compare where present; SyncVectorEnv leaves zeros elsewhere
            mask = sync["_" + key]
            assert _equal(np.asarray(vec[key])[mask], np.asarray(sync[key])[mask]), key


def _step_both(vec, sync, actions) -> tuple[int, int]:
    """Step the native vector env and the SyncVectorEnv with the same actions; assert that they
    return the same arrays (dtypes too) and infos; (episodes ended, of which truncated)."""
    out_v, out_s = vec.step(actions), sync.step(actions)
    for x, y in zip(out_v[:4], out_s[:4], strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    _same_info(out_v[4], out_s[4])
    return int(np.sum(out_v[2] | out_v[3])), int(np.sum(out_v[3]))


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=[f"{e.split('/')[1]}-{i}" for i, (e, _) in
                                                          enumerate(CASES)])
def test_vector_equals_sync_bit_for_bit(env_id, kwargs):
    n, steps = 5, 160
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", **kwargs)
    obs_v, info_v = vec.reset(seed=11)
    obs_s, info_s = sync.reset(seed=11)
    assert np.array_equal(obs_v, obs_s)
    _same_info(info_v, info_s)
    actions = np.random.default_rng(3)
    vec.action_space.seed(5)
    episodes = 0
    for _ in range(steps):
        a = vec.action_space.sample()
        if env_id.endswith("PapiSchedule-v0"):  # only what each env's system offers
            masks = vec.unwrapped.action_masks()
            a = np.where(masks[np.arange(n), a], a, 1 - a)
        elif env_id.endswith("PapiSplitSchedule-v0"):
            a = actions.uniform(0, 1, a.shape).astype(np.float32)
        episodes += _step_both(vec, sync, a)[0]
    assert episodes >= 1  # autoreset was exercised
    vec.close()
    sync.close()


@pytest.mark.parametrize("env_id", list(papi_env.ENV_IDS))
def test_same_step_autoreset_equals_sync(env_id):
    """autoreset_mode=SAME_STEP: the ended episodes' last observations and infos under final_obs
    and final_info, the new episodes' in the step's rows, as SyncVectorEnv in that mode gives."""
    from gymnasium.vector import AutoresetMode

    n, kwargs = 4, {"batch_size": 4, "max_steps": 40}
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point",
                       autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs_v, _ = vec.reset(seed=2)
    obs_s, _ = sync.reset(seed=2)
    assert np.array_equal(obs_v, obs_s)
    vec.action_space.seed(1)
    ended = truncated = 0
    for _ in range(120):
        a = vec.action_space.sample()
        if env_id.endswith("PapiSchedule-v0"):
            masks = vec.unwrapped.action_masks()
            a = np.where(masks[np.arange(n), a], a, 1 - a)
        ended_now, truncated_now = _step_both(vec, sync, a)
        ended += ended_now
        truncated += truncated_now
    assert ended >= 1 and truncated >= 1  # both kinds of end were exercised
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", autoreset_mode="Disabled")


@pytest.mark.parametrize("env_id", list(papi_env.ENV_IDS))
def test_scores_on_every_finished_episode_and_checker(env_id):
    env = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", batch_size=2, max_steps=25)
    env.reset(seed=0)
    ended = 0
    for _ in range(80):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        done = term | trunc
        assert np.array_equal(info.get("_score", np.zeros(3, bool)), done)
        if done.any():
            assert np.all(np.isfinite(info["score"][done])) and np.all(info["score"][done] > 0)
        ended += done.sum()
    assert ended > 0
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


def test_vector_errors_name_what_is_allowed():
    env = gym.make_vec("papi_env/PapiSchedule-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0, 1]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="expected 0"):
        env.step(np.array([0, 2]))
    with pytest.raises(ValueError, match="one seed per environment"):
        env.reset(seed=[1, 2, 3])
    spec = gym.make_vec("papi_env/PapiSpecSchedule-v0", num_envs=2, vectorization_mode="vector_entry_point")
    spec.reset(seed=0)
    with pytest.raises(ValueError, match="TLP - 1"):
        spec.step(np.array([[8, 0], [0, 0]]))
    with pytest.raises(ValueError, match="num_envs"):
        gym.make_vec("papi_env/PapiSchedule-v0", num_envs=0, vectorization_mode="vector_entry_point")


@pytest.mark.parametrize(("env_id", "extra"), [
    ("papi_env/PapiSchedule-v0", {}),
    ("papi_env/PapiSpecSchedule-v0", {"flat_actions": True}),
    ("papi_env/PapiSplitSchedule-v0", {}),
    ("papi_env/PapiServe-v0", {"env_kwargs": {"requests": 12, "warmup": 2, "rate": 64.0, "max_steps": 60,
                                              "acceptance_rate": 0.8}}),
])
def test_sb3_native_adapter_equals_dummy_vec_env(env_id, extra):
    """experiments.train's native VecEnv and SB3's DummyVecEnv of scalar envs (with the scaling and
    flat-action wrappers) return the same observations, rewards, dones and episode scores."""
    pytest.importorskip("stable_baselines3")
    from experiments.train import make_env

    cfg = {"n_envs": 3, "env_kwargs": {"reward": "edp", "batch_size": [1, 4], "max_steps": 60}, **extra}
    native = make_env(env_id, {**cfg, "vec": "native"}, seed=4)
    dummy = make_env(env_id, {**cfg, "vec": "dummy"}, seed=4)
    assert np.array_equal(native.reset(), dummy.reset())
    native.action_space.seed(0)
    ended = 0
    for _ in range(150):
        a = np.stack([native.action_space.sample() for _ in range(3)])
        (o1, r1, d1, i1), (o2, r2, d2, i2) = native.step(a), dummy.step(a)
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2) and np.array_equal(d1, d2)
        for x, y in zip(i1, i2, strict=True):
            if "score" in y:
                ended += 1
                assert x["score"] == y["score"] and np.array_equal(x["terminal_observation"], y["terminal_observation"])
                assert x["TimeLimit.truncated"] == y["TimeLimit.truncated"] and x["episode"]["r"] == y["episode"]["r"]
    assert ended > 0


def test_counter_draws_of_chosen_requests_equal_the_whole_batch():
    """A request's draw depends on (episode key, iteration, slot, stream) only: drawing the live
    requests alone (as the envs do) gives exactly the whole batch's draws at those slots."""
    from sim import random_streams

    key = np.array([3, 2**63 + 5, 17], dtype=np.uint64)
    iteration = np.array([0, 7, 4095])
    whole_u = random_streams.uniform(key[:, None], iteration[:, None], np.arange(64)[None, :], 0)
    whole_z = random_streams.normal(key[:, None], iteration[:, None], np.arange(64)[None, :], 1)
    rows, slots = np.nonzero(np.random.default_rng(0).random((3, 64)) < 0.4)
    assert np.array_equal(random_streams.uniform(key[rows], iteration[rows], slots, 0), whole_u[rows, slots])
    assert np.array_equal(random_streams.normal(key[rows], iteration[rows], slots, 1), whole_z[rows, slots])
    assert ((whole_u > 0) & (whole_u <= 1)).all() and len(np.unique(whole_u)) == whole_u.size


def test_loading_many_batches_equals_loading_each():
    from sim.batches import BatchArrays

    rng = np.random.default_rng(1)
    batches = [(rng.integers(1, 900, size=k), rng.integers(1, 40, size=k)) for k in (5, 1, 16, 16)]
    for stochastic in (False, True):
        together, apart = BatchArrays(4, 16, stochastic), BatchArrays(4, 16, stochastic)
        together.load_many(np.arange(4), [b[0] for b in batches], [b[1] for b in batches])
        for i, (lin, lout) in enumerate(batches):
            apart.load(i, lin, lout)
            order = np.argsort(lout, kind="stable")
            assert np.array_equal(together.output_lengths[i, :len(lout)], lout[order])
            assert np.array_equal(together.input_lengths[i, :len(lin)], lin[order])
            if not stochastic:  # the prefix and suffix sums behind the O(1) context of lock-step batches
                assert together.suffix_input[i, 0] == lin.sum() and together.prefix_output[i, -1] == lout.sum()
                assert together.suffix_max_input[i, 0] == lin.max() and together.next_output[i] == lout.min()
        for name, value in vars(together).items():
            assert np.array_equal(value, getattr(apart, name)), name


@pytest.mark.parametrize(("env_id", "algo", "kwargs"), [
    ("papi_env/PapiKernelSchedule-v0", "ppo", {"batch_size": [1, 4], "max_steps": 80}),
    ("papi_env/PapiSplitSchedule-v0", "ppo", {"reward": "edp", "batch_size": [2, 8], "max_steps": 80}),
    ("papi_env/PapiSpecSchedule-v0", "dqn", {"reward": "edp", "batch_size": [1, 4], "max_steps": 60}),
])
def test_learned_agent_episodes_at_once_equal_one_by_one(env_id, algo, kwargs):
    """evaluate.run_episodes (one vector env, batched predict: what validation and evaluation use for
    learned agents) gives exactly run_episode's results, seed by seed."""
    pytest.importorskip("stable_baselines3")
    from agents.learned import LearnedPolicy, algo_class
    from experiments.evaluate import run_episode, run_episodes
    from experiments.vec_env import NativeVecEnv

    venv = NativeVecEnv(env_id, 2, kwargs, flat_actions=algo == "dqn")
    agent = LearnedPolicy(algo_class(algo)("MlpPolicy", venv, seed=3, device="cpu"))  # untrained: any policy will do
    seeds = [11, 12, 13, 14, 15]
    env = gym.make(env_id, **kwargs)
    agent.bind(env.unwrapped)
    one_by_one = [run_episode(env, agent, s) for s in seeds]
    assert run_episodes(env_id, kwargs, agent, seeds) == one_by_one


def test_environments_of_a_process_share_cost_tables():
    """Envs with the same (system, model) list share one CostTables (what one fills, the others
    reuse); a different list gets its own; the cache is bounded."""
    from hardware import cost_tables
    from hardware.cost_tables import CostTables

    CostTables.clear_shared()
    a = gym.make("papi_env/PapiSchedule-v0").unwrapped.core
    b = gym.make_vec("papi_env/PapiKernelSchedule-v0", num_envs=3, vectorization_mode="vector_entry_point")
    b = b.unwrapped.core
    c = gym.make("papi_env/PapiSchedule-v0", model="gpt3-175b").unwrapped.core
    assert a.tables is b.tables and a.tables is not c.tables
    a.tables.fc_cost(np.array([0]), np.array([64]), np.array([1]))
    assert not np.isnan(b.tables.fc[0, -1, 1, 64]).any()  # filled through a, seen by b
    for i in range(cost_tables.SHARED_TABLES + 3):
        CostTables.shared([a.cost_models[0]] * (i + 2))
    assert len(cost_tables._SHARED) == cost_tables.SHARED_TABLES


def test_pickled_envs_leave_their_cost_tables_out():
    """A pickled vector env (what a checkpoint's envs.pkl holds) carries its cost models, not its
    filled tables (a split run's are 12 MB); unpickled in a fresh process's state, it refills them
    and steps exactly as the original."""
    import pickle

    from hardware.cost_tables import CostTables

    env = gym.make_vec("papi_env/PapiSplitSchedule-v0", num_envs=4, vectorization_mode="vector_entry_point")
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(50):
        env.step(env.action_space.sample())
    assert env.unwrapped.core.tables._split is not None  # filled: 12 MB
    blob = pickle.dumps(env.unwrapped)
    assert len(blob) < 1_000_000
    CostTables.clear_shared()  # as in a new process
    clone = pickle.loads(blob)
    assert clone.core.tables is not env.unwrapped.core.tables and clone.core.tables._split is None
    for _ in range(100):
        actions = env.action_space.sample()
        got, want = clone.step(actions), env.step(actions)
        for x, y in zip(got[:4], want[:4], strict=True):
            assert np.array_equal(x, y)
        _same_info(got[4], want[4])


def test_cost_tables_equal_the_cost_model_element_by_element():
    """Array lookups give CostModel.iteration's numbers bit for bit, whether the lookup is small
    (numpy's fancy index) or large (the flat index past cost_tables._FLAT_FROM elements)."""
    from hardware import cost_tables
    from hardware.cost_tables import UNITS, CostTables
    from hardware.systems import CostModel

    models = [CostModel("papi", "llama-65b"), CostModel("papi", "gpt3-175b")]
    tables = CostTables(models)
    rng = np.random.default_rng(0)
    n = 2 * cost_tables._FLAT_FROM
    cm, rlp, tlp, unit = (rng.integers(0, 2, n), rng.integers(1, cost_tables.MAX_RLP + 1, n),
                          rng.integers(1, cost_tables.MAX_TLP + 1, n), rng.integers(0, 2, n))
    ctx = (rlp * rng.integers(10, 3000, n)).astype(np.float64)
    attention = np.array([UNITS.index(m.system.attention_unit) for m in models])[cm]
    cold = tables.iteration_on(cm, rlp, tlp, ctx, unit, attention)  # fills the entries
    large = tables.iteration_on(cm, rlp, tlp, ctx, unit, attention)  # reads them back
    assert all(np.array_equal(a, b) for a, b in zip(cold, large, strict=True))
    for i in range(0, n, 5):
        one = slice(i, i + 1)
        small = tables.iteration_on(cm[one], rlp[one], tlp[one], ctx[one], unit[one], attention[one])
        want = tuple(models[cm[i]].iteration(int(rlp[i]), int(tlp[i]), float(ctx[i]), UNITS[unit[i]]))
        assert tuple(float(v[i]) for v in large) == tuple(float(v[0]) for v in small) == want


def test_table_lookups_read_the_entry_they_index():
    """CostTables._lookup over a filled table equals numpy's own fancy index, for small and large
    lookups, with broadcast (N, 1) x (1, K) indices and plain ints among them."""
    from hardware import cost_tables
    from hardware.cost_tables import CostTables

    table = np.arange(3 * 4 * 5 * 300 * 2, dtype=np.float64).reshape(3, 4, 5, 300, 2)  # every entry distinct
    rng = np.random.default_rng(1)

    def never(*entry):
        raise AssertionError(f"entry {entry} is filled")

    for n in (1, 7, cost_tables._FLAT_FROM, 3 * cost_tables._FLAT_FROM):
        index = (rng.integers(0, 3, (n, 1)), 2, rng.integers(0, 5, (1, 4)), rng.integers(0, 300, (n, 4)))
        np.testing.assert_array_equal(CostTables._lookup(table, index, never), table[index])


SERVE_SETTINGS = [
    {"requests": 24, "warmup": 4, "rate": [8.0, 64.0], "max_steps": 60, "acceptance_rate": 0.7},
    {"reward": "goodput", "arrival": "gamma", "cv": 3.0, "requests": 16, "warmup": 2, "rate": 48.0, "max_steps": 50},
    {"reward": "energy", "system": "gpu_only", "requests": 16, "warmup": 0, "max_admit": 4, "rate": 64.0,
     "max_steps": 60},
    {"shaping": "remaining", "requests": 20, "warmup": 3, "rate": 32.0, "max_tlp": 6, "max_steps": 70},
    {"trace": "short", "warmup": 2, "acceptance_rate": 0.6, "reward": "goodput"},  # episodes that terminate
    {"kv_policy": "paged", "block_tokens": 8, "system": "gpu_only", "requests": 24, "warmup": 2, "rate": 64.0,
     "max_steps": 60},
    {"population": [["papi", "llama-65b"], ["gpu_only", "llama-65b"], ["a100_attacc", "llama-65b"]],
     "hardware_features": True, "token_budget": 256, "queue_order": "shortest", "requests": 16, "warmup": 2,
     "rate": 64.0, "max_steps": 40, "reward": "goodput", "shaping": "on-track", "acceptance_rate": 0.7},
]


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
@pytest.mark.parametrize("kwargs", SERVE_SETTINGS, ids=range(len(SERVE_SETTINGS)))
def test_serve_vector_equals_sync(kwargs, mode, tmp_path):
    """PapiServe-v0's native vector form (ServeCore with N environments) gives what N scalar envs
    in a SyncVectorEnv give, in both autoreset modes."""
    from gymnasium.vector import AutoresetMode

    if kwargs.get("trace") == "short":
        trace = tmp_path / "short.csv"
        trace.write_text("arrival_s,lin,lout\n" + "".join(f"{0.01 * k},{30 + k},{1 + k % 7}\n" for k in range(12)))
        kwargs = {**kwargs, "trace": str(trace)}

    n, env_id = 4, papi_env.SERVE_ENV_ID
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point",
                       autoreset_mode=AutoresetMode(mode), **kwargs)
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode(mode)}, **kwargs)
    obs_v, info_v = vec.reset(seed=7)
    obs_s, info_s = sync.reset(seed=7)
    assert np.array_equal(obs_v, obs_s)
    _same_info(info_v, info_s)
    vec.action_space.seed(3)
    ended = 0
    for _ in range(150):
        ended += _step_both(vec, sync, vec.action_space.sample())[0]
    assert ended >= 2  # autoreset was exercised
    assert np.array_equal(vec.unwrapped.action_masks(), np.stack(sync.call("action_masks")))
    vec.close()
    with pytest.raises(RuntimeError, match="closed"):
        vec.reset(seed=0)
