"""Training aids that change rewards or the action encoding, never the environment's dynamics or its
``info["score"]``; and EpisodeEndInfo, for the score of an episode that gymnasium's TimeLimit
ends."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class EpisodeEndInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The episode infos (``info["score"]``, totals) on the step where gymnasium's TimeLimit
    (``gymnasium.make(id, max_episode_steps=K)``) truncates an episode the env did not end itself:
    ``env.unwrapped.episode_info()``, the episode so far. TimeLimit wraps the env from outside, so
    the env cannot see the limit; wrap the made env in this one (registering it for every env
    would forbid the native vector forms: gymnasium's make_vec refuses additional wrappers).
    The env's own ``max_steps=K`` truncates at the same step with the score and no wrapper."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if truncated and "score" not in info:
            info.update(self.env.unwrapped.episode_info())
        return obs, reward, terminated, truncated, info


class EDPStepScale(gym.Wrapper):
    """For ``reward="edp"``: divide step n's reward (1-based) by n.

    The edp reward's terms sum to -(total s x total J), so step n's term -(T e + t E + t e) grows
    about linearly with n: late steps dwarf early ones, and the discounted value targets of a
    learner mix scales. Dividing by n leaves every step's ranking of actions unchanged (a positive
    factor per step) and makes the terms about -(mean s x e + t x mean J), each of order 1. The
    returns no longer sum to the EDP; evaluate on ``info["score"]``.
    """

    def reset(self, **kwargs):
        self._n = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._n += 1
        return obs, edp_step_scaled(reward, self._n), terminated, truncated, info


def edp_step_scaled(reward, step):
    """EDPStepScale's reward: step ``step``'s (1-based) reward divided by ``step``; numbers or arrays
    (experiments.vec_env.NativeVecEnv applies it to a vector step)."""
    return reward / step


class FlatDiscreteActions(gym.ActionWrapper):
    """A ``MultiDiscrete(nvec)`` action space as one ``Discrete(prod(nvec))``, for value-based
    learners (DQN) that need a single discrete action: action ``k`` is ``np.unravel_index(k, nvec)``
    (row-major, the last component varying fastest). Dynamics and rewards are unchanged."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, gym.spaces.MultiDiscrete) or env.action_space.nvec.ndim != 1:
            raise ValueError(f"FlatDiscreteActions needs a 1-D MultiDiscrete action space, got {env.action_space}")
        self.nvec = tuple(int(n) for n in env.action_space.nvec)
        self.action_space = gym.spaces.Discrete(int(np.prod(self.nvec)))

    def action(self, action):
        return unflatten_action(action, self.nvec)


def unflatten_action(action, nvec: tuple[int, ...]) -> np.ndarray:
    """The MultiDiscrete action of flat index ``action`` (see FlatDiscreteActions)."""
    return unflatten_actions(np.asarray(action).reshape(-1)[:1], nvec)[0]


def unflatten_actions(actions, nvec: tuple[int, ...]) -> np.ndarray:
    """(N, len(nvec)) MultiDiscrete actions of N flat indices (see FlatDiscreteActions)."""
    flat = np.asarray(actions, dtype=np.int64).reshape(-1)
    if ((flat < 0) | (flat >= int(np.prod(nvec)))).any():
        raise ValueError(f"flat actions must be in [0, {int(np.prod(nvec))}), got {flat.tolist()}")
    return np.stack(np.unravel_index(flat, nvec), axis=1).astype(np.int64)
