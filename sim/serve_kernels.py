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
 R_KV_HELD, R_PREFILL_LEFT) = range(11)
REQUEST_FIELDS = 11
# per-server fields of ``srv``: state, then settings
(S_TIME, S_ARRIVED, S_NEXT, S_RUNNING, S_KV_USED, S_FINISHED, S_SCORED_FINISHED, S_SCORED_DUE, S_SCORED_MADE,
 S_SUM_CONTEXT, S_ITERATIONS, S_SIZE, S_SCORED_FROM, S_KV_CAPACITY, S_ACCEPT_P, S_TTFT_TARGET, S_TPOT_TARGET,
 S_MODEL, S_PAGED, S_BLOCK_BYTES, S_BLOCK_TOKENS, S_WATERMARK, S_PREEMPTED, S_PREEMPTIONS,
 S_RECOMPUTED, S_TOKEN_BUDGET, S_PREFILLING, S_PREFILL_BACKLOG, S_ORDER, S_SKIPPED, S_WAITING) = range(31)
SERVER_FIELDS = 31
# rows of ``lists`` (N, LISTS, max_batch) int64: the last iteration's finished and admitted requests,
# the preempted requests waiting to be readmitted (a stack: the last preempted first), and the
# requests :func:`pick` chose to admit next
L_FINISHED, L_ADMITTED, L_PREEMPTED, L_PICKED, L_CHUNKS = range(5)
LISTS = 5
# the order in which queued requests are admitted and (chunked prefill) prefilling ones get the
# iteration's budget (``S_ORDER``; preempted requests are readmitted first): first come first served;
# the shortest prompt (left to compute) first; the ones still within their TTFT target first
ORDER_FCFS, ORDER_SHORTEST, ORDER_DEADLINE = 0, 1, 2
# what one iteration did (``out`` (N, OUT_FIELDS)): times s, energies J
(O_START, O_END, O_PREFILL_S, O_DECODE_S, O_ENERGY, O_RLP, O_ADMITTED, O_PREEMPTED, O_FINISHED, O_TOKENS,
 O_ACCEPTED_SHARE, O_AREA, O_SCORED_AREA, O_SCORED_ENERGY, O_ARRIVALS, O_GOOD, O_MISSES,
 O_PREFILL_TOKENS) = range(18)
OUT_FIELDS = 18
# what the next iteration will do, as :func:`price` plans it (``plan`` (N, PLAN_FIELDS)): the start s,
# arrivals counted by then, preempted requests and the bytes the others' growth needs, admissions,
# decoded requests (RLP), prompt tokens computed and their cost, the decoding's cost (s, J)
(P_START, P_ARRIVED, P_VICTIMS, P_GROWTH, P_ADMIT, P_DECODED, P_PREFILL_TOKENS, P_PREFILL_S, P_PREFILL_J,
 P_DECODE_S, P_DECODE_J) = range(11)
PLAN_FIELDS = 11
# ``missing`` (N, 4) rows: (kind, model, a, b); kind MISSING_PREFILL: a = prompt tokens;
# MISSING_DECODE: a = RLP, b = TLP * 2 + unit; MISSING_FC: a = tokens (all FC kernels on the GPUs)
NOTHING_MISSING, MISSING_PREFILL, MISSING_DECODE, MISSING_FC = 0, 1, 2, 3
FC_ALL, FC_GPU = 3, 1  # the fc table's (hardware.cost_tables) kernel index of all three FC kernels, GPU unit

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
def waiting(srv: np.ndarray, i: int) -> int:
    """How many requests of server i wait: the preempted ones and the arrived ones not admitted."""
    return int(srv[i, S_PREEMPTED] + srv[i, S_ARRIVED] - srv[i, S_NEXT] - srv[i, S_SKIPPED])


@nb.njit(cache=True)
def _order_key(req: np.ndarray, srv: np.ndarray, i: int, j: int, now: float) -> float:
    """Queued request j's place in server i's admission order (ties by arrival): its prompt (the
    shortest first), or whether it has already waited past its TTFT target (the others first)."""
    order = int(srv[i, S_ORDER])
    if order == ORDER_SHORTEST:
        return req[i, R_LIN, j]
    if order == ORDER_DEADLINE:
        return 1.0 if now - req[i, R_ARRIVAL, j] > srv[i, S_TTFT_TARGET] else 0.0
    return 0.0


