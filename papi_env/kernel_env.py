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
import math
from typing import Any

import numpy as np
from gymnasium import spaces

from hardware.systems import FC_KERNELS
from papi_env.base import LOG_R_SCALE, PapiBaseEnv

UNITS = ("pim", "gpu")
OBS_SIZE = 14


class PapiKernelScheduleEnv(PapiBaseEnv):
    """Per-kernel placement of FC kernels and attention. See the module docstring."""

    def __init__(self, on_masked: str = "fallback", **kwargs: Any) -> None:
        if on_masked not in ("fallback", "raise"):
            raise ValueError(f"on_masked must be 'fallback' or 'raise', got {on_masked!r}")
        super().__init__(**kwargs)
        self.on_masked = on_masked
        for cm in self.cost_models:
            if set(cm.fc_units) != set(UNITS) or cm.system.attention_unit != "pim":
                raise ValueError(f"PapiKernelSchedule-v0 needs a system with FC on both units and attention on "
                                 f"PIM (e.g. 'papi'); '{cm.system.name}' has FC units {list(cm.fc_units)} and "
                                 f"attention on {cm.system.attention_unit!r}")
        self.action_space = spaces.MultiDiscrete([2, 2, 2, 2])
        self.observation_space = spaces.Box(0.0, 1.0, shape=(OBS_SIZE,), dtype=np.float32)

    def alphas(self) -> tuple[int, int, int, int]:
        """(all FC, QKV, projection, FFN) crossovers of this episode's model and system."""
        return (self.alpha(), *(self.alpha(k) for k in FC_KERNELS))  # type: ignore[return-value]

    def kv_fill(self) -> float:
        """KV cache of the live requests over the GPUs' room for a mirror of it (inf: no room)."""
        room = self.cost_model.gpu_kv_capacity_bytes
        need = self._sum_ctx * self.cost_model.model.kv_bytes_per_token
        return need / room if room > 0 else math.inf

    def action_masks(self) -> np.ndarray:
        """Flat mask over the four sub-actions' values (sb3-contrib's MultiDiscrete layout)."""
        gpu_attention = self.batch is None or self.kv_fill() <= 1.0
        return np.array([True, True] * 3 + [True, gpu_attention], dtype=bool)

    def _observe(self) -> np.ndarray:
        last = self._last
        feats = self._base_features(float(np.mean(last[:3])))
        feats += [math.log2(a + 1) / LOG_R_SCALE for a in self.alphas()]
        feats += [min(self.kv_fill(), 1.0), float(last[3])]
        obs = np.array(feats, dtype=np.float32)
        return np.clip(obs, 0.0, 1.0, out=obs)

    def _validate(self, action: Any) -> tuple[int, int, int, int]:
        a = np.asarray(action)
        if a.shape != (4,) or not np.all(np.isin(a, (0, 1))):
            raise ValueError(f"invalid action {action!r}: expected 4 values in {{0, 1}} for (QKV, projection, FFN, "
                             "attention), 0 = PIM, 1 = GPU")
        return tuple(int(v) for v in a)  # type: ignore[return-value]

    def _cost(self, a: tuple[int, int, int, int]):
        return self.cost_model.iteration(self.batch.live, self._tlp, self._sum_ctx,
                                         tuple(UNITS[v] for v in a[:3]), attention_unit=UNITS[a[3]])

    def candidate_actions(self) -> list[tuple[int, ...]]:
        attn = (0, 1) if self.kv_fill() <= 1.0 else (0,)
        return [(*fc, at) for fc in itertools.product((0, 1), repeat=3) for at in attn]

    def step_objective(self, action: Any) -> float:
        return self._reward(self._cost(self._validate(action)), self._tlp)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        size = self._begin_episode()
        self._last = (0, 0, 0, 0)
        return self._observe(), {"batch_size": size, "rlp": self.batch.live, "tlp": self._tlp}

    def step(self, action):
        self._check_stepping()
        a = self._validate(action)
        masked = a[3] == 1 and self.kv_fill() > 1.0
        if masked:
            if self.on_masked == "raise":
                raise ValueError(f"attention on the GPU is masked: the live KV cache needs {self.kv_fill():.2f}x "
                                 "the GPUs' free HBM; allowed attention placement: 0 (Attn-PIM)")
            a = (*a[:3], 0)
        cost = self._cost(a)
        rlp, tlp = self.batch.live, self._tlp
        reward = self._reward(cost, tlp)
        tokens = self.batch.advance(tlp)
        self._last = a
        info = {"placement": "".join("G" if v else "P" for v in a), "gpu_share": float(np.mean(a[:3])),
                "attention": UNITS[a[3]], "tlp": tlp, "masked": masked}
        terminated, truncated = self._finish_step(cost, tokens, rlp, info)
        return self._next_observation(terminated, truncated), reward, terminated, truncated, info

    def _describe_last_action(self) -> str:
        return "QKV/proj/FFN/attn " + "".join("G" if v else "P" for v in self._last)

