"""Learned agents (stable-baselines3 / sb3-contrib) behind the same ``predict`` interface.

A saved agent is ``model.zip`` with, when observations were normalised in training, the
``VecNormalize`` statistics beside it (``<stem>_vecnormalize.pkl``).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo", "sac")


def algo_class(algo: str) -> Any:
    """The SB3 class for an algorithm name."""
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    import stable_baselines3 as sb3

    classes = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN, "sac": sb3.SAC}
    if algo not in classes:
        raise ValueError(f"unknown algorithm {algo!r}; allowed: {list(ALGOS)}")
    return classes[algo]


def vecnormalize_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name.removesuffix(".zip") + "_vecnormalize.pkl")


class LearnedPolicy:
    """A trained SB3 model plus its observation normalisation."""

    def __init__(self, model: Any, obs_rms: Any = None, clip_obs: float = 10.0, epsilon: float = 1e-8) -> None:
        self.model, self.obs_rms, self.clip_obs, self.epsilon = model, obs_rms, clip_obs, epsilon

    @classmethod
    def load(cls, algo: str, path: str | Path) -> LearnedPolicy:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no saved agent at {path}")
        problem = None
        if not zipfile.is_zipfile(path):
            problem = "not a zip file (empty or truncated?)"
        else:
            with zipfile.ZipFile(path) as zf:
                if zf.testzip() is not None or "data" not in zf.namelist():
                    problem = "a damaged or foreign zip (no SB3 model data)"
        if problem:
            raise ValueError(f"{path}: cannot load a {algo} agent: {problem}")
        try:
            model = algo_class(algo).load(path, device="cpu")
        except (ValueError, KeyError, AssertionError, RuntimeError) as err:
            raise ValueError(f"{path}: cannot load a {algo} agent: {err}") from None
        stats = vecnormalize_path(path)
        if stats.is_file():
            with stats.open("rb") as fh:
                vn = pickle.load(fh)
            if vn.norm_obs:
                return cls(model, vn.obs_rms, vn.clip_obs, vn.epsilon)
        return cls(model)

    def bind(self, env: Any) -> None:
        """Map the model's flat ``Discrete`` actions onto ``env``'s ``MultiDiscrete`` space when it was
        trained through papi_env.wrappers.FlatDiscreteActions (DQN on a MultiDiscrete variant)."""
        from gymnasium import spaces

        model_space, env_space = self.model.action_space, env.action_space
        self.nvec = None
        if isinstance(model_space, spaces.Discrete) and isinstance(env_space, spaces.MultiDiscrete):
            nvec = tuple(int(n) for n in env_space.nvec)
            if int(np.prod(nvec)) != model_space.n:
                raise ValueError(f"agent has {model_space.n} flat actions; the environment's {env_space} has "
                                 f"{int(np.prod(nvec))}: trained on another max_tlp or variant?")
            self.nvec = nvec

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        if self.obs_rms is None:
            return obs
        return np.clip((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon),
                       -self.clip_obs, self.clip_obs).astype(np.float32)

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        """The action for one observation, or (N, ...) actions for a batch (N, obs_size)."""
        observation = np.asarray(observation, dtype=np.float32)
        action, state = self.model.predict(self.normalize(observation), state=state,
                                           episode_start=episode_start, deterministic=deterministic)
        if getattr(self, "nvec", None) is not None:
            from papi_env.wrappers import unflatten_actions

            action = unflatten_actions(action, self.nvec)
            action = action if observation.ndim == 2 else action[0]
        return action, state