@nb.njit(cache=True)
def _next_queued(req: np.ndarray, srv: np.ndarray, i: int, arrived: int, now: float, key: float, after: int) -> int:
    """The queued request (index below ``arrived``, not admitted) that comes next in server i's
    order after the one with (``key``, ``after``), or -1: the smallest (key, index) above it."""
    nxt = int(srv[i, S_NEXT])
    if int(srv[i, S_ORDER]) == ORDER_FCFS:  # the next one by index
        j = max(after + 1, nxt)
        while j < arrived and not np.isnan(req[i, R_ADMITTED_S, j]):
            j += 1
        return j if j < arrived else -1
    best, best_key = -1, np.inf
    for j in range(nxt, arrived):
        if not np.isnan(req[i, R_ADMITTED_S, j]):
            continue
        k = _order_key(req, srv, i, j, now)
        if (k > key or (k == key and j > after)) and k < best_key:
            best, best_key = j, k
    return best


@nb.njit(cache=True)
def pick(req: np.ndarray, srv: np.ndarray, lists: np.ndarray, i: int, arrived: int, room: int, free: float,
         now: float) -> int:
    """Which waiting requests of server i to admit, at most ``room``: the preempted ones first (the
    last preempted first, as vLLM puts them back at the queue's head), then the queued ones
    (index below ``arrived``) in the server's order, stopping at the first that does not fit the
    ``free`` bytes of KV cache (reserve: its full length; paged: the blocks of its context plus one
    token, keeping the watermark free). Writes them to ``lists[i, L_PICKED]``, and the first that
    does not fit after them; returns how many fit."""
    paged = srv[i, S_PAGED] > 0
    n_pre = int(srv[i, S_PREEMPTED])
    count = 0
    key, after = -np.inf, -1
    while count < room:
        if count < n_pre:
            j = lists[i, L_PREEMPTED, n_pre - 1 - count]
        else:
            j = _next_queued(req, srv, i, arrived, now, key, after)
            if j < 0:
                break
            key, after = _order_key(req, srv, i, j, now), j
        lists[i, L_PICKED, count] = j  # (the head, even when it does not fit: an idle server admits it anyway)
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
    """How many waiting requests of server i fit now, in its order (OnlineServer.admissible)."""
    return pick(req, srv, lists, i, int(srv[i, S_ARRIVED]), max_batch - int(srv[i, S_RUNNING]),
                srv[i, S_KV_CAPACITY] - srv[i, S_KV_USED], srv[i, S_TIME])


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
def _growth(req: np.ndarray, srv: np.ndarray, running: np.ndarray, i: int, slot: int, tlp: int) -> float:
    """Paged KV: the bytes beyond what it holds that running request ``slot`` of server i needs to
    grow by ``tlp`` tokens this iteration (none while it is still prefilling: the blocks of its
    whole prompt came with its admission)."""
    if slot >= int(srv[i, S_RUNNING]) - int(srv[i, S_PREFILLING]):
        return 0.0
    j = running[i, slot]
    return blocks_bytes(srv, i, req[i, R_LIN, j] + req[i, R_GENERATED, j] + tlp) - req[i, R_KV_HELD, j]


@nb.njit(cache=True)
def victims(req: np.ndarray, srv: np.ndarray, running: np.ndarray, i: int, tlp: int) -> tuple[int, float]:
    """Paged KV: how many running requests of server i, the most recently admitted first, must be
    preempted so that the others' contexts can grow by ``tlp`` tokens this iteration, and the
    bytes those that stay need beyond what they hold."""
    n = int(srv[i, S_RUNNING])
    free = srv[i, S_KV_CAPACITY] - srv[i, S_KV_USED]
    need = 0.0
    for slot in range(n):
        need += _growth(req, srv, running, i, slot, tlp)
    count = 0
    while need > free and count < n - 1:  # one request alone always fits (checked at load)
        slot = n - 1 - count
        need -= _growth(req, srv, running, i, slot, tlp)
        free += req[i, R_KV_HELD, running[i, slot]]
        count += 1
    return count, need


