"""One static batch decoded to its end under a placement rule: the paper's experiment [P].

A batch decodes until its last request ends; each request leaves at its own output length, so
RLP shrinks during serving. It runs on the same batch arrays as the environments
(sim.batches.BatchArrays, one row): every live request verifies TLP tokens an iteration; by
default all are accepted (the paper), with ``acceptance_rate`` p < 1 each request gains
1 + its leading accepted drafts (sim.acceptance.leading_accepts, uniforms from a generator
seeded by ``seed``). A request never gains more than it still has to produce.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hardware.systems import CostModel, IterationCost
from sim.acceptance import leading_accepts
from sim.batches import BatchArrays

Placement = Callable[[int, int, float, int], str]
"""A placement rule: (rlp, tlp, sum_ctx, iteration) -> FC unit ('pim' or 'gpu'); agents/rules.py has them."""
CATEGORIES = ("fc", "attention", "communication", "other")


@dataclass
class BatchResult:
    """Totals of one static batch. Seconds, joules, tokens."""

    time: float = 0.0
    energy: float = 0.0
    tokens: int = 0
    iterations: int = 0
    gpu_iterations: int = 0
    breakdown_time: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0.0))
    breakdown_energy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0.0))
    prefill_time: float = 0.0
    prefill_energy: float = 0.0

    def add(self, cost: IterationCost, tokens: int, unit: str) -> None:
        self.time += cost.time
        self.energy += cost.energy
        self.tokens += tokens
        self.iterations += 1
        self.gpu_iterations += unit == "gpu"
        for name, t, e in zip(CATEGORIES, cost[:4], cost[4:], strict=True):
            self.breakdown_time[name] += t
            self.breakdown_energy[name] += e

    def merge(self, other: BatchResult) -> None:
        """Add another batch's decoding totals to this one (prefill excluded)."""
        self.time += other.time
        self.energy += other.energy
        self.tokens += other.tokens
        self.iterations += other.iterations
        self.gpu_iterations += other.gpu_iterations
        for name in CATEGORIES:
            self.breakdown_time[name] += other.breakdown_time[name]
            self.breakdown_energy[name] += other.breakdown_energy[name]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.time if self.time else 0.0

    @property
    def joules_per_token(self) -> float:
        return self.energy / self.tokens if self.tokens else 0.0


def tlp_at(tlp: int | Sequence[tuple[int, int]], iteration: int) -> int:
    """The speculation length at ``iteration`` (0-based): a constant, or (start, tlp) steps."""
    if isinstance(tlp, (int, np.integer)):
        return int(tlp)
    current = None
    for start, value in tlp:
        if iteration >= start:
            current = value
    if current is None:
        raise ValueError(f"TLP schedule {tlp!r} does not cover iteration {iteration}")
    return int(current)


def load_batch(input_lengths: Sequence[int], output_lengths: Sequence[int], stochastic: bool = False) -> BatchArrays:
    """One static batch as a one-row BatchArrays; ValueError on lengths that are not >= 1 tokens."""
    lin = np.asarray(input_lengths, dtype=np.int64)
    lout = np.asarray(output_lengths, dtype=np.int64)
    if lin.ndim != 1 or lin.shape != lout.shape or len(lin) == 0:
        raise ValueError("input and output lengths must be non-empty sequences of equal length")
    if (lin < 1).any() or (lout < 1).any():
        raise ValueError("request lengths must be >= 1 token")
    batch = BatchArrays(1, len(lin), stochastic)
    batch.load(0, lin, lout)
    return batch


def run_batch(cost_model: CostModel, input_lengths: Sequence[int], output_lengths: Sequence[int],
              tlp: int | Sequence[tuple[int, int]], placement: Placement,
              acceptance_rate: float | None = None, seed: int = 0,
              include_prefill: bool = True) -> BatchResult:
    """Decode one static batch to the end under a placement rule. Prefill reported separately."""
    if acceptance_rate is not None and not 0.0 < acceptance_rate <= 1.0:
        raise ValueError(f"acceptance_rate must be in (0, 1], got {acceptance_rate!r}")
    p = None if acceptance_rate in (None, 1.0) else float(acceptance_rate)
    cost_model.check_batch_fits(input_lengths, output_lengths)
    batch = load_batch(input_lengths, output_lengths, stochastic=p is not None)
    rng = np.random.default_rng(seed)
    result = BatchResult()
    if include_prefill:
        pre = cost_model.prefill(batch.input_lengths[0].tolist())  # sorted by output length
        result.prefill_time, result.prefill_energy = pre.time, pre.energy
    rlp = int(batch.live()[0])
    iteration = 0
    while rlp:
        t = tlp_at(tlp, iteration)
        if t < 1:
            raise ValueError(f"tlp must be a positive integer, got {t!r}")
        total, _ = batch.context()
        sum_ctx = float(total[0] + rlp * t)
        unit = placement(rlp, t, sum_ctx, iteration)
        cost = cost_model.iteration(rlp, t, sum_ctx, unit)
        tlps = np.array([t])
        if p is None:
            tokens = int(batch.advance(tlps)[0])
        else:
            leading = np.zeros((1, batch.width), dtype=np.int64)
            leading[batch.live_mask()] = leading_accepts(rng.random(rlp), p, t - 1)
            tokens = int(batch.advance(tlps, leading)[0])
        result.add(cost, tokens, unit)
        rlp = int(batch.live()[0])
        iteration += 1
    return result
