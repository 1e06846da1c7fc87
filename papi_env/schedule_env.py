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

Reward: per-step terms that sum exactly to the episode objective, divided by a fixed scale so
that a step is about -1: ``latency`` (default) -iteration seconds / ``time_scale``; ``energy``
-iteration joules / ``energy_scale``; ``edp`` the step's increment of -(total s x total J) /
(``time_scale`` x ``energy_scale``). ``time_scale`` is the GPUs' weight-streaming time of the
model (weight bytes / (GPUs x bandwidth x 0.85)), ``energy_scale`` the GPUs' energy to read the
weights once (weight bytes x 28.72 pJ/B): the cost of one memory-bound GPU iteration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hardware.serving import StaticBatch, tlp_at
from hardware.systems import CostModel
from hardware.workloads import get_dataset

ACTIONS = ("pim", "gpu")  # action index -> FC unit
RLP_SCALE, TLP_SCALE, CTX_SCALE, LOG_R_SCALE = 256.0, 16.0, 4096.0, 12.0
REWARDS = ("latency", "energy", "edp")
OBS_SIZE = 8


def decode_parallelism(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RLP, TLP) from observations (one or a batch), as the runtime's own counters."""
    obs = np.asarray(obs, dtype=np.float64)
    return np.rint(obs[..., 0] * RLP_SCALE), np.rint(obs[..., 1] * TLP_SCALE)


def _as_choices(name: str, value: Any, low: int, high: int) -> tuple[int, ...]:
    values = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= v <= high
                         for v in values):
        raise ValueError(f"{name} must be an integer or a list of integers in [{low}, {high}], got {value!r}")
    return tuple(int(v) for v in values)