@nb.njit(cache=True)
def _prefilling(req: np.ndarray, running: np.ndarray, lists: np.ndarray, i: int, n_dec: int, n_fill: int,
                p: int) -> tuple[int, float]:
    """The p-th prefilling request of server i's next iteration and the prompt tokens it has left
    to compute: the running ones past the ``n_dec`` decoding ones, then the ones :func:`pick`
    chose (their whole context, when recomputed)."""
    if p < n_fill:
        j = running[i, n_dec + p]
        return j, req[i, R_PREFILL_LEFT, j]
    j = lists[i, L_PICKED, p - n_fill]
    return j, req[i, R_LIN, j] + req[i, R_GENERATED, j]


@nb.njit(cache=True)
def plan_chunks(req: np.ndarray, srv: np.ndarray, running: np.ndarray, lists: np.ndarray, i: int, n_dec: int,
                n_fill: int, count: int, room: float, now: float) -> None:
    """Share ``room`` prompt tokens (infinite without chunked prefill) among the ``count`` prefilling
    requests of server i (:func:`_prefilling`) in the server's order (ties by position), each
    getting what it has left or what remains; ``lists[i, L_CHUNKS, p]`` is the p-th one's share."""
    chunks = lists[i, L_CHUNKS]
    for p in range(count):
        chunks[p] = 0
    order = int(srv[i, S_ORDER])
    if order == ORDER_FCFS or room == np.inf:  # by position
        for p in range(count):
            if room <= 0:
                break
            j, left = _prefilling(req, running, lists, i, n_dec, n_fill, p)
            c = min(left, room)
            chunks[p] = int(c)
            room -= c
        return
    key, after = -np.inf, -1
    while room > 0:
        best, best_key, best_left = -1, np.inf, 0.0
        for p in range(count):
            j, left = _prefilling(req, running, lists, i, n_dec, n_fill, p)
            k = left if order == ORDER_SHORTEST else _order_key(req, srv, i, j, now)  # the prompt left, not whole
            if (k > key or (k == key and p > after)) and k < best_key:
                best, best_key, best_left = p, k, left
        if best < 0:
            break
        c = min(best_left, room)
        chunks[best] = int(c)
        room -= c
        key, after = best_key, best


