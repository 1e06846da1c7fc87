"""PapiSchedule-v0: place the FC kernels of every decoding iteration on FC-PIM or the GPU.

One step is one decoding iteration of a static batch; an episode is one batch, until its last
request ends (or ``max_steps``). Attention always runs on Attn-PIM.

Action: ``Discrete(2)``, 0 = FC-PIM, 1 = GPU (see :data:`ACTIONS`).

Observation (``Box(0, 1, (8,), float32)``), only what a runtime knows at that moment:

====  =====================================================  ==========================
idx   value                                                  scale
====  =====================================================  ==========================
0     RLP (live requests)                                    / RLP_SCALE (256)
1     TLP (speculation length this iteration)                / TLP_SCALE (16)
2     log2(RLP x TLP)                                        / 12
3     live fraction of the batch                             -
4     mean context of live requests (tokens)                 / CTX_SCALE (4096)
5     max context of live requests (tokens)                  / CTX_SCALE
6     last placement (0 FC-PIM, 1 GPU; 0 at the start)       -
7     iteration index                                        / max_steps
====  =====================================================  ==========================

Output lengths are never observed (a real scheduler does not know them).

Reward: ``latency`` (default), ``energy``, ``edp`` or ``latency_target``; per-step terms that
sum exactly to the episode objective (see papi_env.base, which also describes the per-episode
randomisation of model, system and dataset).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from papi_env.base import CTX_SCALE, LOG_R_SCALE, RLP_SCALE, TLP_SCALE, PapiBaseEnv

ACTIONS = ("pim", "gpu")  # action index -> FC unit
OBS_SIZE = 8
__all__ = ["ACTIONS", "CTX_SCALE", "LOG_R_SCALE", "OBS_SIZE", "RLP_SCALE", "TLP_SCALE", "PapiScheduleEnv",
           "decode_parallelism"]


def decode_parallelism(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RLP, TLP) from observations (one or a batch), as the runtime's own counters."""
    obs = np.asarray(obs, dtype=np.float64)
    return np.rint(obs[..., 0] * RLP_SCALE), np.rint(obs[..., 1] * TLP_SCALE)


class PapiScheduleEnv(PapiBaseEnv):
    """Gymnasium environment of PAPI's FC placement decision. See the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        units = self.cost_model.fc_units
        self._mask = np.array([u in units for u in ACTIONS], dtype=bool)
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(OBS_SIZE,), dtype=np.float32)

    def action_masks(self) -> np.ndarray:
        """Which actions are possible (both on PAPI; one on single-unit systems)."""
        return self._mask.copy()

    def _observe(self) -> np.ndarray:
        obs = np.array(self._base_features(float(self._last_action)), dtype=np.float32)
        return np.clip(obs, 0.0, 1.0, out=obs)

    def _cost(self, action: int):
        return self.cost_model.iteration(self.batch.live, self._tlp, self._sum_ctx, ACTIONS[action])

    def candidate_actions(self) -> list[int]:
        return [a for a in (0, 1) if self._mask[a]]

    def step_objective(self, action: int) -> float:
        return self._reward(self._cost(action), self._tlp)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        size = self._begin_episode()
        self._last_action = 0
        return self._observe(), {"batch_size": size, "rlp": self.batch.live, "tlp": self._tlp}

    def step(self, action):
        if self.batch is None:
            raise RuntimeError("call reset() before step()")
        try:
            a = int(action)
        except (TypeError, ValueError):
            raise ValueError(f"invalid action {action!r}: expected 0 (FC-PIM) or 1 (GPU)") from None
        if a not in (0, 1) or a != action:
            raise ValueError(f"invalid action {action!r}: expected 0 (FC-PIM) or 1 (GPU)")
        if not self._mask[a]:
            raise ValueError(
                f"action {a} ({ACTIONS[a]}) is not available on system '{self.cost_model.system.name}'; "
                f"allowed: {[i for i in (0, 1) if self._mask[i]]}"
            )
        self._check_stepping()
        cost = self._cost(a)
        rlp, tlp = self.batch.live, self._tlp
        reward = self._reward(cost, tlp)
        tokens = self.batch.advance(tlp)
        self._last_action = a
        info = {"placement": ACTIONS[a], "tlp": tlp}
        terminated, truncated = self._finish_step(cost, tokens, rlp, info)
        return self._next_observation(terminated, truncated), reward, terminated, truncated, info

    def _describe_last_action(self) -> str:
        return f"last FC on {ACTIONS[self._last_action]:3s}"
