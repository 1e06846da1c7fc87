"""Speed and memory of the environment, against gymnasium's CartPole-v1, on one core.

    python -m experiments.bench [--steps 100000]
    python -m experiments.bench --vector     # native vector envs at N = 1, 64, 1024 vs CartPoleVectorEnv
    python -m experiments.bench --train      # PPO training steps/s per variant vs PPO on CartPole-v1
    python -m experiments.bench --fanout     # 2 seeds x 2 objectives: process pool vs Ray tasks vs Tune
    python -m experiments.bench --startup    # a fresh process's first step: numba cache warm, cold, Ray workers

Prints steps per second for every PAPI environment (through gymnasium.make, with its wrappers,
a fixed sensible action) and for CartPole-v1 in the same run, the ratio of the default env to
CartPole, the cost model's cold-start time, and the process's peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml

import papi_env
from hardware.cost_tables import CostTables

FIXED_ACTIONS = {
    "papi_env/PapiSchedule-v0": 1,
    "papi_env/PapiKernelSchedule-v0": np.array([1, 1, 1, 0]),
    "papi_env/PapiSplitSchedule-v0": np.array([0.5, 0.5, 0.5], dtype=np.float32),
    "papi_env/PapiSpecSchedule-v0": np.array([1, 0]),
    "papi_env/PapiServe-v0": np.array([1, 0, 16]),  # FC on the GPUs, TLP 1, admit up to 16 a step
    "CartPole-v1": 0,
}
TARGETS = {  # issue "Compiled engine": the ratio to CartPole each line should reach (scalar, vector x1024)
    "papi_env/PapiSchedule-v0": (0.5, 0.5),
    "papi_env/PapiKernelSchedule-v0": (None, 0.4),
    "papi_env/PapiSplitSchedule-v0": (None, 0.4),
    "papi_env/PapiSpecSchedule-v0 as trained": (0.1, 0.1),
    "papi_env/PapiServe-v0": (0.1, 0.05),
}


def _target(name: str, mode: int) -> str:
    """`` (target 0.5x)`` for a line with a target in ``mode`` (0 scalar, 1 vector x1024)."""
    goal = TARGETS.get(name, (None, None))[mode]
    return f"  (target {goal}x)" if goal is not None else ""


def steps_per_second(env_id: str, steps: int, seed: int = 0, **kwargs) -> float:
    env = gym.make(env_id, **kwargs)
    env.reset(seed=seed)
    action = FIXED_ACTIONS[env_id]
    episode = 0
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            episode += 1
            env.reset(seed=seed + episode)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


SPEC = "papi_env/PapiSpecSchedule-v0"
AS_TRAINED = {"token_credit": "best"}  # the spec variant as configs/ppo.yaml trains it
SERVE_CHUNKED = {"token_budget": 512, "queue_order": "shortest"}  # chunked prefill, budget shared shortest first


def _name(env_id: str, kwargs: dict) -> str:
    """A bench line's name: the env, and which of its settings (the spec variant as trained,
    serving with chunked prefill)."""
    if not kwargs:
        return env_id
    return env_id + (" chunked" if "token_budget" in kwargs else " as trained")

VECTOR_SIZES = (1, 64, 1024)
WARM_ITERATIONS = 1500  # [measured] vector steps before timing: a few episodes of the default batches


def vector_steps_per_second(env_id: str, num_envs: int, seconds: float = 2.0, **kwargs) -> float:
    """Steps/s (environment steps: iterations x N) of a native vector env with a fixed action, or
    of gymnasium's CartPoleVectorEnv, over about ``seconds`` after a warm-up."""
    if env_id == "CartPole-v1":
        from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

        env = CartPoleVectorEnv(num_envs=num_envs)
    else:
        env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    env.reset(seed=0)
    actions = np.stack([np.asarray(FIXED_ACTIONS[env_id])] * num_envs)
    start, warm = time.perf_counter(), 0
    # warm up to a long run's steady state: cost tables filled, and episodes no longer in the
    # lock-step of their common start (at first every batch is full: the slowest steps)
    while time.perf_counter() - start < seconds / 2 or warm < WARM_ITERATIONS:
        env.step(actions)
        warm += 1
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            env.step(actions)
        steps += 10
    return steps * num_envs / (time.perf_counter() - start)