@nb.njit(cache=True)
def price(i: int, unit: int, tlp: int, admit: int, req: np.ndarray, srv: np.ndarray, running: np.ndarray,
          lists: np.ndarray, decode_table: np.ndarray, prefill_table: np.ndarray, fc_table: np.ndarray,
          missing: np.ndarray, plan: np.ndarray) -> bool:
    """Plan server i's next iteration (FC on ``unit``, ``tlp`` tokens verified per request, up to
    ``admit`` waiting requests admitted) and price it into ``plan[i]`` (the P_* fields), changing
    nothing else. Returns False when a cost-table entry is missing (listed in ``missing[i]``).

    Paged KV: running requests whose contexts cannot grow are preempted first, and nothing is
    admitted then. Prompt work: without chunked prefill, the admitted requests' whole prompts
    (their contexts, for recomputed ones); with it (``S_TOKEN_BUDGET`` tokens per iteration), the
    budget left after the decoded requests' RLP x TLP tokens goes to the prefilling requests in
    admission order (the older ones, then the admitted). With FC on the GPUs, a decoding
    iteration fused with a prompt chunk reads the FC weights once (CostModel.fused_fc_saving)."""
    model = int(srv[i, S_MODEL])
    paged = srv[i, S_PAGED] > 0
    budget = srv[i, S_TOKEN_BUDGET]
    n_running = int(srv[i, S_RUNNING])
    n_fill = int(srv[i, S_PREFILLING])
    start = srv[i, S_TIME]
    arrived = int(srv[i, S_ARRIVED])
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
    n_running -= n_victims
    n_fill = max(0, n_fill - n_victims)
    n_dec = n_running - n_fill  # the decoded requests: the running ones past their prefill
    fit = pick(req, srv, lists, i, arrived, running.shape[1] - n_running, free, start)
    admit = 0 if n_victims else min(admit, fit)
    if n_running == 0 and n_pre + arrived - nxt - int(srv[i, S_SKIPPED]) > 0:
        admit = max(admit, 1)  # never idle with work waiting (one request always fits: checked at load)
    # the prompt tokens computed: the prefilling requests' and the admitted ones', shared out in order
    plan_chunks(req, srv, running, lists, i, n_dec, n_fill, n_fill + admit,
                max(budget - n_dec * tlp, 0.0) if budget > 0 else np.inf, start)
    prompt_tokens = 0.0
    causal = reread = 0.0
    for k in range(n_fill + admit):
        c = float(lists[i, L_CHUNKS, k])
        if c == 0:
            continue
        j, left = _prefilling(req, running, lists, i, n_dec, n_fill, k)
        prior = req[i, R_LIN, j] + req[i, R_GENERATED, j] - left
        prompt_tokens += c
        causal += c * prior + c * (c + 1.0) / 2.0
        reread += prior
    tokens = int(prompt_tokens)
    fused = budget > 0 and unit == FC_GPU and n_dec > 0 and tokens > 0
    d = n_dec * tlp
    missing[i, 0] = NOTHING_MISSING
    if tokens > 0 and (tokens >= prefill_table.shape[1] or np.isnan(prefill_table[model, tokens, 0])):
        missing[i, 0], missing[i, 1], missing[i, 2], missing[i, 3] = MISSING_PREFILL, model, tokens, 0
    elif n_dec > 0 and (tlp >= decode_table.shape[2] or np.isnan(decode_table[model, n_dec, tlp, unit, 0])):
        missing[i, 0], missing[i, 1], missing[i, 2], missing[i, 3] = MISSING_DECODE, model, n_dec, tlp * 2 + unit
    elif fused:
        for t in (d, tokens, d + tokens):
            if np.isnan(fc_table[model, FC_ALL, FC_GPU, t, 0]):
                missing[i, 0], missing[i, 1], missing[i, 2], missing[i, 3] = MISSING_FC, model, t, 0
    if missing[i, 0] != NOTHING_MISSING:
        return False
    prefill_s = prefill_j = decode_s = decode_j = 0.0
    if tokens > 0:
        prefill_s, prefill_j = prefill_cost(prefill_table[model, tokens], causal, reread)
    if n_dec > 0:
        c = decode_table[model, n_dec, tlp, unit]
        context = 0.0
        for slot in range(n_dec):
            j = running[i, slot]
            context += req[i, R_LIN, j] + req[i, R_GENERATED, j]
        decode_s, decode_j = c[0] + c[1] * context, c[2] + c[3] * context
        if fused:  # one weight read for the decoded and the prompt tokens
            fd, fp, fdp = fc_table[model, FC_ALL, FC_GPU, d], fc_table[model, FC_ALL, FC_GPU, tokens], \
                fc_table[model, FC_ALL, FC_GPU, d + tokens]
            decode_s -= fd[0] + fp[0] - fdp[0]
            decode_j -= fd[1] + fp[1] - fdp[1]
    p = plan[i]
    p[P_START], p[P_ARRIVED], p[P_VICTIMS], p[P_GROWTH], p[P_ADMIT] = start, arrived, n_victims, growth, admit
    p[P_DECODED], p[P_PREFILL_TOKENS], p[P_PREFILL_S], p[P_PREFILL_J] = n_dec, tokens, prefill_s, prefill_j
    p[P_DECODE_S], p[P_DECODE_J] = decode_s, decode_j
    return True


@nb.njit(cache=True)
def price_grid(i: int, units: np.ndarray, max_tlp: int, admit: int, req: np.ndarray, srv: np.ndarray,
               running: np.ndarray, lists: np.ndarray, decode_table: np.ndarray, prefill_table: np.ndarray,
               fc_table: np.ndarray, missing: np.ndarray, plan: np.ndarray, grid: np.ndarray) -> bool:
    """:func:`price` of server i for every FC unit in ``units`` and TLP 1..``max_tlp``, each plan
    into ``grid[k, tlp - 1]`` (a planner's candidates in one call). False, with the entry listed in
    ``missing[i]``, when a cost-table entry is missing."""
    for k in range(len(units)):
        for tlp in range(1, max_tlp + 1):
            if not price(i, units[k], tlp, admit, req, srv, running, lists, decode_table, prefill_table, fc_table,
                         missing, plan):
                return False
            grid[k, tlp - 1, :] = plan[i, :]
    return True


