"""What every PAPI environment shares: the batch, the objectives, randomisation, the episode totals.

An episode is one static batch, one step one decoding iteration, until the last request ends (or
``max_steps``). Subclasses define the action (what the scheduler decides each iteration) and add
observation features; this class owns the rest.

Objectives (``reward``), each a per-step term whose episode sum is the objective, divided by a
fixed scale so that a step is about -1:

- ``latency``: -iteration seconds / ``time_scale``.
- ``energy``: -iteration joules / ``energy_scale``.
- ``edp``: the step's increment of -(total s x total J) / (``time_scale`` x ``energy_scale``).
- ``latency_target``: the latency term minus ``miss_penalty`` for every iteration whose per-token
  latency (iteration seconds / tokens each live request gained) exceeds ``latency_target_s``.

``time_scale`` is the GPUs' weight-streaming time of the model (weight bytes / (GPUs x bandwidth
x 0.85)) and ``energy_scale`` their energy to read the weights once: the cost of one memory-bound
GPU iteration. The default ``latency_target_s`` is 2 x time_scale (15.2 ms for LLaMA-65B on PAPI).

Each episode ends with ``info["score"]``, the objective as a higher-is-better figure per token:
tokens/s (latency), tokens/J (energy), tokens^2/(s J) (edp), tokens / (s + miss_penalty x
time_scale x misses) (latency_target).

Generalisation: ``model``, ``system`` and ``dataset`` each take one value or a list; with a list,
every episode draws one uniformly (train on one preset, evaluate on another; or randomise).

Capacity: the model's weights must fit the system's FC memory (checked when the env is built) and
each drawn batch's KV cache, reserved at every request's full length, the attention memory
(``on_over_capacity``: 'error' by default, or 'admit' a prefix of the batch that fits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from hardware.calibrate import calibrate_alpha
from hardware.serving import StaticBatch, tlp_at
from hardware.systems import CostModel, IterationCost
from hardware.workloads import get_dataset

RLP_SCALE, TLP_SCALE, CTX_SCALE, LOG_R_SCALE = 256.0, 16.0, 4096.0, 12.0
REWARDS = ("latency", "energy", "edp", "latency_target")
OVER_CAPACITY = ("error", "admit")
"""What reset does with a drawn batch whose KV cache (every request at its full length) exceeds the
attention memory: 'error' (default: an experiment never silently runs a smaller batch than it
asked for) or 'admit' (admit requests in the drawn order while they fit, as a server would)."""
TARGET_IN_TIME_SCALES = 2.0  # [D] default per-token latency target, in units of time_scale


def calibration_objective(reward: str) -> str:
    """Which offline crossover a rule should use for an objective (latency for latency_target)."""
    return {"latency_target": "latency"}.get(reward, reward)


def as_choices(name: str, value: Any, low: int, high: int) -> tuple[int, ...]:
    """An int or a list of ints in [low, high], as a tuple; a clear error otherwise."""
    if isinstance(value, (int, np.integer)):
        values = (value,)
    elif isinstance(value, (list, tuple)):
        values = tuple(value)
    else:
        raise ValueError(f"{name} must be an integer or a list of integers in [{low}, {high}], got {value!r}")
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= v <= high
                         for v in values):
        raise ValueError(f"{name} must be an integer or a list of integers in [{low}, {high}], got {value!r}")
    return tuple(int(v) for v in values)


def _as_list(value: Any) -> list:
    """One value or a list of values (a dict is one value: a system override)."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def episode_score(reward: str, info: dict[str, Any], time_scale: float, miss_penalty: float) -> float:
    """The objective of a finished episode as a higher-is-better number per token (module docstring)."""
    t, e, n = info["episode_time"], info["episode_energy"], info["episode_tokens"]
    if reward == "latency":
        return n / t
    if reward == "energy":
        return n / e
    if reward == "edp":
        return n * n / (t * e)
    return n / (t + miss_penalty * time_scale * info["episode_misses"])


