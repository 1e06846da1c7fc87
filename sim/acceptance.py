"""Speculative decoding's acceptance: the one formula for accepted drafts, and the drifting process.

**Accepted drafts** (every simulator here: static batches, the speculation variant, online
serving). At speculation length TLP a request verifies TLP tokens: one it would have produced
anyway and TLP - 1 drafts. Draft j is kept only if drafts 1..j are all accepted, each with
probability p, so the number of leading accepted drafts L is geometric, P(L >= j) = p^j, capped
at TLP - 1, and the request gains 1 + L tokens (never more than it has left). From one uniform
u in (0, 1]: L = min(floor(log u / log p), TLP - 1) (:func:`leading_accepts`). Where the uniform
comes from is the caller's: counter-based draws (sim.random_streams) in the environments, a
seeded generator in online serving and in :func:`sim.static.run_batch`.

**The drifting process** (PapiSpecSchedule-v0, :class:`AcceptanceModel`): each drafted token of
request i at iteration t is accepted with probability p_i(t) = sigmoid(m + b_i + x_i(t)), where
m = logit(mu) with mu drawn per batch from ``mean_range``, b_i ~ N(0, ``request_spread``) is the
request's own offset (some prompts are easy to draft for, some are not), and x_i(t) is a
stationary AR(1) process with standard deviation ``drift`` and time constant
``correlation_iters`` iterations (easy and hard spans in the text). Provenance: the range of mean
acceptance follows Leviathan et al. (ICML 2023), who measure alpha between about 0.5 and 0.9
across draft/target pairs and tasks; the spread and drift have no published distribution and are
knobs of this study [D, assumption].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim import random_streams


def leading_accepts(u: np.ndarray, p: np.ndarray | float, max_drafts: np.ndarray | int) -> np.ndarray:
    """int64 drafts accepted before the first rejection, per request: geometric with
    P(>= j) = p^j from one uniform ``u`` in (0, 1] each, capped at ``max_drafts`` (TLP - 1).
    ``p`` per request or one for all; p = 1 accepts every draft. Arrays broadcast together."""
    log_p = np.log(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        drafts = np.floor(np.log(u) / log_p)
    drafts = np.where(log_p < 0, drafts, np.inf) if np.any(log_p >= 0) else drafts
    return np.minimum(drafts, max_drafts).astype(np.int64)


def expected_gain(p: np.ndarray, tlp: int) -> np.ndarray:
    """Expected tokens a request gains at speculation length ``tlp``: sum_{j<tlp} p^j."""
    p = np.asarray(p, dtype=np.float64)
    if tlp == 1:
        return np.ones_like(p)
    return (1.0 - p**tlp) / np.maximum(1.0 - p, 1e-12)


def expected_gain_per_request(probs: np.ndarray, tlp: np.ndarray) -> np.ndarray:
    """Expected tokens per request at its own ``tlp`` (probs and tlp of the same length: one per
    request)."""
    gains = np.ones_like(probs)
    for t in np.unique(tlp).tolist():  # a scalar exponent: numpy's array-exponent power rounds otherwise
        if t > 1:
            rows = tlp == t
            gains[rows] = expected_gain(probs[rows], t)
    return gains


def probabilities(logits: np.ndarray) -> np.ndarray:
    """p_i(t) = sigmoid(m + b_i + x_i(t)) from the logits m + b_i + x_i(t)."""
    return 1.0 / (1.0 + np.exp(-logits))


@dataclass(frozen=True)
class AcceptanceModel:
    """Parameters of the drifting acceptance process (see the module docstring)."""

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

    @property
    def rho(self) -> float:
        """The AR(1) drift's per-iteration correlation."""
        return math.exp(-1.0 / self.correlation_iters)

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


class DriftingAcceptance:
    """The drifting acceptance process of N batches as arrays: p_i(t) of every request slot.

    ``begin`` draws each new batch's mean acceptance, per-request offsets and initial drifts from
    that environment's generator; ``advance`` moves the live requests' AR(1) drifts on by one
    iteration with counter-based normal draws (sim.random_streams), so a trajectory does not
    depend on how many environments step together."""

    def __init__(self, model: AcceptanceModel, num_envs: int, width: int) -> None:
        self.model, self.rho = model, model.rho
        self.mean = np.zeros(num_envs)  # each batch's mean acceptance mu
        self.base, self.drift = np.zeros((num_envs, width)), np.zeros((num_envs, width))  # m + b_i, x_i(t)

    def begin(self, envs: np.ndarray, sizes: np.ndarray, rngs: list) -> None:
        """New batches in ``envs`` (of ``sizes`` requests): mu ~ U(mean_range), then the offsets,
        then the drifts, each environment from ``rngs[i]`` in that order."""
        m = self.model
        low, high = m.mean_range
        self.base[envs] = self.drift[envs] = 0.0
        for i, size in zip(envs.tolist(), sizes.tolist(), strict=True):
            rng = rngs[i]
            self.mean[i] = mean = float(rng.uniform(low, high))
            self.base[i, :size] = math.log(mean / (1.0 - mean)) + rng.normal(0.0, m.request_spread, size)
            self.drift[i, :size] = rng.normal(0.0, m.drift, size)

    def probabilities(self) -> np.ndarray:
        """(N, width) every request's acceptance probability p_i(t) now."""
        return probabilities(self.base + self.drift)

    def advance(self, keys: np.ndarray, steps: np.ndarray, rows: np.ndarray, slots: np.ndarray) -> None:
        """One iteration of the AR(1) drift at the (environment, slot) pairs ``rows``, ``slots``
        (the live requests; a finished request's drift is never used again), drawn under the
        environments' episode ``keys`` at iteration counts ``steps`` (one per pair)."""
        noise = self.model.drift * random_streams.normal(keys, steps, slots, random_streams.DRIFT_STREAM)
        self.drift[rows, slots] = self.rho * self.drift[rows, slots] + math.sqrt(1.0 - self.rho**2) * noise