class PapiScheduleEnv(gym.Env):
    """Gymnasium environment of PAPI's FC placement decision. See the module docstring."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        model: str = "llama-65b",
        dataset: str = "creative-writing",
        batch_size: int | Sequence[int] = (4, 16, 64),
        tlp: int | Sequence[int] | Sequence[Sequence[int]] = (1, 2, 4),
        system: Any = "papi",
        reward: str = "latency",
        max_steps: int = 4096,
        acceptance_rate: float | None = None,
        render_mode: str | None = None,
    ) -> None:
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        self.cost_model = CostModel(system, model)
        self.dataset = get_dataset(dataset)
        self.batch_sizes = _as_choices("batch_size", batch_size, 1, int(RLP_SCALE))
        # tlp: an int, a list of ints (one drawn per episode), or a schedule [[iteration, tlp], ...]
        if not isinstance(tlp, (int, np.integer)) and len(tlp) and not isinstance(tlp[0], (int, np.integer)):
            schedule = tuple((int(s), int(v)) for s, v in tlp)
            _as_choices("tlp", [v for _, v in schedule], 1, int(TLP_SCALE))
            if schedule[0][0] != 0:
                raise ValueError("a TLP schedule must start at iteration 0")
            self.tlp_choices: tuple = (schedule,)
        else:
            self.tlp_choices = _as_choices("tlp", tlp, 1, int(TLP_SCALE))
        self.reward_kind = reward
        self.max_steps = max_steps
        self.acceptance_rate = acceptance_rate
        self.render_mode = render_mode

        units = self.cost_model.fc_units
        self._mask = np.array([u in units for u in ACTIONS], dtype=bool)
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(OBS_SIZE,), dtype=np.float32)
        sysm, m = self.cost_model.system, self.cost_model.model
        self.time_scale = m.weight_bytes / (sysm.num_gpus * sysm.gpu.memory_bandwidth * sysm.gpu.bandwidth_efficiency)
        self.energy_scale = m.weight_bytes * sysm.energy.gpu_offchip_pj_per_byte * 1e-12
        self.batch: StaticBatch | None = None

    # ------------------------------------------------------------------------------ helpers
    def action_masks(self) -> np.ndarray:
        """Which actions are possible (both on PAPI; one on single-unit systems)."""
        return self._mask.copy()

    def _observe(self) -> np.ndarray:
        b = self.batch
        rlp = b.live
        sum_ctx, max_ctx = b.context_stats(self._tlp)
        r = rlp * self._tlp
        obs = np.array(
            (
                rlp / RLP_SCALE,
                self._tlp / TLP_SCALE,
                math.log2(r) / LOG_R_SCALE if r else 0.0,
                rlp / b.size,
                (sum_ctx / rlp if rlp else 0.0) / CTX_SCALE,
                max_ctx / CTX_SCALE,
                float(self._last_action),
                self._steps / self.max_steps,
            ),
            dtype=np.float32,
        )
        np.clip(obs, 0.0, 1.0, out=obs)
        self._sum_ctx = sum_ctx
        return obs

    def _cost(self, action: int):
        return self.cost_model.iteration(self.batch.live, self._tlp, self._sum_ctx, ACTIONS[action])

    def step_objective(self, action: int) -> float:
        """The reward ``action`` would earn at the current iteration (used by the oracle)."""
        return self._reward(self._cost(action))

    def _reward(self, c) -> float:
        """The reward of an iteration that costs ``c`` (an IterationCost)."""
        if self.reward_kind == "latency":
            return -c.time / self.time_scale
        if self.reward_kind == "energy":
            return -c.energy / self.energy_scale
        t, e = self._total_time + c.time, self._total_energy + c.energy
        return -(t * e - self._total_time * self._total_energy) / (self.time_scale * self.energy_scale)

    # ---------------------------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        size = self.batch_sizes[rng.integers(len(self.batch_sizes))]
        self._tlp_spec = self.tlp_choices[rng.integers(len(self.tlp_choices))]
        lin, lout = self.dataset.sample(size, rng)
        self.batch = StaticBatch(lin, lout, self.acceptance_rate, rng)
        self._steps = 0
        self._last_action = 0
        self._total_time = self._total_energy = 0.0
        self._tokens = 0
        self._tlp = tlp_at(self._tlp_spec, 0)
        obs = self._observe()
        return obs, {"batch_size": size, "rlp": self.batch.live, "tlp": self._tlp}

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
        if self.batch.done:
            raise RuntimeError("the episode has ended; call reset()")
        cost = self._cost(a)
        reward = self._reward(cost)
        rlp, tlp = self.batch.live, self._tlp
        tokens = self.batch.advance(tlp)
        self._steps += 1
        self._last_action = a
        self._total_time += cost.time
        self._total_energy += cost.energy
        self._tokens += tokens
        terminated = self.batch.done
        truncated = not terminated and self._steps >= self.max_steps
        info = {
            "time_fc": cost.fc_time, "time_attention": cost.attention_time,
            "time_communication": cost.comm_time, "time_other": cost.other_time,
            "energy_fc": cost.fc_energy, "energy_attention": cost.attention_energy,
            "energy_communication": cost.comm_energy, "energy_other": cost.other_energy,
            "tokens": tokens, "placement": ACTIONS[a], "rlp": rlp, "tlp": tlp,
        }
        if terminated or truncated:
            info["episode_time"] = self._total_time
            info["episode_energy"] = self._total_energy
            info["episode_tokens"] = self._tokens
            info["tokens_per_s"] = self._tokens / self._total_time
            info["joules_per_token"] = self._total_energy / self._tokens
            obs = np.zeros(OBS_SIZE, dtype=np.float32) if terminated else self._observe()
        else:
            self._tlp = tlp_at(self._tlp_spec, self._steps)
            obs = self._observe()
        return obs, reward, terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.batch is None:
            return None
        return (
            f"iter {self._steps:5d}  RLP {self.batch.live:3d}/{self.batch.size:<3d} TLP {self._tlp}  "
            f"last FC on {ACTIONS[self._last_action]:3s}  t {self._total_time * 1e3:9.2f} ms  "
            f"E {self._total_energy:8.2f} J  tokens {self._tokens}"
        )
