"""Compiled kernels of the static-batch dynamics (numba): pricing one iteration and advancing it.

Each function loops over environments on flat arrays (sim.batches' lock-step layout, the cost
tables of hardware.cost_tables) and does, per environment, the same floating-point operations in
the same order as the numpy code it replaced, so results are bit-identical. They are
``@numba.njit(cache=True)``: compiled once per installation into numba's on-disk cache, and
plain Python under ``NUMBA_DISABLE_JIT=1`` (for debugging; the same numbers, slower).

Table entries that are not computed yet (NaN) are not filled here: :func:`price_batches` lists
them in ``missing`` and returns how many, having changed nothing; the caller fills them from
the cost model and prices again (hardware.cost_tables fills tables lazily from CostModel).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from hardware.cost_tables import ALL_FC
from sim import jit_cache
from sim.random_streams import (
    ACCEPT_STREAM,
    DRIFT_STREAM,
    GOLDEN,
    MIX1,
    MIX2,
    SLOT_BITS,
    STREAM_BITS,
    UNIT,
)

jit_cache.ensure_fresh()  # before any kernel loads from numba's cache: caches of changed sources are dropped

FC_ALL, FC_PER_KERNEL, FC_SPLIT = 0, 1, 2  # how an action places FC: all kernels on one unit, per kernel, split
TABLE_FC, TABLE_FIXED, TABLE_SPLIT = 0, 1, 2  # which table a missing entry belongs to


@nb.njit(cache=True)
def lockstep_live_context(size: np.ndarray, first: np.ndarray, generated: np.ndarray, live_input: np.ndarray,
                          live_max_input: np.ndarray, i: int) -> tuple[int, int, int]:
    """Environment i's (RLP, sum, max) of the live requests' prompt + generated tokens."""
    live = size[i] - first[i]
    total = live_input[i] + live * generated[i]
    longest = live_max_input[i] + generated[i] if live > 0 else 0
    return live, total, longest


@nb.njit(cache=True)
def price_one(i: int, fc_mode: int, actions: np.ndarray, attention_units: np.ndarray, cm: np.ndarray,
              tlp: np.ndarray, live: int, total: int, fc_table: np.ndarray, split_table: np.ndarray,
              fixed_table: np.ndarray, cost: np.ndarray, missing: np.ndarray, n_missing: int) -> int:
    """Environment i's iteration cost at its TLP into ``cost[:, i]`` (8 rows: hardware.systems.
    IterationCost's fields), FC placed by ``actions[i]`` as ``fc_mode`` says (FC_ALL: column 0 the
    unit of all three kernels; FC_PER_KERNEL: a unit per kernel; FC_SPLIT: GPU fraction steps per
    kernel), attention on ``attention_units[i]``, for ``live`` requests whose contexts sum to
    ``total`` tokens before the iteration (none is priced at RLP 1). Missing table entries are
    listed in ``missing`` from row ``n_missing`` on; returns the new count."""
    c, t = cm[i], tlp[i]
    safe = max(live, 1)
    tokens = safe * t
    sum_ctx = float(total + live * t)
    if fc_mode == FC_ALL:
        fc_time = fc_table[c, ALL_FC, actions[i, 0], tokens, 0]
        fc_energy = fc_table[c, ALL_FC, actions[i, 0], tokens, 1]
        if np.isnan(fc_time):
            missing[n_missing, 0], missing[n_missing, 1], missing[n_missing, 2] = TABLE_FC, c, ALL_FC
            missing[n_missing, 3], missing[n_missing, 4] = actions[i, 0], tokens
            n_missing += 1
    else:
        fc_time = fc_energy = 0.0
        for k in range(3):  # summed in FC_KERNELS order from zero, as CostModel.iteration does
            if fc_mode == FC_PER_KERNEL:
                kt, ke = fc_table[c, k, actions[i, k], tokens, 0], fc_table[c, k, actions[i, k], tokens, 1]
                table = TABLE_FC
            else:
                kt, ke = split_table[c, k, actions[i, k], tokens, 0], split_table[c, k, actions[i, k], tokens, 1]
                table = TABLE_SPLIT
            if np.isnan(kt):
                missing[n_missing, 0], missing[n_missing, 1], missing[n_missing, 2] = table, c, k
                missing[n_missing, 3], missing[n_missing, 4] = actions[i, k], tokens
                n_missing += 1
            fc_time, fc_energy = fc_time + kt, fc_energy + ke
    u = attention_units[i]
    if np.isnan(fixed_table[c, u, safe, t, 0]):
        missing[n_missing, 0], missing[n_missing, 1], missing[n_missing, 2] = TABLE_FIXED, c, u
        missing[n_missing, 3], missing[n_missing, 4] = safe, t
        n_missing += 1
    p = fixed_table[c, u, safe, t]
    cost[0, i] = fc_time
    cost[1, i] = p[0] + p[2] * sum_ctx
    cost[2, i] = p[4]
    cost[3, i] = p[6]
    cost[4, i] = fc_energy
    cost[5, i] = p[1] + p[3] * sum_ctx
    cost[6, i] = p[5]
    cost[7, i] = p[7]
    return n_missing


@nb.njit(cache=True)
def stochastic_live_context(i: int, input_lengths: np.ndarray, output_lengths: np.ndarray, gen: np.ndarray
                            ) -> tuple[int, int, int]:
    """Environment i's (RLP, context sum, longest context) of a stochastic batch (per-request
    progress ``gen``): the live requests' prompt + generated tokens."""
    live = total = longest = 0
    for j in range(gen.shape[1]):
        if gen[i, j] < output_lengths[i, j]:
            live += 1
            ctx = input_lengths[i, j] + gen[i, j]
            total += ctx
            longest = max(longest, ctx)
    return live, total, longest