class PapiBaseEnv(gym.Env):
    """The serving loop of one static batch; subclasses define the decision. See module docstring."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        model: str | Sequence[str] = "llama-65b",
        dataset: str | Sequence[str] = "creative-writing",
        batch_size: int | Sequence[int] = (4, 16, 64),
        tlp: int | Sequence[int] | Sequence[Sequence[int]] = (1, 2, 4),
        system: Any = "papi",
        reward: str = "latency",
        max_steps: int = 4096,
        acceptance_rate: float | None = None,
        latency_target_s: float | None = None,
        miss_penalty: float = 1.0,
        on_over_capacity: str = "error",
        render_mode: str | None = None,
    ) -> None:
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        max_steps = int(max_steps)
        for name, value in (("latency_target_s", latency_target_s), ("miss_penalty", miss_penalty),
                            ("acceptance_rate", acceptance_rate)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                      or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if on_over_capacity not in OVER_CAPACITY:
            raise ValueError(f"on_over_capacity must be one of {OVER_CAPACITY}, got {on_over_capacity!r}")
        for name, value in (("model", model), ("dataset", dataset), ("system", system)):
            if isinstance(value, (list, tuple)) and len(value) == 0:
                raise ValueError(f"{name} must be one value or a non-empty list, got an empty list")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        if latency_target_s is not None and not latency_target_s > 0:
            raise ValueError(f"latency_target_s must be > 0 seconds, got {latency_target_s!r}")
        if not miss_penalty >= 0:
            raise ValueError(f"miss_penalty must be >= 0, got {miss_penalty!r}")
        if acceptance_rate is not None and not 0.0 < acceptance_rate <= 1.0:
            raise ValueError(f"acceptance_rate must be in (0, 1], got {acceptance_rate!r}")
        systems, models = _as_list(system), _as_list(model)
        self.cost_models = [CostModel(s, m) for s in systems for m in models]
        self.datasets = [get_dataset(d) for d in _as_list(dataset)]
        self.batch_sizes = as_choices("batch_size", batch_size, 1, int(RLP_SCALE))
        # tlp: an int, a list of ints (one drawn per episode), or a schedule [[iteration, tlp], ...]
        if (isinstance(tlp, (list, tuple)) and len(tlp)
                and all(isinstance(item, (list, tuple)) for item in tlp)):
            if any(len(item) != 2 or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                                             for x in item) for item in tlp):
                raise ValueError(f"a TLP schedule is a list of [iteration, tlp] integer pairs, got {tlp!r}")
            schedule = tuple((int(s), int(v)) for s, v in tlp)
            if any(b[0] <= a[0] for a, b in zip(schedule[:-1], schedule[1:], strict=True)):
                raise ValueError(f"a TLP schedule's iterations must increase, got {tlp!r}")
            as_choices("tlp", [v for _, v in schedule], 1, int(TLP_SCALE))
            if schedule[0][0] != 0:
                raise ValueError("a TLP schedule must start at iteration 0")
            self.tlp_choices: tuple = (schedule,)
        else:
            self.tlp_choices = as_choices("tlp", tlp, 1, int(TLP_SCALE))
        self.reward_kind = reward
        self.max_steps = max_steps
        self.acceptance_rate = acceptance_rate
        self.latency_target_s = latency_target_s
        self.miss_penalty = float(miss_penalty)
        self.on_over_capacity = on_over_capacity
        self.render_mode = render_mode
        self._alphas: dict[tuple[int, str | None], int] = {}
        self._use(self.cost_models[0])
        self.dataset = self.datasets[0]
        self.batch: StaticBatch | None = None

    # ------------------------------------------------------------------------------ helpers
    def _use(self, cost_model: CostModel) -> None:
        """Make ``cost_model`` the episode's hardware and model; set the reward scales."""
        self.cost_model = cost_model
        sysm, m = cost_model.system, cost_model.model
        if sysm.has_gpus:
            weight_bandwidth = sysm.num_gpus * sysm.gpu.memory_bandwidth * sysm.gpu.bandwidth_efficiency
        else:  # a PIM-only system: the FC stacks' internal bandwidth
            weight_bandwidth = sysm.fc_stacks * sysm.fc_pim.internal_bandwidth
        self.time_scale = m.weight_bytes / weight_bandwidth
        self.energy_scale = m.weight_bytes * sysm.energy.gpu_offchip_pj_per_byte * 1e-12
        self.target_s = self.latency_target_s or TARGET_IN_TIME_SCALES * self.time_scale

    def alpha(self, kernel: str | None = None) -> int:
        """The objective's offline FC crossover (all kernels, or one) for this episode's model and
        system: what PAPI's calibration gives the runtime (hardware.calibrate). Cached."""
        key = (id(self.cost_model), kernel)
        if key not in self._alphas:
            self._alphas[key] = calibrate_alpha(self.cost_model, 1024, calibration_objective(self.reward_kind), kernel)
        return self._alphas[key]

    def _begin_episode(self, stochastic: bool = False) -> int:
        """Draw the episode's hardware, model, dataset, batch and TLP; return the batch size."""
        rng = self.np_random
        if len(self.cost_models) > 1:
            self._use(self.cost_models[rng.integers(len(self.cost_models))])
        if len(self.datasets) > 1:
            self.dataset = self.datasets[rng.integers(len(self.datasets))]
        size = self.batch_sizes[rng.integers(len(self.batch_sizes))]
        self._tlp_spec = self.tlp_choices[rng.integers(len(self.tlp_choices))]
        lin, lout = self.dataset.sample(size, rng)
        if self.on_over_capacity == "admit":
            fits = self.cost_model.batch_prefix_that_fits(lin, lout)
            lin, lout = lin[:fits], lout[:fits]
        else:
            self.cost_model.check_batch_fits(lin, lout)
        self.batch = StaticBatch(lin, lout, self.acceptance_rate, rng, stochastic=stochastic)
        size = self.batch.size
        self._steps = 0
        self._total_time = self._total_energy = 0.0
        self._tokens = self._misses = 0
        self._tlp = tlp_at(self._tlp_spec, 0)
        return size

    def _base_features(self, last_gpu_share: float) -> list[float]:
        """The eight features every variant starts with (table in schedule_env)."""
        b = self.batch
        rlp = b.live
        sum_ctx, max_ctx = b.context_stats(self._tlp)
        self._sum_ctx = sum_ctx
        r = rlp * self._tlp
        return [
            rlp / RLP_SCALE,
            self._tlp / TLP_SCALE,
            math.log2(r) / LOG_R_SCALE if r else 0.0,
            rlp / b.size,
            (sum_ctx / rlp if rlp else 0.0) / CTX_SCALE,
            max_ctx / CTX_SCALE,
            last_gpu_share,
            self._steps / self.max_steps,
        ]

    def _reward(self, c: IterationCost, gain_per_request: float) -> float:
        """The reward of an iteration costing ``c`` in which each live request gains
        ``gain_per_request`` tokens on average (the per-token latency is c.time / that)."""
        kind = self.reward_kind
        if kind == "latency":
            return -c.time / self.time_scale
        if kind == "energy":
            return -c.energy / self.energy_scale
        if kind == "edp":
            return -self._edp_increase(c) / (self.time_scale * self.energy_scale)
        return -c.time / self.time_scale - self.miss_penalty * self._missed(c.time, gain_per_request)

    def _edp_increase(self, c: IterationCost) -> float:
        """How much an iteration costing ``c`` raises the episode's total s x total J (s x J)."""
        t, e = self._total_time + c.time, self._total_energy + c.energy
        return t * e - self._total_time * self._total_energy

    def _missed(self, seconds: float, gain_per_request: float) -> bool:
        return seconds > self.target_s * gain_per_request

    def _finish_step(self, cost: IterationCost, tokens: int, rlp: int, info: dict[str, Any]) -> tuple[bool, bool]:
        """Add the iteration to the totals; fill ``info``; return (terminated, truncated)."""
        self._steps += 1
        missed = self._missed(cost.time, tokens / rlp)
        self._total_time += cost.time
        self._total_energy += cost.energy
        self._tokens += tokens
        self._misses += missed
        info.update({
            "time_fc": cost.fc_time, "time_attention": cost.attention_time,
            "time_communication": cost.comm_time, "time_other": cost.other_time,
            "energy_fc": cost.fc_energy, "energy_attention": cost.attention_energy,
            "energy_communication": cost.comm_energy, "energy_other": cost.other_energy,
            "tokens": tokens, "rlp": rlp, "missed_target": bool(missed),
        })
        terminated = self.batch.done
        truncated = not terminated and self._steps >= self.max_steps
        if terminated or truncated:
            info.update({
                "episode_time": self._total_time, "episode_energy": self._total_energy,
                "episode_tokens": self._tokens, "episode_misses": self._misses, "episode_steps": self._steps,
                "tokens_per_s": self._tokens / self._total_time,
                "joules_per_token": self._total_energy / self._tokens,
                "model": self.cost_model.model.name, "system": self.cost_model.system.name,
            })
            info["score"] = episode_score(self.reward_kind, info, self.time_scale, self.miss_penalty)
        return terminated, truncated

    def _next_observation(self, terminated: bool, truncated: bool) -> np.ndarray:
        """The observation after a step: zeros at the end of the batch; otherwise move the TLP
        schedule on (unless truncated) and observe."""
        if terminated:
            return np.zeros(self.observation_space.shape, dtype=np.float32)
        if not truncated:
            self._tlp = tlp_at(self._tlp_spec, self._steps)
        return self._observe()

    def _observe(self) -> np.ndarray:
        raise NotImplementedError

    def _check_stepping(self) -> None:
        if self.batch is None:
            raise RuntimeError("call reset() before step()")
        if self.batch.done or self._steps >= self.max_steps:
            raise RuntimeError("the episode has ended (terminated or truncated); call reset()")

    # ---------------------------------------------------------------------- oracle support
    def candidate_actions(self) -> list[Any]:
        """The actions the greedy oracle compares (subclasses with finite choices list them)."""
        raise NotImplementedError

    def step_objective(self, action: Any) -> float:
        """The reward ``action`` would earn at the current iteration (used by the oracle)."""
        raise NotImplementedError

    def oracle_action(self) -> Any:
        """The best action for this iteration by the cost model (greedy)."""
        best, best_value = None, -math.inf
        for a in self.candidate_actions():
            v = self.step_objective(a)
            if v > best_value:
                best, best_value = a, v
        return best

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.batch is None:
            return None
        return (
            f"iter {self._steps:5d}  RLP {self.batch.live:3d}/{self.batch.size:<3d} TLP {self._tlp}  "
            f"{self._describe_last_action()}  t {self._total_time * 1e3:9.2f} ms  "
            f"E {self._total_energy:8.2f} J  tokens {self._tokens}"
        )

    def _describe_last_action(self) -> str:
        return ""
