"""Speculative decoding beyond the paper: per-request acceptance that drifts, and the draft model.

The paper counts every verified token as accepted [P]. PapiSpecSchedule-v0 instead lets the
scheduler choose the speculation length (TLP) each iteration, so it needs two more models:

- :class:`AcceptanceProcess`: each drafted token of request i at iteration t is accepted with
  probability p_i(t) = sigmoid(m + b_i + x_i(t)), where m = logit(mu) with mu drawn per batch from
  ``mean_range``, b_i ~ N(0, ``request_spread``) is the request's own offset (some prompts are
  easy to draft for, some are not), and x_i(t) is a stationary AR(1) process with standard
  deviation ``drift`` and time constant ``correlation_iters`` iterations (easy and hard spans in
  the text). A request then gains 1 + (leading accepted drafts) tokens per iteration.
  Provenance: the range of mean acceptance follows Leviathan et al. (ICML 2023), who measure
  alpha between about 0.5 and 0.9 across draft/target pairs and tasks; the spread and drift have
  no published distribution and are knobs of this study [D, assumption].
- :class:`DraftCost`: the draft model proposes TLP - 1 tokens per request, one autoregressive
  step each, on the GPUs before the target model verifies. A small draft is replicated on every
  GPU (data parallel, no all-reduce): each GPU drafts for ceil(RLP / GPUs) requests with the
  draft's KV cache in its own HBM. Cost of one step = the GPU-only decoding cost of the draft
  model on one GPU, energy times the number of GPUs. [D]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hardware.costs import Cost
from hardware.models import ModelSpec, get_model
from hardware.specs import SpecError, SystemSpec, load_system, override
from hardware.systems import CostModel


@dataclass(frozen=True)
class AcceptanceModel:
    """Parameters of the acceptance process (see the module docstring)."""

    mean_range: tuple[float, float] = (0.4, 0.9)
    """Per-batch mean acceptance mu ~ U(low, high). [D] Leviathan et al. 2023 report 0.5..0.9."""
    request_spread: float = 1.0
    """Std of per-request logit offsets b_i. [assumption]"""
    drift: float = 0.75
    """Stationary std of the AR(1) logit drift x_i(t). [assumption]"""
    correlation_iters: float = 32.0
    """AR(1) time constant, iterations (rho = exp(-1 / this)). [assumption]"""

    def __post_init__(self) -> None:
        low, high = self.mean_range
        if not 0.0 < low <= high < 1.0:
            raise ValueError(f"mean_range must satisfy 0 < low <= high < 1, got {self.mean_range!r}")
        if self.request_spread < 0 or self.drift < 0:
            raise ValueError("request_spread and drift must be >= 0 (logit standard deviations)")
        if self.correlation_iters <= 0:
            raise ValueError(f"correlation_iters must be > 0 iterations, got {self.correlation_iters!r}")

    @classmethod
    def from_any(cls, value: AcceptanceModel | dict | None) -> AcceptanceModel:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"acceptance must be a mapping of {list(cls.__dataclass_fields__)}, got {value!r}")
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown acceptance field(s) {sorted(unknown)}; allowed: "
                             f"{sorted(cls.__dataclass_fields__)}")
        data = dict(value)
        if "mean_range" in data:
            data["mean_range"] = tuple(float(v) for v in data["mean_range"])
        return cls(**data)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class AcceptanceProcess:
    """The per-request acceptance probabilities of one batch, advanced once per iteration."""

    def __init__(self, model: AcceptanceModel, size: int, rng: np.random.Generator) -> None:
        self.model, self.rng = model, rng
        low, high = model.mean_range
        self.mean = float(rng.uniform(low, high))
        self.base = _logit(self.mean) + rng.normal(0.0, model.request_spread, size)
        self.drift = rng.normal(0.0, model.drift, size)
        self.rho = math.exp(-1.0 / model.correlation_iters)

    def probabilities(self) -> np.ndarray:
        """p_i(t) for every request of the batch (finished ones included)."""
        return 1.0 / (1.0 + np.exp(-(self.base + self.drift)))

    def advance(self) -> None:
        """Move the drift on by one iteration."""
        noise = self.rng.normal(0.0, self.model.drift, self.drift.shape)
        self.drift = self.rho * self.drift + math.sqrt(1.0 - self.rho**2) * noise


def expected_gain(p: np.ndarray, tlp: int) -> np.ndarray:
    """Expected tokens a request gains at speculation length ``tlp``: sum_{j<tlp} p^j."""
    p = np.asarray(p, dtype=np.float64)
    if tlp == 1:
        return np.ones_like(p)
    return (1.0 - p**tlp) / np.maximum(1.0 - p, 1e-12)


class DraftCost:
    """Seconds and joules of the draft model's TLP - 1 steps per iteration (module docstring)."""

    def __init__(self, system: SystemSpec | str, draft_model: ModelSpec | str = "tinyllama-1.1b") -> None:
        sysm = load_system(system)
        if not sysm.has_gpus:
            raise SpecError(f"the draft model runs on the GPUs, and system '{sysm.name}' has none "
                            "(num_gpus = 0); use a system with GPUs for speculation studies")
        self.gpus = sysm.num_gpus
        one_gpu = override(sysm, {"num_gpus": 1, "attention_unit": "gpu", "fc_units": ["gpu"]})
        self.cost_model = CostModel(one_gpu, get_model(draft_model))
        self._steps: dict[tuple[int, int], Cost] = {}

    def step(self, rlp: int, sum_ctx: float) -> Cost:
        """One draft step for ``rlp`` requests whose contexts sum to ``sum_ctx`` tokens."""
        per_gpu = math.ceil(rlp / self.gpus)
        c = self.cost_model.iteration(per_gpu, 1, sum_ctx * per_gpu / rlp, "gpu")
        return Cost(c.time, c.energy * self.gpus)

    def draft(self, rlp: int, tlp: int, sum_ctx: float) -> Cost:
        """The TLP - 1 draft steps of one iteration (zero at TLP 1)."""
        if tlp <= 1:
            return Cost(0.0, 0.0)
        return self.step(rlp, sum_ctx).scaled(tlp - 1)
