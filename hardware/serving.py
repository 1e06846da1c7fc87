"""Static batching [P]: a batch decodes until its last request ends; each request leaves at its
own output length, so RLP shrinks during serving.

Per iteration every live request verifies TLP tokens. By default all TLP tokens are accepted (as
in the paper); with ``acceptance_rate`` p < 1 each request gains 1 + (the number of leading draft
tokens accepted, each with probability p, out of TLP - 1) tokens, the standard speculative
decoding outcome. ``advance(tlp, accept_prob)`` takes one probability per request instead (the
batch must be built with ``stochastic=True``). A request never gains more than it still has to
produce.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hardware.systems import CostModel, IterationCost


class StaticBatch:
    """The state of one static batch: who is live, how long each context is.

    Attention in an iteration reads each live request's context: its prompt, the tokens it has
    generated, and the TLP tokens being verified.
    """

    def __init__(self, input_lengths: Sequence[int], output_lengths: Sequence[int],
                 acceptance_rate: float | None = None, rng: np.random.Generator | None = None,
                 stochastic: bool = False) -> None:
        lin = np.asarray(input_lengths, dtype=np.int64)
        lout = np.asarray(output_lengths, dtype=np.int64)
        if lin.ndim != 1 or lin.shape != lout.shape or len(lin) == 0:
            raise ValueError("input and output lengths must be non-empty sequences of equal length")
        if (lin < 1).any() or (lout < 1).any():
            raise ValueError("request lengths must be >= 1 token")
        if acceptance_rate is not None and not 0.0 < acceptance_rate <= 1.0:
            raise ValueError(f"acceptance_rate must be in (0, 1], got {acceptance_rate!r}")
        self.size = len(lin)
        self.acceptance_rate = None if acceptance_rate in (None, 1.0) else float(acceptance_rate)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        order = np.argsort(lout, kind="stable")
        self.input_lengths = lin[order]
        self.output_lengths = lout[order]
        self.total_output = int(lout.sum())
        self.iteration = 0
        self.tokens_generated = 0
        self.last_drafted = self.last_accepted = 0  # draft tokens offered / accepted last iteration
        # per request, last iteration: drafts accepted before the first rejection, and whether a
        # rejection was seen (drafts after it are never verified, so they carry no information)
        self.last_request_accepted = np.zeros(self.size, dtype=np.int64)
        self.last_request_rejected = np.zeros(self.size, dtype=bool)
        self._lockstep = self.acceptance_rate is None and not stochastic
        self.order = order  # request i of this batch is request order[i] of the caller's lists
        if self._lockstep:
            # Lock-step fast path: every live request has generated the same number of tokens.
            self._generated = 0
            self._first_live = 0
            self._suffix_input = np.concatenate([np.cumsum(self.input_lengths[::-1])[::-1], [0]]).tolist()
            self._out = self.output_lengths.tolist()
        else:
            self._gen = np.zeros(self.size, dtype=np.int64)

    # -------------------------------------------------------------------------------- queries
    @property
    def live(self) -> int:
        """RLP: requests still decoding."""
        if self._lockstep:
            return self.size - self._first_live
        return int((self._gen < self.output_lengths).sum())

    def live_mask(self) -> np.ndarray:
        """Which requests (in this batch's order) are still decoding."""
        if self._lockstep:
            mask = np.zeros(self.size, dtype=bool)
            mask[self._first_live:] = True
            return mask
        return self._gen < self.output_lengths

    @property
    def done(self) -> bool:
        return self.live == 0

    def remaining(self) -> np.ndarray:
        """Tokens each request (this batch's order) still has to produce (0 when finished)."""
        if self._lockstep:
            return np.maximum(self.output_lengths - self._generated, 0)
        return self.output_lengths - self._gen

    def context_stats(self, tlp: int) -> tuple[float, float]:
        """(sum, max) of live requests' context this iteration, tokens (incl. the TLP verified)."""
        if self._lockstep:
            live = self.size - self._first_live
            if live == 0:
                return 0.0, 0.0
            base = self._generated + tlp
            return float(self._suffix_input[self._first_live] + live * base), float(
                int(self.input_lengths[self._first_live:].max()) + base
            )
        mask = self._gen < self.output_lengths
        if not mask.any():
            return 0.0, 0.0
        ctx = self.input_lengths[mask] + self._gen[mask] + tlp
        return float(ctx.sum()), float(ctx.max())

    # ---------------------------------------------------------------------------------- step
    def advance(self, tlp: int, accept_prob: np.ndarray | None = None) -> int:
        """Run one iteration at speculation length ``tlp``; return the tokens produced.

        ``accept_prob``: per-request acceptance probabilities (length ``size``, this batch's order);
        default: the batch's scalar ``acceptance_rate``, or all accepted.
        """
        if isinstance(tlp, bool) or not isinstance(tlp, (int, np.integer)) or tlp < 1:
            raise ValueError(f"tlp must be a positive integer, got {tlp!r}")
        if self.done:
            raise RuntimeError("the batch is finished; start a new one")
        if accept_prob is not None and self._lockstep:
            raise ValueError("per-request acceptance needs a batch built with stochastic=True")
        self.iteration += 1
        if self._lockstep:
            g0 = self._generated
            g1 = g0 + tlp
            live = self.size - self._first_live
            produced = live * tlp
            out, i = self._out, self._first_live
            while i < self.size and out[i] <= g1:
                produced -= g1 - out[i]  # the request needed fewer than tlp tokens
                i += 1
            self._first_live, self._generated = i, g1
        else:
            mask = self._gen < self.output_lengths
            n = int(mask.sum())
            if accept_prob is not None:
                p = np.asarray(accept_prob, dtype=np.float64)[mask][:, None]
            else:
                p = 1.0 if self.acceptance_rate is None else self.acceptance_rate
            if tlp > 1:
                accepted = self.rng.random((n, tlp - 1)) < p
                leading = np.cumprod(accepted, axis=1).sum(axis=1)
                gained = 1 + leading
                self.last_drafted, self.last_accepted = n * (tlp - 1), int(leading.sum())
                self.last_request_accepted[:] = 0
                self.last_request_rejected[:] = False
                self.last_request_accepted[mask] = leading
                self.last_request_rejected[mask] = leading < tlp - 1
            else:
                gained = np.ones(n, dtype=np.int64)
                self.last_drafted = self.last_accepted = 0
                self.last_request_accepted[:] = 0
                self.last_request_rejected[:] = False
            remaining = self.output_lengths[mask] - self._gen[mask]
            gained = np.minimum(gained, remaining)
            self._gen[mask] += gained
            produced = int(gained.sum())
        self.tokens_generated += produced
        return produced


Placement = Callable[[int, int, float, int], str]
"""A placement rule: (rlp, tlp, sum_ctx, iteration) -> FC unit ('pim' or 'gpu')."""


def threshold_rule(alpha: float) -> Placement:
    """PAPI's characterizer [P]: FC on the GPU if RLP x TLP > alpha, else on FC-PIM."""
    return lambda rlp, tlp, sum_ctx, it: "gpu" if rlp * tlp > alpha else "pim"


def static_rule(unit: str) -> Placement:
    """Always the same FC unit."""
    return lambda rlp, tlp, sum_ctx, it: unit


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


CATEGORIES = ("fc", "attention", "communication", "other")


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


def run_batch(cost_model: CostModel, input_lengths: Sequence[int], output_lengths: Sequence[int],
              tlp: int | Sequence[tuple[int, int]], placement: Placement,
              acceptance_rate: float | None = None, seed: int = 0,
              include_prefill: bool = True) -> BatchResult:
    """Decode one static batch to the end under a placement rule. Prefill reported separately."""
    cost_model.check_batch_fits(input_lengths, output_lengths)
    batch = StaticBatch(input_lengths, output_lengths, acceptance_rate, np.random.default_rng(seed))
    result = BatchResult()
    if include_prefill:
        pre = cost_model.prefill(list(batch.input_lengths))
        result.prefill_time, result.prefill_energy = pre.time, pre.energy
    while not batch.done:
        t = tlp_at(tlp, batch.iteration)
        rlp = batch.live
        sum_ctx, _ = batch.context_stats(t)
        unit = placement(rlp, t, sum_ctx, batch.iteration)
        cost = cost_model.iteration(rlp, t, sum_ctx, unit)
        tokens = batch.advance(t)
        result.add(cost, tokens, unit)
    return result
