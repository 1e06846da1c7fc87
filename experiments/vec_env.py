"""stable-baselines3's VecEnv over a native PAPI vector environment (papi_env.vector).

SB3 resets a finished environment within the same step (the new episode's first observation in
the returned batch, the last one in ``infos[i]["terminal_observation"]``): gymnasium's SAME_STEP
autoreset, which the vector env implements (``PapiVectorEnv.step_same_step``); this adapter only
formats its result as SB3 wants it. It records every episode's return and length in
``infos[i]["episode"]`` as SB3's Monitor does (before the training aids), and applies the training
aids of papi_env.wrappers through their array forms (``edp_step_scaled``, ``unflatten_actions``):
the edp step scaling (reward of step n divided by n) and the flat discrete actions for DQN. It is
pickled whole into checkpoints (its batches, generators and counters), as DummyVecEnv is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from papi_env.base import scalar_info
from papi_env.vector import PapiVectorEnv
from papi_env.wrappers import edp_step_scaled, unflatten_actions

VEC_KINDS = ("native", "dummy", "subproc")


class NativeVecEnv(VecEnv):
    """``num_envs`` environments of ``env_id`` in one array core, as an SB3 VecEnv."""

    def __init__(self, env_id: str, num_envs: int, env_kwargs: dict | None = None, edp_step_scaling: bool = False,
                 flat_actions: bool = False) -> None:
        kwargs = {k: v for k, v in (env_kwargs or {}).items() if k != "render_mode"}
        venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                            autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
        vector: PapiVectorEnv = venv.unwrapped
        self.vector, self.core = vector, vector.core
        self.step_scaling = edp_step_scaling
        action_space = vector.single_action_space
        self.nvec: tuple[int, ...] | None = None
        if flat_actions:
            self.nvec = tuple(int(n) for n in action_space.nvec)
            action_space = gym.spaces.Discrete(int(np.prod(self.nvec)))
        self.render_mode = None
        super().__init__(num_envs, vector.single_observation_space, action_space)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._start = time.time()

    # --------------------------------------------------------------------------- VecEnv API
    def reset(self) -> np.ndarray:
        obs, info = self.vector.reset(seed=list(self._seeds))  # None: that generator keeps going
        self.reset_infos = [scalar_info(info, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        actions = self._actions
        if self.nvec is not None:
            actions = unflatten_actions(actions.reshape(self.num_envs), self.nvec)
        steps = self.core.steps + 1 if self.step_scaling else None  # 1-based step counts (reset zeroes ended ones)
        obs, rewards, terminated, truncated, info, ended, final_obs = self.vector.step_same_step(actions)
        self._returns += rewards
        self._lengths += 1
        if self.step_scaling:
            rewards = edp_step_scaled(rewards, steps)
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for j, i in enumerate(ended.tolist()):
            infos[i] = scalar_info(info, i)
            infos[i]["terminal_observation"] = final_obs[j].copy()
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            infos[i]["episode"] = {"r": round(float(self._returns[i]), 6), "l": int(self._lengths[i]),
                                   "t": round(time.time() - self._start, 6)}
        self._returns[ended] = 0.0
        self._lengths[ended] = 0
        return obs, rewards.astype(np.float32), done, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: Any = None, **method_kwargs) -> list[Any]:
        """Only ``action_masks`` (what sb3-contrib's maskable algorithms call)."""
        if method_name != "action_masks":
            raise AttributeError(f"NativeVecEnv offers env_method('action_masks') only, not {method_name!r}")
        masks = self.core.action_masks()
        return [masks[i] for i in self._indices(indices)]

    def action_masks(self) -> np.ndarray:
        """(N, ...) which actions each environment allows now (sb3-contrib looks for this name)."""
        return self.core.action_masks()

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)


class NullVecEnv(VecEnv):
    """Environments with the given spaces that cost (almost) nothing: observations of zeros, reward 0,
    episodes of ``episode_steps`` steps. Training on it measures the learner alone: the most any
    environment with these spaces could give (experiments.bench --train)."""

    def __init__(self, num_envs: int, observation_space: gym.Space, action_space: gym.Space,
                 episode_steps: int = 200) -> None:
        self.render_mode = None
        super().__init__(num_envs, observation_space, action_space)
        self._obs = np.zeros((num_envs, *observation_space.shape), dtype=observation_space.dtype)
        self._episode_steps, self._steps = episode_steps, 0

    def reset(self) -> np.ndarray:
        return self._obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        pass

    def step_wait(self):
        self._steps += 1
        done = np.full(self.num_envs, self._steps % self._episode_steps == 0)
        return self._obs.copy(), np.zeros(self.num_envs, dtype=np.float32), done, [{} for _ in range(self.num_envs)]

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * self.num_envs

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: Any = None, **method_kwargs) -> list[Any]:
        raise AttributeError(f"NullVecEnv has no env_method ({method_name!r})")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * self.num_envs