def bench_vector() -> None:
    for n in VECTOR_SIZES:
        cart = vector_steps_per_second("CartPole-v1", n)
        print(f"{'CartPoleVectorEnv':<34} vector x{n:<5} {cart:>12,.0f} steps/s")
        mode = 1 if n == 1024 else None
        for env_id, kwargs in [*((e, {}) for e in papi_env.ENV_IDS), (SPEC, AS_TRAINED), (papi_env.SERVE_ENV_ID, {}),
                               (papi_env.SERVE_ENV_ID, SERVE_CHUNKED)]:
            name = _name(env_id, kwargs)
            speed = vector_steps_per_second(env_id, n, **kwargs)
            goal = _target(name, mode) if mode is not None else ""
            print(f"{name:<34} vector x{n:<5} {speed:>12,.0f} steps/s   {speed / cart:.3f}x CartPole{goal}")


TRAIN_SETTINGS = {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "policy_kwargs": {"net_arch": [64, 64]}}
TRAIN_ENVS, TRAIN_STEPS = 16, 16_384


def train_steps_per_second(env_id: str, null: bool = False, warm: bool = True, **kwargs) -> float:
    """PPO training steps/s on ``env_id`` with TRAIN_SETTINGS and TRAIN_ENVS environments (native
    vector env for PAPI, SB3's DummyVecEnv for CartPole-v1), one torch thread. ``null``: the same
    spaces, but an environment that costs nothing (NullVecEnv): PPO's own speed on that problem.
    ``warm``: after an untimed identical run, so the cost tables are filled (a long run's steady
    state); cold, a short run also pays for filling them."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from experiments.train import configure_torch
    from experiments.vec_env import NativeVecEnv, NullVecEnv

    configure_torch(1)  # as every training here: one thread, no distribution argument checks

    def make():
        if env_id == "CartPole-v1" or env_id not in papi_env.VECTOR_ENTRY_POINTS:  # no native vector form
            venv = make_vec_env(env_id, n_envs=TRAIN_ENVS, seed=0, env_kwargs={"render_mode": None, **kwargs}
                                if env_id != "CartPole-v1" else None)
        else:
            venv = NativeVecEnv(env_id, TRAIN_ENVS, kwargs)
            venv.seed(0)
        return NullVecEnv(venv.num_envs, venv.observation_space, venv.action_space) if null else venv

    if warm:  # the same run once untimed: the process's cost tables (shared by its envs) fill
        PPO("MlpPolicy", make(), seed=0, device="cpu", **TRAIN_SETTINGS).learn(TRAIN_STEPS)
    model = PPO("MlpPolicy", make(), seed=0, device="cpu", **TRAIN_SETTINGS)
    start = time.perf_counter()
    model.learn(TRAIN_STEPS)
    return model.num_timesteps / (time.perf_counter() - start)


def bench_train() -> None:
    """PPO training steps/s per variant next to PPO on CartPole-v1, and beside each the same PPO on
    a null environment with the variant's spaces (the learner alone: the best any environment with
    these spaces could give) and the environment's share of the training time."""
    from experiments.rl_extra import require_rl

    require_rl("experiments.bench --train")
    cart = train_steps_per_second("CartPole-v1")  # warm too: torch's first run is slower
    print(f"train {'CartPole-v1':<34} {cart:>10,.0f} steps/s   (PPO, {TRAIN_ENVS} envs, {TRAIN_SETTINGS})")
    cart_null = train_steps_per_second("CartPole-v1", null=True, warm=False)
    print(f"train {'CartPole-v1':<34} {cart_null:>10,.0f} steps/s   null env with its spaces")
    rows = [(env_id, {}) for env_id in papi_env.ENV_IDS] + [(SPEC, AS_TRAINED), (papi_env.SERVE_ENV_ID, {})]
    for env_id, kwargs in rows:
        name = _name(env_id, kwargs)
        CostTables.clear_shared()
        cold = train_steps_per_second(env_id, warm=False, **kwargs)  # from empty cost tables
        speed = train_steps_per_second(env_id, **kwargs)
        floor = train_steps_per_second(env_id, null=True, warm=False, **kwargs)
        env_share = 1.0 - speed / floor
        print(f"train {name:<34} {speed:>10,.0f} steps/s   {speed / cart:.2f}x CartPole (target 0.85x)   "
              f"(null env with its spaces {floor:,.0f} steps/s = {floor / cart:.2f}x CartPole; "
              f"the env's share of training time {env_share:.0%}; cold tables {cold:,.0f} steps/s)")


