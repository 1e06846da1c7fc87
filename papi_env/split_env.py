"""PapiSplitSchedule-v0: split each FC kernel between the GPUs and FC-PIM, every iteration.

PAPI runs a whole FC kernel on one unit [P]. Here the scheduler chooses, per kernel (QKV,
projection, FFN), the fraction of its weights the GPUs compute while FC-PIM computes the rest at
the same time.

Action: ``Box(0, 1, (3,))``: the GPUs' fraction of (QKV, projection, FFN); 0 = all on FC-PIM
(PAPI's PIM placement), 1 = all on the GPUs. Fractions are rounded to 1/64 of a kernel.

Shared HBM (how both units use the same stacks): the GPUs' memory is the FC-PIM stacks [P]. A
bank either serves the GPUs' reads or runs all-bank PIM commands, never both at once, so the
stacks' bank time is the shared resource: a split kernel takes max(t_gpu, M_gpu + t_pim), where
M_gpu is the GPUs' memory-bound time for their slice (bytes / (bandwidth x 0.85)), t_pim FC-PIM's
whole time on the rest (MACs, row activations, operand I/O) and t_gpu the GPUs' own roofline time
on their slice. So splitting gains nothing while the GPUs are memory-bound (their reads already
saturate the banks) and gains when they are compute-bound (RLP x TLP above ~90 on A100), where
FC-PIM uses bank time the GPUs leave idle. Energy is the sum of both parts
(hardware.systems.CostModel.fc_split).

Observation (``Box(0, 1, (12,))``): the eight features of PapiSchedule-v0 (index 6 is the mean
GPU fraction of the last iteration), then

====  ==========================================================  ======================
idx   value                                                       scale
====  ==========================================================  ======================
8     the objective's calibrated crossover alpha (all FC)         log2(alpha + 1) / 12
9-11  the last iteration's GPU fraction of QKV, projection, FFN   -
====  ==========================================================  ======================

Reward and episode end: as in papi_env.base.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from hardware.systems import SPLIT_STEPS
from papi_env.base import PapiBaseEnv
from papi_env.core import LOG_R_SCALE, VectorCore, put_all
from sim.kernels import FC_SPLIT

OBS_SIZE = 12


class SplitCore(VectorCore):
    """PapiSplitSchedule-v0's dynamics for N environments: the GPU fraction of every FC kernel."""

    obs_size = OBS_SIZE
    fc_mode = FC_SPLIT

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        for cm in self.cost_models:
            if set(cm.fc_units) != {"pim", "gpu"}:
                raise ValueError(f"PapiSplitSchedule-v0 needs a system with FC on both units (e.g. 'papi'); "
                                 f"'{cm.system.name}' has {list(cm.fc_units)}")
        self.last = np.zeros((self.num_envs, 3))

    def single_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32), spaces.Box(0.0, 1.0, shape=(self.obs_size,),
                                                                             dtype=np.float32)

    def _begin_variants(self, envs: np.ndarray) -> None:
        self.last[envs] = 0.0

    def _extra_features(self, rlp: np.ndarray, sum_ctx: np.ndarray) -> list[np.ndarray]:
        return [np.log2(self.alpha_array() + 1.0) / LOG_R_SCALE, *self.last.T]

    def check_actions(self, actions: Any, stepping: np.ndarray) -> np.ndarray:
        """The actions as whole steps of 1/SPLIT_STEPS per kernel, (N, 3) int64."""
        a = np.asarray(actions)
        ok = a.shape == (self.num_envs, 3) and a.dtype.kind in "iuf"
        a = a.astype(np.float64) if ok else a
        bad = stepping & (~(np.isfinite(a) & (a >= 0) & (a <= 1)).all(axis=1) if ok else True)
        if np.any(bad):
            shown = a[int(np.argmax(bad))] if ok else a
            raise ValueError(f"invalid action {shown!r}: expected 3 GPU fractions in [0, 1] for "
                             "(QKV, projection, FFN)")
        return np.where(stepping[:, None], np.rint(a * SPLIT_STEPS), 0).astype(np.int64)

    def _placement(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.ascontiguousarray(steps, dtype=np.int64), self.by_env("attention_units"), steps

    def _record(self, steps: np.ndarray) -> dict[str, np.ndarray]:
        self.last = steps / SPLIT_STEPS
        self.last_share = self.last.sum(axis=1) / 3
        info: dict[str, np.ndarray] = {}
        put_all(info, "gpu_fractions", self.last)
        put_all(info, "gpu_share", self.last_share)
        return info


class PapiSplitScheduleEnv(PapiBaseEnv):
    """Continuous GPU/FC-PIM split of every FC kernel. See the module docstring."""

    core_class = SplitCore
    variant = "split"

    @property
    def last_fractions(self) -> tuple[float, float, float]:
        """The last iteration's GPU fraction of (QKV, projection, FFN)."""
        return tuple(float(v) for v in self.core.last[0])  # type: ignore[return-value]

    def _describe_last_action(self) -> str:
        return "GPU fractions " + "/".join(f"{v:.2f}" for v in self.last_fractions)


__all__ = ["OBS_SIZE", "PapiSplitScheduleEnv", "SplitCore"]
