"""Compiled kernels of online serving (numba): one continuous-batching iteration of a server.

The one implementation of sim.online's serving loop (read its module docstring for the
iteration and its assumptions), over flat arrays of N servers so that one call steps many
(sim.serve_engine.ServeEngine holds them; ``OnlineServer`` is its N = 1 face):

- ``req`` (N, REQUEST_FIELDS, R) float64: per request, in arrival order, the fields named by the
  R_* indices (arrival s, prompt and output tokens, tokens generated, admission / first-token /
  finish s, joules attributed, KV bytes reserved). Token counts are whole numbers held exactly.
- ``srv`` (N, SERVER_FIELDS) float64: per server, the S_* fields (clock s, counters, KV bytes in
  use, the running requests' total context, settings: size, scored_from, KV capacity B,
  acceptance probability, latency targets s, cost-model index).
- ``running`` (N, max_batch) int64: indices of the running requests, in admission order.
- ``decode_table`` (models, max_batch + 1, tlps + 1, 2, 4): per (RLP, TLP, FC unit) the decoding
  iteration's (s at zero context, s per context token, J at zero context, J per context token),
  CostModel.iteration being affine in the context; ``prefill_table`` (models, tokens, 5): per
  prompt-token count the CostModel.prefill_terms. Both NaN until computed: an iteration that
  needs a missing entry writes it to ``missing`` and changes nothing; the caller fills it from the
  cost model and runs again.

Speculative drafts are accepted from sim.random_streams' counter-based draws (the iteration and
the request's position in the running batch select the draw), so a server's randomness is its
key alone and N servers draw what N single servers draw.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from hardware.systems import prefill_from_terms
from sim.kernels import uniform_at
from sim.random_streams import ACCEPT_STREAM

# per-request fields of ``req``
R_ARRIVAL, R_LIN, R_LOUT, R_GENERATED, R_ADMITTED_S, R_FIRST_TOKEN_S, R_FINISH_S, R_ENERGY_J, R_KV_BYTES = range(9)
REQUEST_FIELDS = 9
# per-server fields of ``srv``: state, then settings
(S_TIME, S_ARRIVED, S_NEXT, S_RUNNING, S_KV_USED, S_FINISHED, S_SCORED_FINISHED, S_SCORED_DUE, S_SCORED_MADE,
 S_SUM_CONTEXT, S_ITERATIONS, S_SIZE, S_SCORED_FROM, S_KV_CAPACITY, S_ACCEPT_P, S_TTFT_TARGET, S_TPOT_TARGET,
 S_MODEL) = range(18)
SERVER_FIELDS = 18
# what one iteration did (``out`` (N, OUT_FIELDS)): times s, energies J
(O_START, O_END, O_PREFILL_S, O_DECODE_S, O_ENERGY, O_RLP, O_ADMITTED, O_FIRST_ADMITTED, O_FINISHED, O_TOKENS,
 O_ACCEPTED_SHARE, O_AREA, O_SCORED_AREA, O_SCORED_ENERGY, O_ARRIVALS, O_GOOD, O_MISSES) = range(17)
OUT_FIELDS = 17
# ``missing`` (N, 4) rows: (kind, model, a, b); kind MISSING_PREFILL: a = prompt tokens;
# MISSING_DECODE: a = RLP, b = TLP * 2 + unit
NOTHING_MISSING, MISSING_PREFILL, MISSING_DECODE = 0, 1, 2

prefill_cost = nb.njit(cache=True)(prefill_from_terms)  # hardware.systems' formula, compiled


@nb.njit(cache=True)
def arrived_by(req: np.ndarray, srv: np.ndarray, i: int, until: float) -> int:
    """How many of server i's requests have arrived by ``until`` s (its arrival counter moved on)."""
    arrived, size = int(srv[i, S_ARRIVED]), int(srv[i, S_SIZE])
    while arrived < size and req[i, R_ARRIVAL, arrived] <= until:
        arrived += 1
    return arrived


@nb.njit(cache=True)
def admissible_upto(req: np.ndarray, srv: np.ndarray, i: int, arrived: int, max_batch: int) -> int:
    """How many queued requests of server i (indices next..arrived-1) fit FCFS beside the running
    ones: the batch limit and the KV capacity, stopping at the first that does not fit."""
    room = max_batch - int(srv[i, S_RUNNING])
    free = srv[i, S_KV_CAPACITY] - srv[i, S_KV_USED]
    count = 0
    j = int(srv[i, S_NEXT])
    while j < arrived:
        if count >= room or req[i, R_KV_BYTES, j] > free:
            break
        free -= req[i, R_KV_BYTES, j]
        count += 1
        j += 1
    return count