def _final_score(run_dir: Path) -> float:
    return json.loads((Path(run_dir) / "evaluations.json").read_text())[-1]["score_vs_threshold"]


def bench_fanout(total: int) -> None:
    """Wall time of the same 2-seed x 2-objective PPO runs on 2 CPUs: the process pool that the
    scripts used before Ray, Ray tasks (experiments.fanout) and a Ray Tune sweep (experiments.sweep),
    each from a cold start (pool or Ray started inside the timing); the same final scores."""
    import argparse as ap
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    import ray

    from experiments import fanout, sweep
    from experiments.jobs import TrainJob, run_job, run_jobs

    with tempfile.TemporaryDirectory() as tmp:
        jobs = [TrainJob("ppo", papi_env.DEFAULT_ENV_ID, s, f"{tmp}/{kind}", total, env_kwargs={"reward": o}, label=o)
                for kind in ("pool", "ray") for o in ("latency", "energy") for s in (0, 1)]
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=2) as pool:
            pool_scores = [_final_score(run) for run in pool.map(run_job, jobs[:4])]
        pool_s = time.perf_counter() - start
        print(f"fanout process pool (2 workers)   4 runs x {total} steps  {pool_s:8.1f} s")
        start = time.perf_counter()
        fanout.connect(num_cpus=2)
        init_s = time.perf_counter() - start
        ray_scores = [_final_score(run) for run in run_jobs(jobs[4:], num_cpus=2)]
        ray_s = time.perf_counter() - start
        print(f"fanout ray tasks (2 CPUs)         4 runs x {total} steps  {ray_s:8.1f} s   "
              f"{ray_s / pool_s - 1:+.1%} vs pool (ray.init {init_s:.1f} s of it)")
        ray.shutdown()
        space = Path(tmp) / "space.yaml"
        space.write_text(yaml.safe_dump({"space": {"env_kwargs": {"reward": {"grid_search": ["latency", "energy"]}}}}))
        args = ap.Namespace(space=space, algo="ppo", env=papi_env.DEFAULT_ENV_ID, seeds=2, seed_base=0,
                            total_timesteps=total, num_samples=1, search="random", scheduler="fifo", episodes=1,
                            eval_seed=0, top=1, out=Path(tmp) / "sweep", resume=False, num_cpus=2)
        start = time.perf_counter()
        trials, _ = sweep.run_sweep(sweep.settings_from_args(args), num_cpus=2)
        tune_s = time.perf_counter() - start
        ray.shutdown()
        print(f"fanout ray tune sweep (2 CPUs)    4 runs x {total} steps  {tune_s:8.1f} s   "
              f"{tune_s / pool_s - 1:+.1%} vs pool")
        tune_scores = {(t["config"]["env_kwargs.reward"], t["seed"]): t["score_vs_threshold"] for t in trials}
        same = pool_scores == ray_scores == [tune_scores[(j.label, j.seed)] for j in jobs[:4]]
        print(f"fanout same final validation scores in all three: {same}")


