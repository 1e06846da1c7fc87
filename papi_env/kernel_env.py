"""PapiKernelSchedule-v0: place each FC kernel (QKV, projection, FFN) and attention every iteration.

PAPI moves all FC kernels together and always runs attention on Attn-PIM [P]. Here the scheduler
places each kernel on its own. One step is one decoding iteration of a static batch.

Action: ``MultiDiscrete([2, 2, 2, 2])``: (QKV, projection, FFN, attention), each 0 = PIM (FC-PIM
for the FC kernels, Attn-PIM for attention), 1 = GPU.

Attention on the GPUs reads a mirror of the KV cache kept in the GPUs' own HBM (the FC-PIM stacks
beside the weights); the new K/V rows are still written to Attn-PIM every iteration, so switching
costs nothing. The mirror must fit: when the live requests' KV cache (context x KV bytes per
token) exceeds GPUs x memory - weight bytes, attention on the GPU is masked (``action_masks``).
A masked choice runs attention on Attn-PIM instead and sets ``info["masked"]`` (``on_masked=
"fallback"``, the default, so that agents without masking can train and be evaluated anywhere),
or raises ValueError (``on_masked="raise"``). For GPT-3 175B on PAPI that room is 12 GB, about 2,600 tokens of context.

Observation (``Box(0, 1, (14,))``): the eight features of PapiSchedule-v0 (index 6 is the share
of FC kernels the last iteration put on the GPU), then

====  ==========================================================  ======================
idx   value                                                       scale
====  ==========================================================  ======================
8     the objective's calibrated crossover alpha, all FC          log2(alpha + 1) / 12
9     alpha of the QKV kernel                                     log2(alpha + 1) / 12
10    alpha of the projection                                     log2(alpha + 1) / 12
11    alpha of the FFN                                            log2(alpha + 1) / 12
12    KV cache of the live requests / the GPUs' room for it       clipped to 1
13    last attention placement (0 Attn-PIM, 1 GPU)                -
====  ==========================================================  ======================

The alphas are what an offline calibration gives a runtime (hardware.calibrate, per objective:
the latency crossover for latency and latency_target, the energy or time x energy crossover for
energy and edp); they change when the model or hardware is randomised per episode.

Reward and episode end: as in papi_env.base.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from gymnasium import spaces

from hardware.cost_tables import UNITS
from hardware.systems import FC_KERNELS
from papi_env.base import PapiBaseEnv
from papi_env.core import LOG_R_SCALE, VectorCore, put_all
from sim.kernels import FC_PER_KERNEL

OBS_SIZE = 14
PLACEMENTS = np.array(["".join("G" if v else "P" for v in a) for a in itertools.product((0, 1), repeat=4)],
                      dtype=object)  # by a[0] * 8 + a[1] * 4 + a[2] * 2 + a[3]
UNIT_NAMES = np.array(UNITS, dtype=object)
PLACEMENT_BITS = np.array([8, 4, 2, 1])  # an action's index into PLACEMENTS: a @ PLACEMENT_BITS


class KernelCore(VectorCore):
    """PapiKernelSchedule-v0's dynamics for N environments: a unit per FC kernel and for attention."""

    obs_size = OBS_SIZE
    fc_mode = FC_PER_KERNEL

    def __init__(self, num_envs: int = 1, on_masked: str = "fallback", **kwargs: Any) -> None:
        if on_masked not in ("fallback", "raise"):
            raise ValueError(f"on_masked must be 'fallback' or 'raise', got {on_masked!r}")
        super().__init__(num_envs, **kwargs)
        self.on_masked = on_masked
        for cm in self.cost_models:
            if set(cm.fc_units) != set(UNITS) or cm.system.attention_unit != "pim":
                raise ValueError(f"PapiKernelSchedule-v0 needs a system with FC on both units and attention on "
                                 f"PIM (e.g. 'papi'); '{cm.system.name}' has FC units {list(cm.fc_units)} and "
                                 f"attention on {cm.system.attention_unit!r}")
        self.kv_bytes = np.array([cm.model.kv_bytes_per_token for cm in self.cost_models])
        self.gpu_room = np.array([cm.gpu_kv_capacity_bytes for cm in self.cost_models])
        self.last = np.zeros((self.num_envs, 4), dtype=np.int64)

    def single_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return spaces.MultiDiscrete([2, 2, 2, 2]), spaces.Box(0.0, 1.0, shape=(self.obs_size,), dtype=np.float32)

    def _begin_variants(self, envs: np.ndarray) -> None:
        self.last[envs] = 0

    def kv_fill(self) -> np.ndarray:
        """(N,) KV cache of the live requests (at the current TLP) over the GPUs' room for a mirror
        of it (inf: no room); cached until the batches or the TLPs change."""
        cached = self._derived.get("kv_fill")
        if cached is not None and cached[0] is self.tlp:
            return cached[1]
        room = self.by_env("gpu_room")
        with np.errstate(divide="ignore", invalid="ignore"):
            fill = np.where(room > 0, self.context(self.tlp)[1] * self.by_env("kv_bytes") / room, np.inf)
        self._derived["kv_fill"] = (self.tlp, fill)
        return fill

    def _extra_features(self, rlp: np.ndarray, sum_ctx: np.ndarray) -> list[np.ndarray]:
        log_alphas = self._per_env.get("log_alphas")  # constant over an episode: made once after a reset
        if log_alphas is None:
            log_alphas = self._per_env["log_alphas"] = np.stack([np.log2(self.alpha_array(k) + 1.0) / LOG_R_SCALE
                                                                 for k in (None, *FC_KERNELS)])
        return [*log_alphas, np.minimum(self.kv_fill(), 1.0), self.last[:, 3].astype(np.float64)]

    def check_actions(self, actions: Any, stepping: np.ndarray) -> np.ndarray:
        a = np.asarray(actions)
        ok = a.shape == (self.num_envs, 4) and a.dtype.kind in "iub"
        bad = stepping & (~(a.astype(np.uint64, copy=False) <= 1).all(axis=1) if ok else True)  # negatives: huge
        if bad.any():
            shown = a[int(np.argmax(bad))] if ok else a
            raise ValueError(f"invalid action {shown!r}: expected 4 values in {{0, 1}} for (QKV, projection, FFN, "
                             "attention), 0 = PIM, 1 = GPU")
        a = np.where(stepping[:, None], a, 0).astype(np.int64)
        if self.on_masked == "raise":
            fill = self.kv_fill()
            masked = stepping & (a[:, 3] == 1) & (fill > 1.0)
            if masked.any():
                raise ValueError(f"attention on the GPU is masked: the live KV cache needs "
                                 f"{fill[int(np.argmax(masked))]:.2f}x the GPUs' free HBM; allowed attention "
                                 "placement: 0 (Attn-PIM)")
        return a

    def action_masks(self) -> np.ndarray:
        """(N, 8) flat masks over the four sub-actions' values: attention on the GPU only where
        the live KV cache fits the GPUs' room (before the first reset: allowed)."""
        masks = np.ones((self.num_envs, 8), dtype=bool)
        masks[:, 7] = self.kv_fill() <= 1.0
        return masks

    def _placement(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Attention asked on the GPU where its KV mirror does not fit runs on Attn-PIM (masked)."""
        masked = (a[:, 3] == 1) & (self.kv_fill() > 1.0)
        a = a.copy()
        a[masked, 3] = 0
        return np.ascontiguousarray(a[:, :3]), np.ascontiguousarray(a[:, 3]), (a, masked)

    def _record(self, placed: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
        a, masked = placed
        self.last = a
        self.last_share = a[:, :3].sum(axis=1) / 3
        info: dict[str, np.ndarray] = {}
        put_all(info, "placement", PLACEMENTS[a @ PLACEMENT_BITS])
        put_all(info, "gpu_share", self.last_share)
        put_all(info, "attention", UNIT_NAMES[a[:, 3]])
        put_all(info, "masked", masked)
        return info


class PapiKernelScheduleEnv(PapiBaseEnv):
    """Per-kernel placement of FC kernels and attention. See the module docstring."""

    core_class = KernelCore
    variant = "kernel"
    on_masked = property(lambda self: self.core.on_masked)

    def alphas(self) -> tuple[int, int, int, int]:
        """(all FC, QKV, projection, FFN) crossovers of this episode's model and system."""
        return (self.alpha(), *(self.alpha(k) for k in FC_KERNELS))  # type: ignore[return-value]

    def kv_fill(self) -> float:
        """KV cache of the live requests over the GPUs' room for a mirror of it (inf: no room)."""
        return float(self.core.kv_fill()[0])

    def action_masks(self) -> np.ndarray:
        """Flat mask over the four sub-actions' values (sb3-contrib's MultiDiscrete layout)."""
        if self.batch is None:
            return np.ones(8, dtype=bool)
        return self.core.action_masks()[0]

    def candidate_actions(self) -> list[tuple[int, ...]]:
        attn = (0, 1) if self.kv_fill() <= 1.0 else (0,)
        return [(*fc, at) for fc in itertools.product((0, 1), repeat=3) for at in attn]

    def _describe_last_action(self) -> str:
        return "QKV/proj/FFN/attn " + "".join("G" if v else "P" for v in self.core.last[0])


__all__ = ["OBS_SIZE", "UNITS", "KernelCore", "PapiKernelScheduleEnv"]
