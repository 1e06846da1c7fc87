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
(R_ARRIVAL, R_LIN, R_LOUT, R_GENERATED, R_ADMITTED_S, R_FIRST_TOKEN_S, R_FINISH_S, R_ENERGY_J, R_KV_BYTES,
 R_KV_HELD) = range(10)
REQUEST_FIELDS = 10
# per-server fields of ``srv``: state, then settings
(S_TIME, S_ARRIVED, S_NEXT, S_RUNNING, S_KV_USED, S_FINISHED, S_SCORED_FINISHED, S_SCORED_DUE, S_SCORED_MADE,
 S_SUM_CONTEXT, S_ITERATIONS, S_SIZE, S_SCORED_FROM, S_KV_CAPACITY, S_ACCEPT_P, S_TTFT_TARGET, S_TPOT_TARGET,
 S_MODEL, S_PAGED, S_BLOCK_BYTES, S_BLOCK_TOKENS, S_WATERMARK, S_PREEMPTED, S_PREEMPTIONS,
 S_RECOMPUTED) = range(25)
SERVER_FIELDS = 25
# rows of ``lists`` (N, LISTS, max_batch) int64: the last iteration's finished and admitted requests,
# and the preempted requests waiting to be readmitted (a stack: the last preempted first)
L_FINISHED, L_ADMITTED, L_PREEMPTED = range(3)
LISTS = 3
# what one iteration did (``out`` (N, OUT_FIELDS)): times s, energies J
(O_START, O_END, O_PREFILL_S, O_DECODE_S, O_ENERGY, O_RLP, O_ADMITTED, O_PREEMPTED, O_FINISHED, O_TOKENS,
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
def blocks_bytes(srv: np.ndarray, i: int, tokens: float) -> float:
    """Bytes of the KV blocks that ``tokens`` tokens of context take on server i (paged KV)."""
    block = srv[i, S_BLOCK_TOKENS]
    return np.ceil(tokens / block) * srv[i, S_BLOCK_BYTES]


@nb.njit(cache=True)
def waiting_at(srv: np.ndarray, lists: np.ndarray, i: int, k: int) -> int:
    """The k-th waiting request of server i: the preempted ones first (the last preempted first, as
    vLLM puts them back at the queue's head), then the queue in arrival order."""
    n_pre = int(srv[i, S_PREEMPTED])
    if k < n_pre:
        return lists[i, L_PREEMPTED, n_pre - 1 - k]
    return int(srv[i, S_NEXT]) + k - n_pre


@nb.njit(cache=True)
def admissible_upto(req: np.ndarray, srv: np.ndarray, lists: np.ndarray, i: int, arrived: int, max_batch: int,
                    free: float) -> int:
    """How many waiting requests of server i (preempted, then queued up to index ``arrived``) fit
    FCFS beside the running ones in ``free`` bytes: the batch limit, then the KV cache (reserve:
    each one's full length; paged: the blocks of its context plus one token, keeping the
    watermark free), stopping at the first that does not fit."""
    room = max_batch - int(srv[i, S_RUNNING])
    paged = srv[i, S_PAGED] > 0
    waiting = int(srv[i, S_PREEMPTED]) + arrived - int(srv[i, S_NEXT])
    count = 0
    while count < waiting and count < room:
        j = waiting_at(srv, lists, i, count)
        if paged:
            need = blocks_bytes(srv, i, req[i, R_LIN, j] + req[i, R_GENERATED, j] + 1.0)
            if free - need < srv[i, S_WATERMARK]:
                break
        else:
            need = req[i, R_KV_BYTES, j]
            if need > free:
                break
        free -= need
        count += 1
    return count


@nb.njit(cache=True)
def admissible(req: np.ndarray, srv: np.ndarray, lists: np.ndarray, i: int, max_batch: int) -> int:
    """How many waiting requests of server i fit now (OnlineServer.admissible)."""
    return admissible_upto(req, srv, lists, i, int(srv[i, S_ARRIVED]), max_batch,
                           srv[i, S_KV_CAPACITY] - srv[i, S_KV_USED])


@nb.njit(cache=True)
def admissible_all(req: np.ndarray, srv: np.ndarray, lists: np.ndarray, max_batch: int, out: np.ndarray) -> None:
    """:func:`admissible` of every server into ``out`` (N,) (action masks of N environments at once)."""
    for i in range(len(srv)):
        out[i] = admissible(req, srv, lists, i, max_batch)


@nb.njit(cache=True)
def _arrive(req: np.ndarray, srv: np.ndarray, i: int, arrived: int) -> None:
    """Move server i's arrival counter to ``arrived``, counting the scored requests' tokens due."""
    scored_from = int(srv[i, S_SCORED_FROM])
    for k in range(int(srv[i, S_ARRIVED]), arrived):
        if k >= scored_from:
            srv[i, S_SCORED_DUE] += req[i, R_LOUT, k]
    srv[i, S_ARRIVED] = arrived


@nb.njit(cache=True)
def victims(req: np.ndarray, srv: np.ndarray, running: np.ndarray, i: int, tlp: int) -> tuple[int, float]:
    """Paged KV: how many running requests of server i, the most recently admitted first, must be
    preempted so that the others' contexts can grow by ``tlp`` tokens this iteration, and the
    bytes those that stay need beyond what they hold."""
    n = int(srv[i, S_RUNNING])
    free = srv[i, S_KV_CAPACITY] - srv[i, S_KV_USED]
    need = 0.0
    for slot in range(n):
        j = running[i, slot]
        need += blocks_bytes(srv, i, req[i, R_LIN, j] + req[i, R_GENERATED, j] + tlp) - req[i, R_KV_HELD, j]
    count = 0
    while need > free and count < n - 1:  # one request alone always fits (checked at load)
        j = running[i, n - 1 - count]
        need -= blocks_bytes(srv, i, req[i, R_LIN, j] + req[i, R_GENERATED, j] + tlp) - req[i, R_KV_HELD, j]
        free += req[i, R_KV_HELD, j]
        count += 1
    return count, need


@nb.njit(cache=True)
def iterate(i: int, unit: int, tlp: int, admit: int, req: np.ndarray, srv: np.ndarray, running: np.ndarray,
            keys: np.ndarray, decode_table: np.ndarray, prefill_table: np.ndarray, out: np.ndarray,
            lists: np.ndarray, missing: np.ndarray) -> bool:
    """One iteration of server i: FC on ``unit`` (0 FC-PIM, 1 GPU; checked by the caller), ``tlp``
    tokens verified per request, up to ``admit`` waiting requests admitted. With paged KV, running
    requests whose contexts cannot grow are first preempted (recompute: their blocks freed, back
    to the head of the queue; nothing is admitted in such an iteration, as vLLM does). Writes
    ``out[i]`` and the finished and admitted requests to ``lists[i]``. Returns False, having
    changed nothing, when a cost-table entry is missing (listed in ``missing[i]``)."""
    max_batch = running.shape[1]
    model = int(srv[i, S_MODEL])
    paged = srv[i, S_PAGED] > 0
    n_running = int(srv[i, S_RUNNING])
    start = srv[i, S_TIME]
    arrived0 = arrived = int(srv[i, S_ARRIVED])
    nxt = int(srv[i, S_NEXT])
    n_pre = int(srv[i, S_PREEMPTED])
    if n_running == 0 and nxt == arrived and n_pre == 0:  # idle: jump to the next arrival
        start = max(start, req[i, R_ARRIVAL, arrived])
        arrived = arrived_by(req, srv, i, start)
    n_victims, growth = victims(req, srv, running, i, tlp) if paged and n_running > 0 else (0, 0.0)
    free = srv[i, S_KV_CAPACITY] - srv[i, S_KV_USED]
    if paged:
        for slot in range(n_running - n_victims, n_running):
            free += req[i, R_KV_HELD, running[i, slot]]
        free -= growth
    n_running -= n_victims  # the requests decoded this iteration
    srv[i, S_RUNNING] = n_running  # (restored below if an entry is missing)
    admit = 0 if n_victims else min(admit, admissible_upto(req, srv, lists, i, arrived, max_batch, free))
    waiting = n_pre + arrived - nxt
    if n_running == 0 and waiting > 0:
        admit = max(admit, 1)  # never idle with work waiting (one request always fits: checked at load)
    # price first: nothing changes until every table entry is there
    prompt_tokens = 0
    causal = 0.0
    for k in range(admit):
        j = waiting_at(srv, lists, i, k)
        length = req[i, R_LIN, j] + req[i, R_GENERATED, j]  # a preempted request recomputes its context
        prompt_tokens += int(length)
        causal += length * (length + 1.0) / 2.0
    missing[i, 0] = NOTHING_MISSING
    if prompt_tokens > 0 and (prompt_tokens >= prefill_table.shape[1]
                              or np.isnan(prefill_table[model, prompt_tokens, 0])):
        missing[i, 0], missing[i, 1], missing[i, 2], missing[i, 3] = MISSING_PREFILL, model, prompt_tokens, 0
    elif n_running > 0 and (tlp >= decode_table.shape[2] or np.isnan(decode_table[model, n_running, tlp, unit, 0])):
        missing[i, 0], missing[i, 1], missing[i, 2], missing[i, 3] = MISSING_DECODE, model, n_running, tlp * 2 + unit
    if missing[i, 0] != NOTHING_MISSING:
        srv[i, S_RUNNING] = n_running + n_victims
        return False

    _arrive(req, srv, i, arrived)  # the idle jump's arrivals (none otherwise)
    n_start = arrived - int(srv[i, S_FINISHED])
    scored_from = int(srv[i, S_SCORED_FROM])
    scored_start = max(0, arrived - scored_from) - int(srv[i, S_SCORED_FINISHED])
    for v in range(n_victims):  # preempted: the last admitted first, stacked so that it is readmitted last
        j = running[i, n_running + n_victims - 1 - v]
        srv[i, S_KV_USED] -= req[i, R_KV_HELD, j]
        req[i, R_KV_HELD, j] = 0.0
        lists[i, L_PREEMPTED, n_pre] = j
        n_pre += 1
    srv[i, S_PREEMPTED] = n_pre
    srv[i, S_PREEMPTIONS] += n_victims
    prefill_s = energy = scored_energy = 0.0
    tokens = 0
    new_pre = min(admit, n_pre)  # readmitted preempted requests (from the top of the stack)
    for k in range(admit):
        lists[i, L_ADMITTED, k] = waiting_at(srv, lists, i, k)
    if admit > 0:
        p_time, p_energy = prefill_cost(prefill_table[model, prompt_tokens], causal)
        prefill_s, energy = p_time, p_energy
        kv_new = 0.0
        for k in range(admit):
            j = lists[i, L_ADMITTED, k]
            gen = req[i, R_GENERATED, j]
            share = p_energy * (req[i, R_LIN, j] + gen) / prompt_tokens
            req[i, R_ENERGY_J, j] += share
            if j >= scored_from:
                scored_energy += share
                srv[i, S_SCORED_MADE] += 1.0
            held = blocks_bytes(srv, i, req[i, R_LIN, j] + gen + 1.0) if paged else req[i, R_KV_BYTES, j]
            req[i, R_KV_HELD, j] = held
            kv_new += held
            if gen == 0:  # a new request: its first token
                req[i, R_ADMITTED_S, j] = start
                req[i, R_FIRST_TOKEN_S, j] = start + prefill_s
            else:
                srv[i, S_RECOMPUTED] += gen
            req[i, R_GENERATED, j] = gen + 1.0
        srv[i, S_KV_USED] += kv_new
        tokens += admit
    srv[i, S_PREEMPTED] = n_pre - new_pre
    srv[i, S_NEXT] = nxt + admit - new_pre

    decode_s, accepted_share = 0.0, 1.0
    finished = lists[i, L_FINISHED]
    if n_running > 0:
        c = decode_table[model, n_running, tlp, unit]
        context = 0.0
        for slot in range(n_running):
            j = running[i, slot]
            context += req[i, R_LIN, j] + req[i, R_GENERATED, j]
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
            finished[slot] = made  # scratch: each request's tokens, read back below
        for slot in range(n_running):
            j = running[i, slot]
            made = finished[slot]
            share = de * made / produced
            req[i, R_ENERGY_J, j] += share
            if j >= scored_from:
                scored_energy += share
                srv[i, S_SCORED_MADE] += made
            if paged:  # the blocks of its context now
                held = blocks_bytes(srv, i, req[i, R_LIN, j] + req[i, R_GENERATED, j])
                srv[i, S_KV_USED] += held - req[i, R_KV_HELD, j]
                req[i, R_KV_HELD, j] = held
        accepted_share = kept_total / (n_running * tlp)
        decode_s, energy = dt, energy + de
        tokens += produced

    end = start + prefill_s + decode_s
    srv[i, S_TIME] = end
    # the running batch: the old requests, then the admitted ones; the finished leave
    n_decoded = n_running
    for k in range(admit):
        running[i, n_running] = lists[i, L_ADMITTED, k]
        n_running += 1
    kept_count = n_finished = good = misses = 0
    context = 0.0
    kv_freed = 0.0
    ttft_target, tpot_target = srv[i, S_TTFT_TARGET], srv[i, S_TPOT_TARGET]
    for slot in range(n_running):
        j = running[i, slot]
        if req[i, R_GENERATED, j] >= req[i, R_LOUT, j]:
            req[i, R_FINISH_S, j] = end
            kv_freed += req[i, R_KV_HELD, j]
            req[i, R_KV_HELD, j] = 0.0
            finished[n_finished] = j
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
    o[O_RLP], o[O_ADMITTED], o[O_PREEMPTED], o[O_FINISHED] = n_decoded, admit, n_victims, n_finished
    o[O_TOKENS], o[O_ACCEPTED_SHARE] = tokens, accepted_share
    o[O_AREA] = n_start * (end - start) + waited
    o[O_SCORED_AREA] = scored_start * (end - start) + scored_waited
    o[O_SCORED_ENERGY], o[O_ARRIVALS], o[O_GOOD], o[O_MISSES] = scored_energy, after - arrived0, good, misses
    return True


@nb.njit(cache=True)
def iterate_all(units: np.ndarray, tlps: np.ndarray, admits: np.ndarray, pending: np.ndarray, req: np.ndarray,
                srv: np.ndarray, running: np.ndarray, keys: np.ndarray, decode_table: np.ndarray,
                prefill_table: np.ndarray, out: np.ndarray, lists: np.ndarray, missing: np.ndarray) -> int:
    """:func:`iterate` on every server with ``pending[i]``, which is cleared for those that ran.
    Returns how many are left waiting for a cost-table entry."""
    left = 0
    for i in range(len(pending)):
        if pending[i]:
            if iterate(i, units[i], tlps[i], admits[i], req, srv, running, keys, decode_table, prefill_table, out,
                       lists, missing):
                pending[i] = False
            else:
                left += 1
    return left
