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

from hardware.cost_tables import UNITS
from papi_env.base import PapiBaseEnv
from papi_env.core import CTX_SCALE, LOG_R_SCALE, RLP_SCALE, TLP_SCALE, VectorCore, put_all
from sim.kernels import FC_ALL

ACTIONS = UNITS  # action index -> FC unit
OBS_SIZE = 8
PLACEMENTS = np.array(ACTIONS, dtype=object)
__all__ = ["ACTIONS", "CTX_SCALE", "LOG_R_SCALE", "OBS_SIZE", "RLP_SCALE", "TLP_SCALE", "PapiScheduleEnv",
           "ScheduleCore", "decode_parallelism"]


def decode_parallelism(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RLP, TLP) from observations (one or a batch), as the runtime's own counters."""
    obs = np.asarray(obs, dtype=np.float64)
    return np.rint(obs[..., 0] * RLP_SCALE), np.rint(obs[..., 1] * TLP_SCALE)


class ScheduleCore(VectorCore):
    """PapiSchedule-v0's dynamics for N environments: the FC unit per iteration."""

    obs_size = OBS_SIZE
    fc_mode = FC_ALL

    def single_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return spaces.Discrete(2), spaces.Box(0.0, 1.0, shape=(self.obs_size,), dtype=np.float32)

    @staticmethod
    def batch_action(action: Any) -> np.ndarray:
        """An int, or an array holding one (what SB3's predict returns)."""
        a = np.asarray(action)
        return a.reshape(1) if a.size == 1 else a[None]

    def check_actions(self, actions: Any, stepping: np.ndarray) -> np.ndarray:
        a = np.asarray(actions)
        # the common case: valid integers (as uint64, negatives are huge), both units everywhere
        if (a.dtype.kind in "iu" and a.shape == (self.num_envs,) and self.every_fc_unit_everywhere
                and (a.astype(np.uint64, copy=False) <= 1).all()):
            return a.astype(np.int64)
        bad_envs = stepping
        if a.shape == (self.num_envs,) and a.dtype.kind in "iubf":
            bad_envs = stepping & ~((a == 0) | (a == 1))
        if bad_envs.any():
            shown = a[int(np.argmax(bad_envs))].tolist() if a.shape == (self.num_envs,) else a.tolist()
            raise ValueError(f"invalid action {shown!r}: expected 0 (FC-PIM) or 1 (GPU)")
        a = np.where(stepping, a, np.argmax(self.fc_unit_masks[self.cm], axis=1)).astype(np.int64)
        unavailable = stepping & ~self.fc_unit_masks[self.cm, a]
        if unavailable.any():
            i = int(np.argmax(unavailable))
            cm = self.cost_models[self.cm[i]]
            raise ValueError(f"action {a[i]} ({ACTIONS[a[i]]}) is not available on system '{cm.system.name}'; "
                             f"allowed: {[u for u in (0, 1) if self.fc_unit_masks[self.cm[i], u]]}")
        return a

    def action_masks(self) -> np.ndarray:
        """(N, 2) which FC units each environment's system has."""
        return self.fc_unit_masks[self.cm]

    def _placement(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return a.reshape(-1, 1), self.by_env("attention_units"), a

    def _record(self, a: np.ndarray) -> dict[str, np.ndarray]:
        self.last_share = a.astype(np.float64)
        info: dict[str, np.ndarray] = {}
        put_all(info, "placement", PLACEMENTS[a])
        return info


class PapiScheduleEnv(PapiBaseEnv):
    """Gymnasium environment of PAPI's FC placement decision. See the module docstring."""

    core_class = ScheduleCore
    variant = "schedule"

    def action_masks(self) -> np.ndarray:
        """Which actions are possible (both on PAPI; one on single-unit systems)."""
        return self.core.action_masks()[0].copy()

    def candidate_actions(self) -> list[int]:
        mask = self.action_masks()
        return [a for a in (0, 1) if mask[a]]

    def _describe_last_action(self) -> str:
        return f"last FC on {ACTIONS[int(self.core.last_share[0])]:3s}"
