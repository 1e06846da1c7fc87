"""Compiled kernels of the static-batch dynamics (numba): pricing one iteration and advancing it.

Each function loops over environments on flat arrays (sim.batches' lock-step layout, the cost
tables of hardware.cost_tables) and does, per environment, the same floating-point operations in
the same order as the numpy code it replaced, so results are bit-identical. They are
``@numba.njit(cache=True)``: compiled once per installation into numba's on-disk cache, and
plain Python under ``NUMBA_DISABLE_JIT=1`` (for debugging; the same numbers, slower).

Table entries that are not computed yet (NaN) are not filled here: :func:`price_lockstep` lists
them in ``missing`` and returns how many, having changed nothing; the caller fills them from
the cost model and prices again (hardware.cost_tables fills tables lazily from CostModel).
"""

from __future__ import annotations

import numba as nb
import numpy as np

FC_ALL, FC_PER_KERNEL, FC_SPLIT = 0, 1, 2  # how an action places FC: all kernels on one unit, per kernel, split
TABLE_FC, TABLE_FIXED, TABLE_SPLIT = 0, 1, 2  # which table a missing entry belongs to
ALL_FC = 3  # the fc table's "every FC kernel" index (hardware.cost_tables.ALL_FC)


@nb.njit(cache=True)
def lockstep_live_context(size: np.ndarray, first: np.ndarray, generated: np.ndarray, live_input: np.ndarray,
                          live_max_input: np.ndarray, i: int) -> tuple[int, int, int]:
    """Environment i's (RLP, sum, max) of the live requests' prompt + generated tokens."""
    live = size[i] - first[i]
    total = live_input[i] + live * generated[i]
    longest = live_max_input[i] + generated[i] if live > 0 else 0
    return live, total, longest


@nb.njit(cache=True)
def price_lockstep(fc_mode: int, actions: np.ndarray, attention_units: np.ndarray, cm: np.ndarray,
                   tlp: np.ndarray, size: np.ndarray, first: np.ndarray, generated: np.ndarray,
                   live_input: np.ndarray, live_max_input: np.ndarray, fc_table: np.ndarray,
                   split_table: np.ndarray, fixed_table: np.ndarray, cost: np.ndarray, rlp: np.ndarray,
                   missing: np.ndarray) -> int:
    """One iteration's cost in every environment at its TLP, FC placed by ``actions`` (N, 3):
    ``fc_mode`` FC_ALL (column 0: the unit of all three kernels), FC_PER_KERNEL (unit per kernel)
    or FC_SPLIT (GPU fraction steps per kernel); attention on ``attention_units`` (N,).

    Writes ``cost`` (8, N: hardware.systems.IterationCost's fields by row) and ``rlp`` (N,), the live
    requests before the iteration (an environment with none is priced at RLP 1). Returns the
    number of table entries not computed yet, listed in ``missing`` (rows of table, 4 indices);
    when it is not 0 the outputs are incomplete and nothing else changed."""
    n_missing = 0
    for i in range(len(cm)):
        live, total, _ = lockstep_live_context(size, first, generated, live_input, live_max_input, i)
        rlp[i] = live
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