@nb.njit(cache=True)
def price_batches(stochastic: bool, fc_mode: int, actions: np.ndarray, attention_units: np.ndarray,
                  cm: np.ndarray, tlp: np.ndarray, size: np.ndarray, first: np.ndarray, generated: np.ndarray,
                  live_input: np.ndarray, live_max_input: np.ndarray, input_lengths: np.ndarray,
                  output_lengths: np.ndarray, gen: np.ndarray, fc_table: np.ndarray, split_table: np.ndarray,
                  fixed_table: np.ndarray, cost: np.ndarray, rlp: np.ndarray, missing: np.ndarray) -> int:
    """One iteration's cost (``price_one``) in every environment, from its batch: lock-step
    (``size``, ``first``, ``generated``, ``live_input``, ``live_max_input``) or, with
    ``stochastic``, per-request progress (``input_lengths``, ``output_lengths``, ``gen``); the other
    layout's arrays are not read. ``rlp`` (N,) gets the live requests before the iteration. Returns
    the number of table entries not computed yet (listed in ``missing``, rows of table and 4
    indices); when it is not 0 the outputs are incomplete and nothing else changed."""
    n_missing = 0
    for i in range(len(cm)):
        if stochastic:
            live, total, _ = stochastic_live_context(i, input_lengths, output_lengths, gen)
        else:
            live, total, _ = lockstep_live_context(size, first, generated, live_input, live_max_input, i)
        rlp[i] = live
        n_missing = price_one(i, fc_mode, actions, attention_units, cm, tlp, live, total, fc_table, split_table,
                              fixed_table, cost, missing, n_missing)
    return n_missing


@nb.njit(cache=True)
def advance_lockstep(tlp: np.ndarray, size: np.ndarray, first: np.ndarray, generated: np.ndarray,
                     next_output: np.ndarray, live_input: np.ndarray, live_max_input: np.ndarray,
                     output_lengths: np.ndarray, prefix_output: np.ndarray, suffix_input: np.ndarray,
                     suffix_max_input: np.ndarray, produced: np.ndarray) -> None:
    """One iteration of every lock-step batch at its TLP, in place (sim.batches.BatchArrays.advance
    without acceptance): ``produced`` (N,) gets the tokens each environment produced."""
    width = output_lengths.shape[1]
    for i in range(len(size)):
        g1 = generated[i] + tlp[i]
        f0 = first[i]
        made = (size[i] - f0) * tlp[i]
        if g1 >= next_output[i]:
            f1 = f0
            while f1 < width and output_lengths[i, f1] <= g1:  # sorted by output length: a prefix finishes
                f1 += 1
            done = prefix_output[i, f1] - prefix_output[i, f0]
            # the requests that finish needed fewer than TLP tokens: g1 - output each fewer
            made -= (f1 - f0) * g1 - done
            next_output[i] = output_lengths[i, min(f1, width - 1)]
            live_input[i] = suffix_input[i, f1]
            live_max_input[i] = suffix_max_input[i, f1]
            first[i] = f1
        generated[i] = g1
        produced[i] = made


# ------------------------------------------------------------------------- stochastic batches
SLOT_SHIFT, STREAM_SHIFT = np.uint64(SLOT_BITS + STREAM_BITS), np.uint64(STREAM_BITS)  # sim.random_streams.bits'


@nb.njit(cache=True)
def uniform_at(key: np.uint64, iteration: int, slot: int, stream: int) -> float:
    """sim.random_streams.uniform for one (key, iteration, slot, stream): the same 53-bit draw."""
    counter = (np.uint64(iteration) << SLOT_SHIFT) | (np.uint64(slot) << STREAM_SHIFT) | np.uint64(stream)
    x = key + (counter + np.uint64(1)) * GOLDEN
    x = (x ^ (x >> np.uint64(30))) * MIX1
    x = (x ^ (x >> np.uint64(27))) * MIX2
    x = x ^ (x >> np.uint64(31))
    return float((x >> np.uint64(11)) + np.uint64(1)) * UNIT


@nb.njit(cache=True)
def normal_at(key: np.uint64, iteration: int, slot: int, stream: int) -> float:
    """sim.random_streams.normal for one draw (Box-Muller on ``stream`` and ``stream + 1``)."""
    u1 = uniform_at(key, iteration, slot, stream)
    u2 = uniform_at(key, iteration, slot, stream + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)

