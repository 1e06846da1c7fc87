"""N static batches as arrays: who is live, how long each context is, what each iteration produced.

The one implementation of static batching: the environments step N rows at once, sim.static runs
one row to its end. Requests of environment i occupy slots 0..size[i]-1 of a row of ``width``
slots, sorted by output length (stable), so with every draft accepted the live requests are
always a suffix of the row. Two paths:

- lock-step (every verified token accepted): every live request has generated the same number of
  tokens ``generated[i]``; the live requests are slots ``first[i]..size[i]-1``; context sums and
  the tokens of an iteration come from prefix sums in O(1) per environment;
- stochastic (per-request acceptance): ``gen[i, j]`` tokens generated per request, and each
  iteration request j gains 1 + ``leading[i, j]`` accepted drafts (capped by what it has left).

All counts are int64 tokens; context sums are exact in float64 (integers below 2^53).
"""

from __future__ import annotations

import numpy as np

from sim.kernels import advance_lockstep

PAD_OUTPUT = np.iinfo(np.int64).max // 4  # lock-step padding: a slot that never finishes, never live


class BatchArrays:
    """N static batches of at most ``width`` requests (see the module docstring)."""

    def __init__(self, num_envs: int, width: int, stochastic: bool) -> None:
        n, w = num_envs, width
        self.num_envs, self.width, self.stochastic = n, w, stochastic
        self.size = np.zeros(n, dtype=np.int64)
        self.input_lengths = np.zeros((n, w), dtype=np.int64)
        self.output_lengths = np.zeros((n, w), dtype=np.int64)
        self.total_output = np.zeros(n, dtype=np.int64)
        if stochastic:
            self.gen = np.zeros((n, w), dtype=np.int64)
            self.last_request_accepted = np.zeros((n, w), dtype=np.int64)
            self.last_request_rejected = np.zeros((n, w), dtype=bool)
            self.last_drafted = np.zeros(n, dtype=np.int64)
            self.last_accepted = np.zeros(n, dtype=np.int64)
        else:
            self.generated = np.zeros(n, dtype=np.int64)
            self.first = np.zeros(n, dtype=np.int64)
            self.suffix_input = np.zeros((n, w + 1), dtype=np.int64)  # sum of inputs of slots k..
            self.suffix_max_input = np.zeros((n, w + 1), dtype=np.int64)  # max of inputs of slots k..
            self.prefix_output = np.zeros((n, w + 1), dtype=np.int64)  # sum of outputs of slots ..k-1
            self.next_output = np.zeros(n, dtype=np.int64)  # output length of the first live slot
            self.live_input = np.zeros(n, dtype=np.int64)  # suffix_input at the first live slot
            self.live_max_input = np.zeros(n, dtype=np.int64)  # suffix_max_input at the first live slot

    def load(self, i: int, input_lengths: np.ndarray, output_lengths: np.ndarray) -> None:
        """Put a new batch in environment i (its requests sorted by output length, stable)."""
        order = np.argsort(output_lengths, kind="stable")
        lin, lout = np.asarray(input_lengths)[order], np.asarray(output_lengths)[order]
        k = len(lin)
        self.size[i] = k
        self.total_output[i] = lout.sum()
        self.input_lengths[i, :k], self.input_lengths[i, k:] = lin, 0
        if self.stochastic:
            self.output_lengths[i, :k], self.output_lengths[i, k:] = lout, 0
            self.gen[i] = self.last_request_accepted[i] = 0
            self.last_request_rejected[i] = False
            self.last_drafted[i] = self.last_accepted[i] = 0
        else:
            self.output_lengths[i, :k], self.output_lengths[i, k:] = lout, PAD_OUTPUT
            self.generated[i] = self.first[i] = 0
            self.suffix_input[i, :k], self.suffix_input[i, k:] = np.cumsum(lin[::-1])[::-1], 0
            self.suffix_max_input[i, :k], self.suffix_max_input[i, k:] = np.maximum.accumulate(lin[::-1])[::-1], 0
            self.prefix_output[i, 1:k + 1] = np.cumsum(lout)
            self.prefix_output[i, k + 1:] = self.prefix_output[i, k]
            self.next_output[i] = lout[0]
            self.live_input[i], self.live_max_input[i] = self.suffix_input[i, 0], self.suffix_max_input[i, 0]

    def load_many(self, envs: np.ndarray, input_lengths: list[np.ndarray], output_lengths: list[np.ndarray]) -> None:
        """Put a new batch in each of ``envs`` (a reset starts one or two episodes per step, so a
        loop of ``load`` costs less than padding them into arrays)."""
        for i, lin, lout in zip(envs.tolist(), input_lengths, output_lengths, strict=True):
            self.load(i, lin, lout)

    # ------------------------------------------------------------------------------ queries
    def live(self) -> np.ndarray:
        """(N,) RLP: requests still decoding."""
        if self.stochastic:
            return (self.gen < self.output_lengths).sum(axis=1)
        return self.size - self.first

    def live_mask(self) -> np.ndarray:
        """(N, width) which slots are still decoding."""
        if self.stochastic:
            return self.gen < self.output_lengths
        slots = np.arange(self.width)[None, :]
        return (slots >= self.first[:, None]) & (slots < self.size[:, None])

    def remaining(self) -> np.ndarray:
        """(N, width) tokens each slot still has to produce (0 when finished or empty)."""
        if self.stochastic:
            return self.output_lengths - self.gen
        left = np.maximum(self.output_lengths - self.generated[:, None], 0)
        return np.where(np.arange(self.width)[None, :] < self.size[:, None], left, 0)

    def context(self, envs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N,) sum and (N,) max over live requests of prompt + generated tokens (0 when none
        is live), or of the environments ``envs`` only; an iteration at speculation length TLP
        adds TLP to each."""
        if self.stochastic:
            gen, out, lin = (self.gen, self.output_lengths, self.input_lengths) if envs is None else (
                self.gen[envs], self.output_lengths[envs], self.input_lengths[envs])
            ctx = np.where(gen < out, lin + gen, 0)
            return ctx.sum(axis=1), ctx.max(axis=1)
        first, generated, size, live_input, live_max_input = (
            (self.first, self.generated, self.size, self.live_input, self.live_max_input) if envs is None else
            (self.first[envs], self.generated[envs], self.size[envs], self.live_input[envs], self.live_max_input[envs]))
        live = size - first
        total = live_input + live * generated
        longest = np.where(live > 0, live_max_input + generated, 0)
        return total, longest

    # --------------------------------------------------------------------------------- step
    def advance(self, tlp: np.ndarray, leading: np.ndarray | None = None) -> np.ndarray:
        """Run one iteration at speculation length ``tlp`` (N,) in every environment; return the
        tokens each produced (N,). ``leading`` (N, width): drafts each request had accepted before
        the first rejection (stochastic batches only; capped at TLP - 1 by the caller)."""
        if self.stochastic:
            live = self.gen < self.output_lengths
            gained = np.minimum(1 + leading, self.output_lengths - self.gen) * live
            self.gen += gained
            drafts = tlp > 1
            accepted = np.where(live, leading, 0) * drafts[:, None]
            self.last_request_accepted = accepted
            self.last_request_rejected = live & drafts[:, None] & (leading < (tlp - 1)[:, None])
            self.last_drafted = live.sum(axis=1) * (tlp - 1)
            self.last_accepted = accepted.sum(axis=1)
            return gained.sum(axis=1)
        produced = np.empty(self.num_envs, dtype=np.int64)
        advance_lockstep(np.asarray(tlp, dtype=np.int64), self.size, self.first, self.generated, self.next_output,
                         self.live_input, self.live_max_input, self.output_lengths, self.prefix_output,
                         self.suffix_input, self.suffix_max_input, produced)
        return produced
