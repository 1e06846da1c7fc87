"""Training aids that change rewards, never the environment's dynamics or its ``info["score"]``."""

from __future__ import annotations

import gymnasium as gym


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
        return obs, reward / self._n, terminated, truncated, info