jit_cache.ensure_fresh()  # before any kernel loads from numba's cache: stale caches of changed sources go

@nb.njit(cache=True)
def expected_gain(p: float, tlp: int) -> float:
    """sim.acceptance.expected_gain for one request: sum_{j<tlp} p^j (p to a float power: the C
    library's pow, as numpy's)."""
    if tlp == 1:
        return 1.0
    return (1.0 - p ** float(tlp)) / max(1.0 - p, 1e-12)


@nb.njit(cache=True)
def block_sum(a: np.ndarray, start: int, n: int) -> float:
    """numpy's pairwise summation of a[start:start + n] for n <= 128: eight running sums, combined
    pairwise, then the remainder (numpy's pairwise_sum)."""
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = 8
    while i < n - (n % 8):
        k = start + i
        r0, r1, r2, r3 = r0 + a[k], r1 + a[k + 1], r2 + a[k + 2], r3 + a[k + 3]
        r4, r5, r6, r7 = r4 + a[k + 4], r5 + a[k + 5], r6 + a[k + 6], r7 + a[k + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[start + i]
        i += 1
    return res


@nb.njit(cache=True)
def _halves(n: int) -> int:
    half = n // 2
    return half - half % 8


@nb.njit(cache=True)
def _pairwise1(a: np.ndarray, start: int, n: int) -> float:
    if n <= 128:
        return block_sum(a, start, n)
    half = _halves(n)
    return block_sum(a, start, half) + block_sum(a, start + half, n - half)


@nb.njit(cache=True)
def _pairwise2(a: np.ndarray, start: int, n: int) -> float:
    if n <= 128:
        return block_sum(a, start, n)
    half = _halves(n)
    return _pairwise1(a, start, half) + _pairwise1(a, start + half, n - half)


@nb.njit(cache=True)
def pairwise_sum(a: np.ndarray, start: int, n: int) -> float:
    """numpy's pairwise summation of a[start:start + n] (blocks of up to 128, halves beyond; three
    levels written out, as numba caches no recursion: rows of up to 512)."""
    if n > 512:
        raise ValueError("pairwise_sum: rows of at most 512 elements")
    if n <= 128:
        return block_sum(a, start, n)
    half = _halves(n)
    return _pairwise2(a, start, half) + _pairwise2(a, start + half, n - half)


@nb.njit(cache=True)
def row_sum(a: np.ndarray) -> float:
    """``a.sum()`` of a float64 row as numpy computes it (0 plus its pairwise sum), so sums over
    request slots give numpy's bits."""
    return 0.0 + pairwise_sum(a, 0, len(a))


@nb.njit(cache=True)
def advance_stochastic(i: int, tlp: int, key: np.uint64, iteration: int, probs: np.ndarray,
                       output_lengths: np.ndarray, gen: np.ndarray, last_request_accepted: np.ndarray,
                       last_request_rejected: np.ndarray, last_drafted: np.ndarray,
                       last_accepted: np.ndarray) -> int:
    """One iteration of environment i's stochastic batch at speculation length ``tlp`` (BatchArrays.
    advance with sim.acceptance.leading_accepts on random_streams' acceptance draws): each live
    request j accepts its leading drafts with probability probs[j] each; returns the tokens gained."""
    gained_total = 0
    live_count = 0
    accepted_total = 0
    for j in range(output_lengths.shape[1]):
        if gen[i, j] < output_lengths[i, j]:
            live_count += 1
            u = uniform_at(key, iteration, j, ACCEPT_STREAM)
            log_p = np.log(probs[j])
            drafts = np.floor(np.log(u) / log_p) if log_p < 0 else np.inf
            leading = int(min(drafts, tlp - 1))
            gained = min(1 + leading, output_lengths[i, j] - gen[i, j])
            gen[i, j] += gained
            gained_total += gained
            accepted = leading if tlp > 1 else 0
            last_request_accepted[i, j] = accepted
            last_request_rejected[i, j] = tlp > 1 and leading < tlp - 1
            accepted_total += accepted
        else:
            last_request_accepted[i, j] = 0
            last_request_rejected[i, j] = False
    last_drafted[i] = live_count * (tlp - 1)
    last_accepted[i] = accepted_total
    return gained_total


@nb.njit(cache=True)
def advance_drift(i: int, key: np.uint64, iteration: int, output_lengths: np.ndarray, gen: np.ndarray,
                  drift: np.ndarray, rho: float, drift_std: float) -> None:
    """One iteration of the AR(1) acceptance drift of environment i's live requests
    (sim.acceptance.DriftingAcceptance.advance)."""
    keep = np.sqrt(1.0 - rho**2)
    for j in range(output_lengths.shape[1]):
        if gen[i, j] < output_lengths[i, j]:
            noise = drift_std * normal_at(key, iteration, j, DRIFT_STREAM)
            drift[i, j] = rho * drift[i, j] + keep * noise
