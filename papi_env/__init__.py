"""Gymnasium environments of the PAPI serving system. ``import papi_env`` registers them.

- ``papi_env/PapiSchedule-v0``: FC placement per decoding iteration (FC-PIM or GPU), PAPI's decision.
- ``papi_env/PapiKernelSchedule-v0``: placement of each FC kernel and of attention (MultiDiscrete).
- ``papi_env/PapiSplitSchedule-v0``: GPU fraction of each FC kernel, FC-PIM does the rest (Box).
- ``papi_env/PapiSpecSchedule-v0``: speculation length and FC placement with per-request acceptance.
- ``papi_env/PapiServe-v0``: online serving, continuous batching with arrivals: FC unit, speculation
  length and admission under KV capacity, against latency targets (papi_env.serve_env).

Each has a native vector form (papi_env.vector): ``gymnasium.make_vec(id, num_envs=N,
vectorization_mode="vector_entry_point")`` steps N of them at once in compiled kernels, with the
same numbers as N scalar envs.

Every static-batch variant takes the objectives latency, energy, edp and latency_target and can randomise
model, system and dataset per episode (papi_env.base). This package imports neither torch nor
stable-baselines3.
"""

from functools import partial
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import register, registry

from papi_env.base import REWARDS, PapiBaseEnv
from papi_env.kernel_env import PapiKernelScheduleEnv
from papi_env.schedule_env import ACTIONS, PapiScheduleEnv, decode_parallelism
from papi_env.serve_env import SERVE_REWARDS, PapiServeEnv
from papi_env.spec_env import PapiSpecScheduleEnv
from papi_env.split_env import PapiSplitScheduleEnv

DEFAULT_ENV_ID = "papi_env/PapiSchedule-v0"
ENV_IDS = {
    DEFAULT_ENV_ID: "papi_env.schedule_env:PapiScheduleEnv",
    "papi_env/PapiKernelSchedule-v0": "papi_env.kernel_env:PapiKernelScheduleEnv",
    "papi_env/PapiSplitSchedule-v0": "papi_env.split_env:PapiSplitScheduleEnv",
    "papi_env/PapiSpecSchedule-v0": "papi_env.spec_env:PapiSpecScheduleEnv",
}

VECTOR_ENTRY_POINTS = {
    DEFAULT_ENV_ID: "papi_env.vector:ScheduleVectorEnv",
    "papi_env/PapiKernelSchedule-v0": "papi_env.vector:KernelScheduleVectorEnv",
    "papi_env/PapiSplitSchedule-v0": "papi_env.vector:SplitScheduleVectorEnv",
    "papi_env/PapiSpecSchedule-v0": "papi_env.vector:SpecScheduleVectorEnv",
}

SERVE_ENV_ID = "papi_env/PapiServe-v0"
ALL_ENV_IDS = {**ENV_IDS, SERVE_ENV_ID: "papi_env.serve_env:PapiServeEnv"}
"""The static-batch variants (ENV_IDS: they share papi_env.core) and the online-serving env."""
VECTOR_ENTRY_POINTS[SERVE_ENV_ID] = "papi_env.vector:ServeVectorEnv"  # papi_env.serve_env.ServeCore x N

for _env_id, _entry in ALL_ENV_IDS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry, vector_entry_point=VECTOR_ENTRY_POINTS[_env_id])



def make_from_config(env_id: str, env_config: dict[str, Any] | None = None) -> gym.Env:
    """``gymnasium.make(env_id, **env_config)``: the env creator that Ray's registry calls with RLlib's
    ``env_config`` (an EnvContext: a dict of keyword arguments)."""
    return gym.make(env_id, **dict(env_config or {}))


def register_ray_envs() -> list[str]:
    """Register every env id with Ray's registry (``ray.tune.register_env``), so that RLlib and Tune,
    on this machine or on a cluster's remote workers, build the envs by name
    (``PPOConfig().environment("papi_env/PapiSchedule-v0", env_config={...})``). Returns the ids."""
    from ray.tune.registry import register_env  # Ray is optional for the envs themselves

    for env_id in ALL_ENV_IDS:
        register_env(env_id, partial(make_from_config, env_id))
    return list(ALL_ENV_IDS)


__all__ = [
    "ACTIONS",
    "ALL_ENV_IDS",
    "DEFAULT_ENV_ID",
    "ENV_IDS",
    "PapiBaseEnv",
    "PapiKernelScheduleEnv",
    "PapiScheduleEnv",
    "PapiServeEnv",
    "PapiSpecScheduleEnv",
    "PapiSplitScheduleEnv",
    "REWARDS",
    "SERVE_ENV_ID",
    "SERVE_REWARDS",
    "VECTOR_ENTRY_POINTS",
    "decode_parallelism",
    "make_from_config",
    "register_ray_envs",
]
