"""Compiled MDP of PapiServe-v0 (numba): actions in, rewards and observations out, around
sim.serve_kernels' iteration, looped over N environments.

Per-environment MDP state is ``mdp`` (N, MDP_FIELDS) float64, the M_* fields: steps taken, the last
TLP, the runtime's arrival-rate and acceptance estimates, the episode's totals (s, J, tokens,
missed and good requests), the shaping potential, and the episode's constants (scored requests,
their output tokens, their arrival window s, PAPI's crossover alpha, the unloaded time per token s).
papi_env.serve_env documents the action, observation and rewards.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from sim import serve_kernels as sk

(M_STEPS, M_LAST_TLP, M_RATE_EMA, M_ACCEPT_EMA, M_TIME, M_ENERGY, M_TOKENS, M_MISSES, M_GOOD, M_POTENTIAL,
 M_SCORED, M_SCORED_TOKENS, M_WINDOW_S, M_ALPHA, M_TOKEN_TIME_S) = range(15)
MDP_FIELDS = 15
LATENCY, ENERGY, GOODPUT = 0, 1, 2  # reward codes, in serve_env.SERVE_REWARDS' order
NO_SHAPING, REMAINING, ON_TRACK = 0, 1, 2  # shaping codes, in serve_env.SHAPINGS' order
OBS_SIZE = 11
CONTEXT_SCALE = 65536.0  # [D] tokens of context per request at which the log-context feature saturates
RATE_SCALE = 1000.0  # [D] requests/s at which the log-rate feature saturates
QUEUE_SCALE = 4  # [D] queued requests, in batches, at which the log-queue feature saturates
WAIT_CAP = 10.0  # [D] oldest wait, in TTFT targets, at which its feature saturates
LOAD_CAP = 4.0  # [D] RLP x TLP, in alphas, at which its feature saturates
BACKLOG_SCALE = 64.0  # [D] prompt tokens left to compute, in iteration budgets, at which that feature saturates


@nb.njit(cache=True)
def _on_track(req: np.ndarray, srv: np.ndarray, i: int, j: int, now: float) -> bool:
    """Whether request j of server i can still meet both latency targets at ``now`` as far as its
    progress shows: no first token yet and within the TTFT target, or a first token within it and
    a pace since then (s per token after the first) within the TPOT target."""
    first = req[i, sk.R_FIRST_TOKEN_S, j]
    if np.isnan(first):
        return now - req[i, sk.R_ARRIVAL, j] <= srv[i, sk.S_TTFT_TARGET]
    if first - req[i, sk.R_ARRIVAL, j] > srv[i, sk.S_TTFT_TARGET]:
        return False
    made = req[i, sk.R_GENERATED, j] - 1.0
    return made <= 0 or (now - first) / made <= srv[i, sk.S_TPOT_TARGET]


@nb.njit(cache=True)
def potential(req: np.ndarray, srv: np.ndarray, running: np.ndarray, lists: np.ndarray, mdp: np.ndarray, i: int,
              shaping: int) -> float:
    """The shaping potential of environment i (serve_env's ``shaping``): ``remaining``, minus the
    scored requests' remaining tokens at the unloaded time per token, per scored request (latency);
    ``on-track``, the scored requests in the system that can still meet both targets, per second
    of the scored window (goodput): a request going off track costs its goodput when it happens."""
    if shaping == REMAINING:
        remaining = srv[i, sk.S_SCORED_DUE] - srv[i, sk.S_SCORED_MADE]
        return -remaining * mdp[i, M_TOKEN_TIME_S] / mdp[i, M_SCORED]
    if shaping != ON_TRACK:
        return 0.0
    now, scored_from = srv[i, sk.S_TIME], int(srv[i, sk.S_SCORED_FROM])
    count = 0
    for slot in range(int(srv[i, sk.S_RUNNING])):
        j = running[i, slot]
        count += j >= scored_from and _on_track(req, srv, i, j, now)
    for k in range(int(srv[i, sk.S_PREEMPTED])):
        j = lists[i, sk.L_PREEMPTED, k]
        count += j >= scored_from and _on_track(req, srv, i, j, now)
    for j in range(max(int(srv[i, sk.S_NEXT]), scored_from), int(srv[i, sk.S_ARRIVED])):
        if np.isnan(req[i, sk.R_ADMITTED_S, j]):  # queued (not running, not preempted)
            count += _on_track(req, srv, i, j, now)
    return count / mdp[i, M_WINDOW_S]


@nb.njit(cache=True)
def observe(obs: np.ndarray, req: np.ndarray, srv: np.ndarray, lists: np.ndarray, mdp: np.ndarray, max_batch: int,
            max_tlp: int, max_admit: int, backlog: bool) -> None:
    """The first OBS_SIZE columns of ``obs`` (N, >= OBS_SIZE) float32: observations in [0, 1] of every
    environment's state; with ``backlog`` (chunked prefill) a column more, the running requests'
    prompt backlog."""
    for i in range(len(srv)):
        rlp = srv[i, sk.S_RUNNING]
        arrived, nxt, n_pre = int(srv[i, sk.S_ARRIVED]), int(srv[i, sk.S_NEXT]), int(srv[i, sk.S_PREEMPTED])
        queue = srv[i, sk.S_WAITING]
        oldest = np.inf if nxt == arrived else req[i, sk.R_ARRIVAL, nxt]
        for k in range(n_pre):  # preempted requests wait too (paged KV)
            oldest = min(oldest, req[i, sk.R_ARRIVAL, lists[i, sk.L_PREEMPTED, k]])
        wait = srv[i, sk.S_TIME] - oldest if queue > 0 else 0.0
        ttft_target = srv[i, sk.S_TTFT_TARGET]
        alpha = mdp[i, M_ALPHA]
        possible = sk.admissible(req, srv, lists, i, max_batch)
        values = (
            rlp / max_batch,
            math.log1p(queue) / math.log1p(QUEUE_SCALE * max_batch),
            min(wait / ttft_target, WAIT_CAP) / WAIT_CAP,
            srv[i, sk.S_KV_USED] / srv[i, sk.S_KV_CAPACITY],
            math.log1p(mdp[i, M_RATE_EMA]) / math.log1p(RATE_SCALE),
            mdp[i, M_LAST_TLP] / max_tlp,
            mdp[i, M_ACCEPT_EMA],
            min(rlp * mdp[i, M_LAST_TLP] / alpha, LOAD_CAP) / LOAD_CAP if alpha > 0 else 1.0,
            min(possible, max_admit) / max_admit,
            math.log1p(srv[i, sk.S_SUM_CONTEXT]) / math.log1p(max_batch * CONTEXT_SCALE),
            arrived / srv[i, sk.S_SIZE],
        )
        for k in range(OBS_SIZE):
            x = np.float32(values[k])
            obs[i, k] = min(max(x, np.float32(0.0)), np.float32(1.0))
        if backlog:
            budgets = srv[i, sk.S_PREFILL_BACKLOG] / max(srv[i, sk.S_TOKEN_BUDGET], 1.0)
            obs[i, OBS_SIZE] = np.float32(min(math.log1p(budgets) / math.log1p(BACKLOG_SCALE), 1.0))


@nb.njit(cache=True)
def step(actions: np.ndarray, unit_mask: np.ndarray, pending: np.ndarray, req: np.ndarray, srv: np.ndarray,
         running: np.ndarray, keys: np.ndarray, decode_table: np.ndarray, prefill_table: np.ndarray,
         fc_table: np.ndarray, plan: np.ndarray, out: np.ndarray, lists: np.ndarray, missing: np.ndarray,
         mdp: np.ndarray, reward_code: int, shaping: int, max_steps: int, rate_tau_s: float, accept_weight: float,
         reward: np.ndarray, unit_used: np.ndarray, clamped: np.ndarray, fallback: np.ndarray, terminated: np.ndarray,
         truncated: np.ndarray) -> int:
    """One step of every environment with ``pending[i]`` (cleared as each runs) whose episode has
    not ended (those stand still, reward 0): action (N, 3) = (FC unit, TLP - 1, admissions), checked
    by the caller. Returns how many wait for a cost-table
    entry (sim.serve_kernels: fill and call again; the others have run)."""
    left = 0
    for i in range(len(pending)):
        if not pending[i]:
            continue
        if srv[i, sk.S_FINISHED] == srv[i, sk.S_SIZE] or mdp[i, M_STEPS] >= max_steps:  # ended: stands still
            pending[i] = False
            continue
        unit, tlp, admit = actions[i, 0], actions[i, 1] + 1, actions[i, 2]
        fallback[i] = not unit_mask[i, unit]
        used = 1 - unit if fallback[i] else unit
        clamped[i] = admit > sk.admissible(req, srv, lists, i, running.shape[1])
        if not sk.iterate(i, used, tlp, admit, req, srv, running, keys, decode_table, prefill_table, fc_table, out,
                          lists, missing, plan):
            left += 1
            continue
        pending[i] = False
        unit_used[i] = used
        o, m = out[i], mdp[i]
        dt = o[sk.O_END] - o[sk.O_START]
        if reward_code == LATENCY:
            r = -o[sk.O_SCORED_AREA] / m[M_SCORED]
        elif reward_code == ENERGY:
            r = -o[sk.O_SCORED_ENERGY] / m[M_SCORED_TOKENS]
        else:
            r = o[sk.O_GOOD] / m[M_WINDOW_S]
        if shaping != NO_SHAPING:  # potential-based: the same episode sum, credit when it is decided
            phi = potential(req, srv, running, lists, mdp, i, shaping)
            r += phi - m[M_POTENTIAL]
            m[M_POTENTIAL] = phi
        reward[i] = r
        m[M_STEPS] += 1.0
        m[M_LAST_TLP] = tlp
        if dt > 0:
            k = 1.0 - math.exp(-dt / rate_tau_s)
            m[M_RATE_EMA] += k * (o[sk.O_ARRIVALS] / dt - m[M_RATE_EMA])
        if o[sk.O_RLP] > 0 and tlp > 1:
            m[M_ACCEPT_EMA] += accept_weight * (o[sk.O_ACCEPTED_SHARE] - m[M_ACCEPT_EMA])
        m[M_TIME] += dt
        m[M_ENERGY] += o[sk.O_ENERGY]
        m[M_TOKENS] += o[sk.O_TOKENS]
        m[M_MISSES] += o[sk.O_MISSES]
        m[M_GOOD] += o[sk.O_GOOD]
        terminated[i] = srv[i, sk.S_FINISHED] == srv[i, sk.S_SIZE]
        truncated[i] = not terminated[i] and m[M_STEPS] >= max_steps
    return left