@nb.njit(cache=True)
def iterate(i: int, unit: int, tlp: int, admit: int, req: np.ndarray, srv: np.ndarray, running: np.ndarray,
            keys: np.ndarray, decode_table: np.ndarray, prefill_table: np.ndarray, fc_table: np.ndarray,
            out: np.ndarray, lists: np.ndarray, missing: np.ndarray, plan: np.ndarray) -> bool:
    """One iteration of server i as :func:`price` plans it: preemptions (paged KV: their blocks
    freed, back to the head of the queue), admissions, the prompt work (a request whose prompt is
    complete yields its first token: at the end of the prefill without chunked prefill, at the end
    of the iteration with it), one decoding step of the decoded requests; the finished leave.
    Writes ``out[i]`` and the finished and admitted requests to ``lists[i]``. Returns False, having
    changed nothing, when a cost-table entry is missing (listed in ``missing[i]``)."""
    if not price(i, unit, tlp, admit, req, srv, running, lists, decode_table, prefill_table, fc_table, missing, plan):
        return False
    p = plan[i]
    start, arrived, n_victims, admit = p[P_START], int(p[P_ARRIVED]), int(p[P_VICTIMS]), int(p[P_ADMIT])
    n_dec, prompt_tokens = int(p[P_DECODED]), p[P_PREFILL_TOKENS]
    prefill_s, p_energy, decode_s, de = p[P_PREFILL_S], p[P_PREFILL_J], p[P_DECODE_S], p[P_DECODE_J]
    end = start + prefill_s + decode_s
    chunked = srv[i, S_TOKEN_BUDGET] > 0
    paged = srv[i, S_PAGED] > 0
    arrived0 = int(srv[i, S_ARRIVED])
    n_running = int(srv[i, S_RUNNING]) - n_victims
    nxt = int(srv[i, S_NEXT])
    n_pre = int(srv[i, S_PREEMPTED])

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
    energy = scored_energy = 0.0
    tokens = 0
    new_pre = min(admit, n_pre)  # readmitted preempted requests (from the top of the stack)
    kv_new = 0.0
    for k in range(admit):  # admitted: their KV, their prompt (their context, when recomputed) to compute
        j = lists[i, L_PICKED, k]
        lists[i, L_ADMITTED, k] = j
        gen = req[i, R_GENERATED, j]
        held = blocks_bytes(srv, i, req[i, R_LIN, j] + gen + 1.0) if paged else req[i, R_KV_BYTES, j]
        req[i, R_KV_HELD, j] = held
        kv_new += held
        req[i, R_PREFILL_LEFT, j] = req[i, R_LIN, j] + gen
        if gen == 0:
            req[i, R_ADMITTED_S, j] = start
    srv[i, S_KV_USED] += kv_new
    srv[i, S_PREEMPTED] = n_pre - new_pre
    skipped = srv[i, S_SKIPPED] + admit - new_pre  # the queue's admitted requests, then those below the oldest waiting
    while nxt < arrived and not np.isnan(req[i, R_ADMITTED_S, nxt]):
        nxt += 1
        skipped -= 1
    srv[i, S_NEXT], srv[i, S_SKIPPED] = nxt, skipped
    n_total = n_running
    for k in range(admit):  # the running batch: the decoded, the prefilling, then the admitted
        running[i, n_total] = lists[i, L_ADMITTED, k]
        n_total += 1
    if prompt_tokens > 0:  # the prompt work as price planned it, its energy shared out by prompt tokens
        energy = p_energy
        first_token_s = end if chunked else start + prefill_s
        for slot in range(n_dec, n_total):
            j = running[i, slot]
            c = float(lists[i, L_CHUNKS, slot - n_dec])
            if c == 0:
                continue
            share = p_energy * c / prompt_tokens
            req[i, R_ENERGY_J, j] += share
            if j >= scored_from:
                scored_energy += share
            req[i, R_PREFILL_LEFT, j] -= c
            if req[i, R_PREFILL_LEFT, j] == 0:  # its prompt is complete: its next token
                gen = req[i, R_GENERATED, j]
                if gen == 0:
                    req[i, R_FIRST_TOKEN_S, j] = first_token_s
                else:
                    srv[i, S_RECOMPUTED] += gen
                req[i, R_GENERATED, j] = gen + 1.0
                if j >= scored_from:
                    srv[i, S_SCORED_MADE] += 1.0
                tokens += 1

    accepted_share = 1.0
    finished = lists[i, L_FINISHED]
    if n_dec > 0:
        p_accept = srv[i, S_ACCEPT_P]
        iteration = int(srv[i, S_ITERATIONS])
        kept_total = 0
        produced = 0
        for slot in range(n_dec):
            j = running[i, slot]
            if p_accept >= 1.0 or tlp == 1:
                kept = tlp
            else:
                drafts = np.floor(np.log(uniform_at(keys[i], iteration, slot, ACCEPT_STREAM)) / np.log(p_accept))
                kept = 1 + int(min(drafts, tlp - 1))
            made = min(kept, int(req[i, R_LOUT, j] - req[i, R_GENERATED, j]))
            req[i, R_GENERATED, j] += made
            kept_total += kept
            produced += made
            finished[slot] = made  # scratch: each request's tokens, read back below
        for slot in range(n_dec):
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
        accepted_share = kept_total / (n_dec * tlp)
        energy = energy + de
        tokens += produced

    srv[i, S_TIME] = end
    kept_count = n_finished = good = misses = n_fill = 0
    context = backlog = 0.0
    still = lists[i, L_PICKED]  # scratch (the picks are in L_ADMITTED): the prefilling requests
    kv_freed = 0.0
    ttft_target, tpot_target = srv[i, S_TTFT_TARGET], srv[i, S_TPOT_TARGET]
    for slot in range(n_total):  # the finished leave
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
        elif req[i, R_PREFILL_LEFT, j] > 0:
            still[n_fill] = j
            n_fill += 1
            backlog += req[i, R_PREFILL_LEFT, j]
        else:
            running[i, kept_count] = j
            kept_count += 1
            context += req[i, R_LIN, j] + req[i, R_GENERATED, j]
    for k in range(n_fill):  # the running batch: the decoding requests, then the prefilling ones
        j = still[k]
        running[i, kept_count] = j
        kept_count += 1
        context += req[i, R_LIN, j] + req[i, R_GENERATED, j]
    srv[i, S_RUNNING] = kept_count
    srv[i, S_PREFILLING] = n_fill
    srv[i, S_PREFILL_BACKLOG] = backlog
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
    srv[i, S_WAITING] = waiting(srv, i)
    o = out[i]
    o[O_START], o[O_END], o[O_PREFILL_S], o[O_DECODE_S], o[O_ENERGY] = start, end, prefill_s, decode_s, energy
    o[O_RLP], o[O_ADMITTED], o[O_PREEMPTED], o[O_FINISHED] = n_dec, admit, n_victims, n_finished
    o[O_TOKENS], o[O_ACCEPTED_SHARE], o[O_PREFILL_TOKENS] = tokens, accepted_share, prompt_tokens
    o[O_AREA] = n_start * (end - start) + waited
    o[O_SCORED_AREA] = scored_start * (end - start) + scored_waited
    o[O_SCORED_ENERGY], o[O_ARRIVALS], o[O_GOOD], o[O_MISSES] = scored_energy, after - arrived0, good, misses
    return True


@nb.njit(cache=True)
def iterate_all(units: np.ndarray, tlps: np.ndarray, admits: np.ndarray, pending: np.ndarray, req: np.ndarray,
                srv: np.ndarray, running: np.ndarray, keys: np.ndarray, decode_table: np.ndarray,
                prefill_table: np.ndarray, fc_table: np.ndarray, out: np.ndarray, lists: np.ndarray,
                missing: np.ndarray, plan: np.ndarray) -> int:
    """:func:`iterate` on every server with ``pending[i]``, which is cleared for those that ran.
    Returns how many are left waiting for a cost-table entry."""
    left = 0
    for i in range(len(pending)):
        if pending[i]:
            if iterate(i, units[i], tlps[i], admits[i], req, srv, running, keys, decode_table, prefill_table,
                       fc_table, out, lists, missing, plan):
                pending[i] = False
            else:
                left += 1
    return left
