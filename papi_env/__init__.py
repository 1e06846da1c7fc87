"""Gymnasium environments of the PAPI serving system. ``import papi_env`` registers them.

- ``papi_env/PapiSchedule-v0``: FC placement per decoding iteration (FC-PIM or GPU).

This package imports neither torch nor stable-baselines3.
"""

from gymnasium.envs.registration import register, registry

from papi_env.schedule_env import ACTIONS, PapiScheduleEnv, decode_parallelism

DEFAULT_ENV_ID = "papi_env/PapiSchedule-v0"

if DEFAULT_ENV_ID not in registry:
    register(id=DEFAULT_ENV_ID, entry_point="papi_env.schedule_env:PapiScheduleEnv")

__all__ = ["ACTIONS", "DEFAULT_ENV_ID", "PapiScheduleEnv", "decode_parallelism"]
