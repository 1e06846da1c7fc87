"""Speed and memory of the environment, against gymnasium's CartPole-v1, on one core.

    python -m experiments.bench [--steps 100000]

Prints steps per second for every PAPI environment (through gymnasium.make, with its wrappers,
a fixed sensible action) and for CartPole-v1 in the same run, the ratio of the default env to
CartPole, the cost model's cold-start time, and the process's peak memory.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml

import papi_env

FIXED_ACTIONS = {
    "papi_env/PapiSchedule-v0": 1,
    "papi_env/PapiKernelSchedule-v0": np.array([1, 1, 1, 0]),
    "papi_env/PapiSplitSchedule-v0": np.array([0.5, 0.5, 0.5], dtype=np.float32),
    "papi_env/PapiSpecSchedule-v0": np.array([1, 0]),
    "CartPole-v1": 0,
}


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be a positive integer")
    t0 = time.perf_counter()
    gym.make(papi_env.DEFAULT_ENV_ID).reset(seed=0)
    cold = time.perf_counter() - t0
    steps_per_second(papi_env.DEFAULT_ENV_ID, 5_000)  # warm caches (FC costs per RLP x TLP)
    papi = steps_per_second(papi_env.DEFAULT_ENV_ID, args.steps)
    cart = steps_per_second("CartPole-v1", args.steps)
    print(f"{papi_env.DEFAULT_ENV_ID:<34} {papi:>10,.0f} steps/s")
    for env_id in papi_env.ENV_IDS:
        if env_id != papi_env.DEFAULT_ENV_ID:
            steps_per_second(env_id, 2_000)  # warm caches
            print(f"{env_id:<34} {steps_per_second(env_id, args.steps // 5):>10,.0f} steps/s")
    spec = "papi_env/PapiSpecSchedule-v0"  # as trained: its reward prices every action
    trained = yaml.safe_load((Path(__file__).parent / "configs" / "ppo.yaml").read_text())[spec]["env_kwargs"]
    speed = steps_per_second(spec, args.steps // 10, **trained)
    print(f"{'  as trained (configs/ppo.yaml)':<34} {speed:>10,.0f} steps/s   {trained}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'CartPole-v1':<34} {cart:>10,.0f} steps/s")
    print(f"{'ratio PapiSchedule / CartPole':<34} {papi / cart:>10.2f}")
    print(f"{'env construction + reset':<34} {cold * 1e3:>10.1f} ms")
    print(f"{'peak memory (RSS)':<34} {peak:>10.1f} MB")


if __name__ == "__main__":
    main()