STARTUP = ("import time; t = time.perf_counter(); import gymnasium as gym, papi_env; "
           "e = gym.make('papi_env/PapiSpecSchedule-v0'); e.reset(seed=0); e.step(e.action_space.sample()); "
           "print(time.perf_counter() - t)")


def _first_step_seconds(_: int = 0) -> float:
    """A Ray worker's import + make + reset + first step of the spec env, s (a module-level function)."""
    import subprocess
    import sys

    return float(subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True,
                                check=True).stdout)


def bench_startup() -> None:
    """How long a fresh process takes to its first step: with numba's cache warm (every process after
    the first), with an empty cache (the kernels compiled: once per installation), and in Ray
    workers (which must load, not compile)."""
    import os
    import subprocess
    import sys
    import tempfile

    from experiments import fanout

    subprocess.run([sys.executable, "-m", "papi_env.precompile"], check=True, capture_output=True)
    warm = _first_step_seconds()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "papi_env.precompile"], check=True, capture_output=True, env=env)
        cold = time.perf_counter() - start
    print(f"startup: import + make + reset + first step (spec env), warm cache   {warm:6.2f} s")
    print(f"startup: python -m papi_env.precompile with an empty cache (compile)  {cold:6.2f} s")
    fanout.connect(num_cpus=2)
    workers = fanout.run_all(_first_step_seconds, [0, 1], num_cpus=2)
    print(f"startup: the same first step in Ray workers                           "
          f"{max(workers):6.2f} s (slowest of {len(workers)})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--vector", action="store_true", help="native vector envs at N = 1, 64, 1024")
    parser.add_argument("--train", action="store_true", help="PPO training steps/s per variant")
    parser.add_argument("--startup", action="store_true",
                        help="a fresh process's first step with numba's cache warm and cold, and in Ray workers")
    parser.add_argument("--fanout", type=int, nargs="?", const=60_000, metavar="STEPS",
                        help="2 seeds x 2 objectives of PPO on PapiSchedule-v0 (STEPS each, default 60,000): process "
                             "pool vs Ray tasks vs Ray Tune wall time")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be a positive integer")
    if args.fanout is not None and args.fanout < 1:
        parser.error("--fanout must be a positive integer (steps per run)")
    if args.fanout:
        bench_fanout(args.fanout)
        return
    if args.startup:
        bench_startup()
        return
    if args.vector or args.train:
        if args.vector:
            bench_vector()
        if args.train:
            bench_train()
        return
    t0 = time.perf_counter()
    gym.make(papi_env.DEFAULT_ENV_ID).reset(seed=0)
    cold = time.perf_counter() - t0
    steps_per_second(papi_env.DEFAULT_ENV_ID, 5_000)  # warm caches (FC costs per RLP x TLP)
    cart = steps_per_second("CartPole-v1", args.steps)
    print(f"{'CartPole-v1':<40} {cart:>10,.0f} steps/s")
    spec = "papi_env/PapiSpecSchedule-v0"  # as trained: its reward prices every action
    trained = yaml.safe_load((Path(__file__).parent / "configs" / "ppo.yaml").read_text())[spec]["env_kwargs"]
    rows = [(env_id, {}, args.steps if env_id == papi_env.DEFAULT_ENV_ID else args.steps // 5)
            for env_id in papi_env.ALL_ENV_IDS] + [(spec, trained, args.steps // 5),
                                                   (papi_env.SERVE_ENV_ID, SERVE_CHUNKED, args.steps // 5)]
    for env_id, kwargs, steps in rows:
        name = _name(env_id, kwargs)
        steps_per_second(env_id, 2_000, **kwargs)  # warm caches
        speed = steps_per_second(env_id, steps, **kwargs)
        print(f"{name:<40} {speed:>10,.0f} steps/s   {speed / cart:.3f}x CartPole{_target(name, 0)}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'env construction + reset':<40} {cold * 1e3:>10.1f} ms")
    print(f"{'peak memory (RSS)':<40} {peak:>10.1f} MB")

if __name__ == "__main__":
    main()
