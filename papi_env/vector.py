"""Native vector environments: N PAPI environments stepped at once in numpy, no loop over them.

    envs = gymnasium.make_vec("papi_env/PapiSchedule-v0", num_envs=1024,
                              vectorization_mode="vector_entry_point", reward="edp")

Each class wraps its variant's core (papi_env.core): the same dynamics as the scalar environment,
which is the core with N = 1, so N environments here give exactly what N scalar environments in a
``gymnasium.vector.SyncVectorEnv`` give for the same seeds and actions (observations, rewards,
terminations, truncations and infos; tests/test_vector.py). Autoreset follows gymnasium 1.x's
default ``AutoresetMode.NEXT_STEP``: the step after an episode ends resets that environment (its
action is ignored) and returns the reset observation and info, reward 0. ``reset(seed=s)`` seeds
environment i with s + i, as SyncVectorEnv does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from papi_env.core import VectorCore
from papi_env.kernel_env import KernelCore
from papi_env.schedule_env import ScheduleCore
from papi_env.spec_env import SpecCore
from papi_env.split_env import SplitCore


class PapiVectorEnv(VectorEnv):
    """N environments of one variant (``core_class``); keyword arguments as the scalar env's."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    core_class: type[VectorCore] = ScheduleCore

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        kwargs.pop("render_mode", None)  # text rendering is the scalar envs'; vectors render nothing
        self.core = self.core_class(num_envs, **kwargs)
        self.num_envs = self.core.num_envs
        self.single_action_space, self.single_observation_space = self.core.single_spaces()
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._started = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Reset every environment; ``seed``: one int (environment i gets seed + i), a list of
        one seed (or None) per environment, or None (unseeded generators keep going)."""
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"give one seed per environment ({self.num_envs}), got {len(seeds)}")
        for i, s in enumerate(seeds):
            if s is not None or self.core.rngs[i] is None:
                self.core.rngs[i] = seeding.np_random(s)[0]
        obs, info = self.core.reset_envs(np.arange(self.num_envs))
        self._autoreset[:] = False
        self._started = True
        return obs, info

    def step(self, actions: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        stepping = ~self._autoreset
        _, reward, terminated, truncated, info = self.core.step(self.core.check_actions(actions, stepping),
                                                                observe=False)
        if not stepping.all():
            envs = np.flatnonzero(self._autoreset)
            reset_info = self.core.start_episodes(envs)
            reward[envs] = 0.0
            terminated[envs] = truncated[envs] = False
            _replace_rows(info, reset_info, envs)
        obs = self.core.end_observations(terminated)  # once, after the resets
        self._autoreset = terminated | truncated
        return obs, reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """(N, actions) which actions are possible now (as each scalar env's action_masks)."""
        return self.core.action_masks()


def _replace_rows(info: dict[str, np.ndarray], reset_info: dict[str, np.ndarray], envs: np.ndarray) -> None:
    """Replace rows ``envs`` of the step infos by their reset infos, in place (what SyncVectorEnv
    gives): a key the reset has takes its value there; any other key is absent there, and dropped
    if no environment has it any more (the reset environments' finished-episode garbage)."""
    rows = int(envs[0]) if len(envs) == 1 else envs  # mostly one reset a step: an int indexes faster
    gained: dict[int, np.ndarray] = {}  # new masks by old mask's id: masks are shared (core.put_all, put_rows)
    lost: dict[int, np.ndarray] = {}
    for key in [k for k in info if k[0] != "_"]:
        old = info["_" + key]
        if key in reset_info:
            info[key][rows] = reset_info[key][rows]
            masks = gained
        else:
            values = info[key]
            values[rows] = None if values.dtype.hasobject else 0
            masks = lost
        mask = masks.get(id(old))
        if mask is None:
            mask = old.copy()
            mask[rows] = masks is gained
            mask.flags.writeable = False
            masks[id(old)] = mask = (mask if mask.any() else None)
        if mask is not None:
            info["_" + key] = mask
        else:
            del info[key], info["_" + key]
    for key, values in reset_info.items():
        if key[0] != "_" and key not in info:
            info[key], info["_" + key] = values, reset_info["_" + key]


class ScheduleVectorEnv(PapiVectorEnv):
    """``papi_env/PapiSchedule-v0`` x N."""

    core_class = ScheduleCore


class KernelScheduleVectorEnv(PapiVectorEnv):
    """``papi_env/PapiKernelSchedule-v0`` x N."""

    core_class = KernelCore


class SplitScheduleVectorEnv(PapiVectorEnv):
    """``papi_env/PapiSplitSchedule-v0`` x N."""

    core_class = SplitCore


class SpecScheduleVectorEnv(PapiVectorEnv):
    """``papi_env/PapiSpecSchedule-v0`` x N."""

    core_class = SpecCore


__all__ = ["KernelScheduleVectorEnv", "PapiVectorEnv", "ScheduleVectorEnv", "SpecScheduleVectorEnv",
           "SplitScheduleVectorEnv"]
