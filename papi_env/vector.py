"""Native vector environments: N PAPI environments stepped at once in numpy, no loop over them.

    envs = gymnasium.make_vec("papi_env/PapiSchedule-v0", num_envs=1024,
                              vectorization_mode="vector_entry_point", reward="edp")

Each class wraps its variant's core (papi_env.core): the same dynamics as the scalar environment,
which is the core with N = 1, so N environments here give exactly what N scalar environments in a
``gymnasium.vector.SyncVectorEnv`` give for the same seeds and actions (observations, rewards,
terminations, truncations and infos; tests/test_vector.py). ``reset(seed=s)`` seeds
environment i with s + i, as SyncVectorEnv does.

Autoreset, in the two modes gymnasium defines (``autoreset_mode=``):

- ``AutoresetMode.NEXT_STEP`` (default, as gymnasium 1.x): the step after an episode ends resets
  that environment (its action is ignored) and returns the reset observation and info, reward 0;
- ``AutoresetMode.SAME_STEP``: the step that ends an episode resets it at once and returns the new
  episode's observation and reset info, with the ended episode's last observation and info under
  ``final_obs`` and ``final_info`` (as SyncVectorEnv does). ``PapiVectorEnv.step_same_step``
  is this mode without gymnasium's info layout, for adapters (the stable-baselines3 VecEnv in
  experiments.vec_env) that format the ended episodes' infos their own way.
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
from papi_env.serve_env import ServeCore
from papi_env.spec_env import SpecCore
from papi_env.split_env import SplitCore


class PapiVectorEnv(VectorEnv):
    """N environments of one variant (``core_class``); keyword arguments as the scalar env's."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    core_class: type[VectorCore] | type[ServeCore] = ScheduleCore

    def __init__(self, num_envs: int = 1, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 **kwargs: Any) -> None:
        kwargs.pop("render_mode", None)  # text rendering is the scalar envs'; vectors render nothing
        modes = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
        if autoreset_mode not in modes and autoreset_mode not in [m.value for m in modes]:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in modes]}, got {autoreset_mode!r}")
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.core = self.core_class(num_envs, **kwargs)
        self.num_envs = self.core.num_envs
        self.single_action_space, self.single_observation_space = self.core.single_spaces()
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._everyone = np.ones(self.num_envs, dtype=bool)
        self._started = self._closed = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Reset every environment; ``seed``: one int (environment i gets seed + i), a list of
        one seed (or None) per environment, or None (unseeded generators keep going)."""
        if self._closed:
            raise RuntimeError("the vector env is closed")
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
            raise RuntimeError("call reset() before step()" if not self._closed else "the vector env is closed")
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            obs, reward, terminated, truncated, info, ended, final_obs, reset_info = self._step_and_reset(actions)
            if len(ended):
                info = _same_step_info(info, reset_info, ended, final_obs, self.num_envs)
            return obs, reward, terminated, truncated, info
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

    def step_same_step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                    dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
        """Step every environment and reset those whose episode ended, in one call (SAME_STEP
        autoreset without gymnasium's info layout). Returns ``(obs, reward, terminated, truncated,
        info, ended, final_obs)``: ``obs`` holds the new episodes' first observations in the rows
        that ended; ``info`` is the step's info (the ended episodes' last info in their rows);
        ``ended`` the indices that ended; ``final_obs`` (len(ended), obs_size) their last
        observations (as the scalar env gives them: zeros where a static batch finished), or None
        if none ended."""
        if not self._started:
            raise RuntimeError("call reset() before step()" if not self._closed else "the vector env is closed")
        obs, reward, terminated, truncated, info, ended, final_obs, _ = self._step_and_reset(actions)
        return obs, reward, terminated, truncated, info, ended, final_obs

    def _step_and_reset(self, actions: Any) -> tuple:
        _, reward, terminated, truncated, info = self.core.step(self.core.check_actions(actions, self._everyone),
                                                                observe=False)
        ended = np.flatnonzero(terminated | truncated)
        final_obs = reset_info = None
        if len(ended):
            final_obs = self.core.end_observations(terminated)[ended]  # as the scalar env's last observation
            reset_info = self.core.start_episodes(ended)
        return self.core.observe(), reward, terminated, truncated, info, ended, final_obs, reset_info

    def close_extras(self, **kwargs: Any) -> None:
        """Closing ends stepping: step() and reset() after close() raise."""
        self._started, self._closed = False, True

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
            if isinstance(values, dict):  # a nested info (a dict per environment): its rows go too
                _replace_rows(values, {}, envs)
            else:
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


def _same_step_info(info: dict[str, np.ndarray], reset_info: dict[str, np.ndarray], ended: np.ndarray,
                    final_obs: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """SyncVectorEnv's SAME_STEP layout: the ended rows' step info moves under ``final_info`` (and
    their last observations under ``final_obs``); their rows get the reset info."""
    done = np.zeros(n, dtype=bool)
    done[ended] = True
    final_info: dict[str, np.ndarray] = {}
    for key in [k for k in info if k[0] != "_"]:
        mask = info["_" + key] & done
        if mask.any():
            final_info[key], final_info["_" + key] = _rows_only(info[key], mask), mask
    out = {k: (v.copy() if k[0] != "_" else v) for k, v in info.items()}
    _replace_rows(out, reset_info, ended)
    obs_rows = np.empty(n, dtype=object)
    for row, last in zip(ended.tolist(), final_obs, strict=True):
        obs_rows[row] = last
    out["final_obs"], out["_final_obs"] = obs_rows, done
    out["final_info"], out["_final_info"] = final_info, done.copy()
    return out


def _rows_only(values: np.ndarray | dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
    """A copy of an info array (or nested info) with the rows outside ``mask`` absent."""
    if isinstance(values, dict):
        out: dict[str, np.ndarray] = {}
        for key in [k for k in values if k[0] != "_"]:
            inner = values["_" + key] & mask
            if inner.any():
                out[key], out["_" + key] = _rows_only(values[key], inner), inner
        return out
    values = values.copy()
    values[~mask] = None if values.dtype.hasobject else 0
    return values


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


class ServeVectorEnv(PapiVectorEnv):
    """``papi_env/PapiServe-v0`` x N (papi_env.serve_env.ServeCore)."""

    core_class = ServeCore


__all__ = ["KernelScheduleVectorEnv", "PapiVectorEnv", "ScheduleVectorEnv", "ServeVectorEnv", "SpecScheduleVectorEnv",
           "SplitScheduleVectorEnv"]
