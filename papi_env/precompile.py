"""Compile every numba kernel of the environments into numba's on-disk cache, and say how long it took.

    python -m papi_env.precompile        (`make setup` runs it once per installation)

The kernels are ``@numba.njit(cache=True)``: the first process that calls one compiles it and
writes the machine code beside the module (``__pycache__``); every later process, test worker and
Ray worker loads it from there. Running this once after installing means no experiment pays the
compile time. Prints the seconds taken: a cold cache compiles, a warm one only loads.
"""

from __future__ import annotations

import sys
import time

import gymnasium as gym
import numpy as np


def precompile() -> float:
    """Make, reset and step every environment, scalar and vector (which compiles every kernel
    they call); the seconds it took."""
    import papi_env

    start = time.perf_counter()
    for env_id in papi_env.ALL_ENV_IDS:
        env = gym.make(env_id)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        if env_id in papi_env.ENV_IDS:  # the static variants' one-step pricing
            env.unwrapped.step_objective(env.action_space.sample())
        if hasattr(env.unwrapped, "server"):  # the serving planners' candidate pricing
            env.unwrapped.server.plan_all(["gpu"], 2, 1)
        vec = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
        vec.reset(seed=0)
        vec.step(np.stack([env.action_space.sample()] * 2))
    return time.perf_counter() - start


def main() -> int:
    seconds = precompile()
    print(f"papi_env kernels compiled or loaded from numba's cache in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
