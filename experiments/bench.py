"""Speed and memory of the environment, against gymnasium's CartPole-v1, on one core.

    python -m experiments.bench [--steps 100000]

Prints steps per second for the default PAPI environment (through gymnasium.make, with its
wrappers, a fixed action) and for CartPole-v1 in the same run, their ratio, the cost model's
cold-start time, and the process's peak memory.
"""

from __future__ import annotations

import argparse
import resource
import time

import gymnasium as gym

import papi_env


def steps_per_second(env_id: str, steps: int, seed: int = 0, **kwargs) -> float:
    env = gym.make(env_id, **kwargs)
    env.reset(seed=seed)
    episode = 0
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(1 if env_id.startswith("papi") else 0)
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
    t0 = time.perf_counter()
    gym.make(papi_env.DEFAULT_ENV_ID).reset(seed=0)
    cold = time.perf_counter() - t0
    steps_per_second(papi_env.DEFAULT_ENV_ID, 5_000)  # warm caches (FC costs per RLP x TLP)
    papi = steps_per_second(papi_env.DEFAULT_ENV_ID, args.steps)
    cart = steps_per_second("CartPole-v1", args.steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{papi_env.DEFAULT_ENV_ID:<28} {papi:>10,.0f} steps/s")
    print(f"{'CartPole-v1':<28} {cart:>10,.0f} steps/s")
    print(f"{'ratio PAPI / CartPole':<28} {papi / cart:>10.2f}")
    print(f"{'env construction + reset':<28} {cold * 1e3:>10.1f} ms")
    print(f"{'peak memory (RSS)':<28} {peak:>10.1f} MB")


if __name__ == "__main__":
    main()