@nb.njit(cache=True)
def admissible(req: np.ndarray, srv: np.ndarray, i: int, max_batch: int) -> int:
    """How many queued requests of server i fit now (OnlineServer.admissible)."""
    return admissible_upto(req, srv, i, int(srv[i, S_ARRIVED]), max_batch)


@nb.njit(cache=True)
def _arrive(req: np.ndarray, srv: np.ndarray, i: int, arrived: int) -> None:
    """Move server i's arrival counter to ``arrived``, counting the scored requests' tokens due."""
    scored_from = int(srv[i, S_SCORED_FROM])
    for k in range(int(srv[i, S_ARRIVED]), arrived):
        if k >= scored_from:
            srv[i, S_SCORED_DUE] += req[i, R_LOUT, k]
    srv[i, S_ARRIVED] = arrived


@nb.njit(cache=True)
def iterate(i: int, unit: int, tlp: int, admit: int, req: np.ndarray, srv: np.ndarray, running: np.ndarray,
            keys: np.ndarray, decode_table: np.ndarray, prefill_table: np.ndarray, out: np.ndarray,
            finished: np.ndarray, missing: np.ndarray) -> bool:
    """One iteration of server i: FC on ``unit`` (0 FC-PIM, 1 GPU; checked by the caller), ``tlp``
    tokens verified per request, up to ``admit`` queued requests admitted. Writes ``out[i]`` and the
    finished requests' indices to ``finished[i, :out[i, O_FINISHED]]``. Returns False, having changed
    nothing, when a cost-table entry is missing (listed in ``missing[i]``)."""
    max_batch = running.shape[1]
    model = int(srv[i, S_MODEL])
    n_running = int(srv[i, S_RUNNING])
    start = srv[i, S_TIME]
    arrived0 = arrived = int(srv[i, S_ARRIVED])
    nxt = int(srv[i, S_NEXT])
    if n_running == 0 and nxt == arrived:  # idle: jump to the next arrival
        start = max(start, req[i, R_ARRIVAL, arrived])
        arrived = arrived_by(req, srv, i, start)
    admit = min(admit, admissible_upto(req, srv, i, arrived, max_batch))
    if n_running == 0 and nxt < arrived:
        admit = max(admit, 1)  # never idle with work waiting (one request always fits: checked at load)
    # price first: nothing changes until every table entry is there
    prompt_tokens = 0
    causal = 0.0
    for j in range(nxt, nxt + admit):
        length = req[i, R_LIN, j]
        prompt_tokens += int(length)
        causal += length * (length + 1.0) / 2.0
    missing[i, 0] = NOTHING_MISSING
    if prompt_tokens > 0 and (prompt_tokens >= prefill_table.shape[1]
                              or np.isnan(prefill_table[model, prompt_tokens, 0])):
        missing[i, 0], missing[i, 1], missing[i, 2], missing[i, 3] = MISSING_PREFILL, model, prompt_tokens, 0
        return False
    if n_running > 0 and (tlp >= decode_table.shape[2] or np.isnan(decode_table[model, n_running, tlp, unit, 0])):
        missing[i, 0], missing[i, 1], missing[i, 2], missing[i, 3] = MISSING_DECODE, model, n_running, tlp * 2 + unit
        return False

    _arrive(req, srv, i, arrived)  # the idle jump's arrivals (none otherwise)
    n_start = arrived - int(srv[i, S_FINISHED])
    scored_from = int(srv[i, S_SCORED_FROM])
    scored_start = max(0, arrived - scored_from) - int(srv[i, S_SCORED_FINISHED])
    prefill_s = energy = scored_energy = 0.0
    tokens = 0
    if admit > 0:
        p_time, p_energy = prefill_cost(prefill_table[model, prompt_tokens], causal)
        prefill_s, energy = p_time, p_energy
        kv_new = 0.0
        for j in range(nxt, nxt + admit):
            share = p_energy * req[i, R_LIN, j] / prompt_tokens
            req[i, R_ENERGY_J, j] += share
            if j >= scored_from:
                scored_energy += share
                srv[i, S_SCORED_MADE] += 1.0
            kv_new += req[i, R_KV_BYTES, j]
            req[i, R_ADMITTED_S, j] = start
            req[i, R_FIRST_TOKEN_S, j] = start + prefill_s
            req[i, R_GENERATED, j] = 1.0
        srv[i, S_KV_USED] += kv_new
        tokens += admit

    decode_s, accepted_share = 0.0, 1.0
    if n_running > 0:
        c = decode_table[model, n_running, tlp, unit]
        context = srv[i, S_SUM_CONTEXT]
        dt, de = c[0] + c[1] * context, c[2] + c[3] * context
        p = srv[i, S_ACCEPT_P]
        iteration = int(srv[i, S_ITERATIONS])
        kept_total = 0
        produced = 0
        for slot in range(n_running):
            j = running[i, slot]
            if p >= 1.0 or tlp == 1:
                kept = tlp
            else:
                drafts = np.floor(np.log(uniform_at(keys[i], iteration, slot, ACCEPT_STREAM)) / np.log(p))
                kept = 1 + int(min(drafts, tlp - 1))
            made = min(kept, int(req[i, R_LOUT, j] - req[i, R_GENERATED, j]))
            req[i, R_GENERATED, j] += made
            kept_total += kept
            produced += made
            finished[i, slot] = made  # scratch: each request's tokens, read back below
        for slot in range(n_running):
            j = running[i, slot]
            made = finished[i, slot]
            share = de * made / produced
            req[i, R_ENERGY_J, j] += share
            if j >= scored_from:
                scored_energy += share
                srv[i, S_SCORED_MADE] += made
        accepted_share = kept_total / (n_running * tlp)
        decode_s, energy = dt, energy + de
        tokens += produced

    end = start + prefill_s + decode_s
    srv[i, S_TIME] = end
    # the running batch: the old requests, then the admitted ones; the finished leave
    for j in range(nxt, nxt + admit):
        running[i, n_running] = j
        n_running += 1
    srv[i, S_NEXT] = nxt + admit
    kept_count = n_finished = good = misses = 0
    context = 0.0
    kv_freed = 0.0
    ttft_target, tpot_target = srv[i, S_TTFT_TARGET], srv[i, S_TPOT_TARGET]
    for slot in range(n_running):
        j = running[i, slot]
        if req[i, R_GENERATED, j] >= req[i, R_LOUT, j]:
            req[i, R_FINISH_S, j] = end
            kv_freed += req[i, R_KV_BYTES, j]
            finished[i, n_finished] = j
            n_finished += 1
            ttft = req[i, R_FIRST_TOKEN_S, j] - req[i, R_ARRIVAL, j]
            lout = req[i, R_LOUT, j]
            tpot = (end - req[i, R_FIRST_TOKEN_S, j]) / max(lout - 1.0, 1.0) if lout > 1 else 0.0
            if ttft <= ttft_target and tpot <= tpot_target:
                if j >= scored_from:
                    good += 1
            else:
                misses += 1
            if j >= scored_from:
                srv[i, S_SCORED_FINISHED] += 1.0
        else:
            running[i, kept_count] = j
            kept_count += 1
            context += req[i, R_LIN, j] + req[i, R_GENERATED, j]
    srv[i, S_RUNNING] = kept_count
    srv[i, S_SUM_CONTEXT] = context
    if n_finished:
        srv[i, S_KV_USED] = max(0.0, srv[i, S_KV_USED] - kv_freed)
        srv[i, S_FINISHED] += n_finished
    # arrivals during the iteration; requests in the system over [start, end]: those at the start
    # throughout, the arrivals from their arrival on (the finished leave at the end)
    before = arrived
    after = arrived_by(req, srv, i, end)
    _arrive(req, srv, i, after)
    waited = scored_waited = 0.0
    for k in range(before, after):
        w = end - req[i, R_ARRIVAL, k]
        waited += w
        if k >= scored_from:
            scored_waited += w
    srv[i, S_ITERATIONS] += 1.0
    o = out[i]
    o[O_START], o[O_END], o[O_PREFILL_S], o[O_DECODE_S], o[O_ENERGY] = start, end, prefill_s, decode_s, energy
    o[O_RLP], o[O_ADMITTED], o[O_FIRST_ADMITTED], o[O_FINISHED] = n_running - admit, admit, nxt, n_finished
    o[O_TOKENS], o[O_ACCEPTED_SHARE] = tokens, accepted_share
    o[O_AREA] = n_start * (end - start) + waited
    o[O_SCORED_AREA] = scored_start * (end - start) + scored_waited
    o[O_SCORED_ENERGY], o[O_ARRIVALS], o[O_GOOD], o[O_MISSES] = scored_energy, after - arrived0, good, misses
    return True


@nb.njit(cache=True)
def iterate_all(units: np.ndarray, tlps: np.ndarray, admits: np.ndarray, pending: np.ndarray, req: np.ndarray,
                srv: np.ndarray, running: np.ndarray, keys: np.ndarray, decode_table: np.ndarray,
                prefill_table: np.ndarray, out: np.ndarray, finished: np.ndarray, missing: np.ndarray) -> int:
    """:func:`iterate` on every server with ``pending[i]``, which is cleared for those that ran.
    Returns how many are left waiting for a cost-table entry."""
    left = 0
    for i in range(len(pending)):
        if pending[i]:
            if iterate(i, units[i], tlps[i], admits[i], req, srv, running, keys, decode_table, prefill_table, out,
                       finished, missing):
                pending[i] = False
            else:
                left += 1
    return left
