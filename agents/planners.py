"""Oracles and planners: decisions that price candidate actions with the cost model every iteration.

An oracle prices with the hidden truth (true acceptance probabilities, remaining output lengths);
a planner with what a runtime could estimate. Both ask the environment what an action costs now
(``step_objective(action)``, the spec variant's ``action_values`` and ``cost_at``, the serving
env's ``server.plan``: the simulation's answer through the env's public view) and decide
here. None is a proven bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.rules import SPLIT_TABLE_STEPS, Bound
from hardware.cost_tables import UNITS
from hardware.systems import FC_KERNELS
from sim import serve_kernels as sk
from sim.acceptance import expected_gain


def greedy_best(env: Any) -> Any:
    """The candidate action (``env.candidate_actions()``) with the highest reward now."""
    best, best_value = None, -np.inf
    for a in env.candidate_actions():
        v = env.step_objective(a)
        if v > best_value:
            best, best_value = a, v
    return best


def least_cost(values: np.ndarray) -> np.ndarray:
    """The (TLP - 1, unit) of the least value in a spec env's ``action_values`` table."""
    return np.array(np.unravel_index(int(np.argmin(values)), values.shape), dtype=np.int64)


def split_oracle(env: Any) -> np.ndarray:
    """PapiSplitSchedule: the per-iteration optimum over fractions k / 32: exact per kernel for
    latency, energy and latency_target (FC kernels add up; less time never adds a miss); coordinate
    descent for edp."""
    cm, kind = env.cost_model, env.reward_kind
    tokens = env.batch.live * env.tlp
    grid = [k / SPLIT_TABLE_STEPS for k in range(SPLIT_TABLE_STEPS + 1)]
    options = {k: [cm.fc_split(k, tokens, f) for f in grid] for k in FC_KERNELS}
    measure = "time" if kind in ("latency", "latency_target") else "energy"
    best = [min(range(len(grid)), key=lambda i, k=k: getattr(options[k][i], measure)) for k in FC_KERNELS]
    if kind == "edp":
        rest = cm.iteration_split(env.batch.live, env.tlp, env.sum_context, (0.0, 0.0, 0.0))
        base_t = env.total_time + rest.time - rest.fc_time
        base_e = env.total_energy + rest.energy - rest.fc_energy
        for _ in range(2):
            for j, k in enumerate(FC_KERNELS):
                others = [options[kk][best[jj]] for jj, kk in enumerate(FC_KERNELS) if jj != j]
                t0 = base_t + sum(c.time for c in others)
                e0 = base_e + sum(c.energy for c in others)
                opts = options[k]
                best[j] = min(range(len(grid)),
                              key=lambda i, o=opts, t0=t0, e0=e0: (t0 + o[i].time) * (e0 + o[i].energy))
    return np.array([grid[i] for i in best], dtype=np.float32)


def serve_greedy(env: Any, p: float) -> np.ndarray:
    """PapiServe: admit all that fit, then the (unit, TLP) of least decoding time (latency,
    goodput) or energy (energy) per expected token this iteration, each draft accepted with
    probability ``p`` (expected tokens per request (1 - p^TLP) / (1 - p)); the decoding's cost is
    what it adds to the iteration (``server.plan``: less the FC weight read a GPU iteration shares
    with a prompt chunk). It looks one iteration ahead."""
    s = env.server
    admit = min(s.admissible(), env.max_admit)
    if len(s.running) == s.prefilling:  # nothing to decode
        return np.array([int(not env.unit_mask[0]), 0, max(admit, 1) if not len(s.running) else admit])
    units = [u for u in (0, 1) if env.unit_mask[u]]
    plans = s.plan_all([UNITS[u] for u in units], env.max_tlp, admit)  # (paged KV never preempts the oldest)
    per_request = np.array([tlp if p >= 1.0 else (1 - p**tlp) / (1 - p) for tlp in range(1, env.max_tlp + 1)])
    cost = (plans.decode_j if env.reward_kind == "energy" else plans.decode_s) / (plans.rlp * per_request)
    k, tlp_index = divmod(int(np.argmin(cost)), env.max_tlp)  # the first of equal costs, units then TLPs
    return np.array([units[k], tlp_index, admit])


def serve_oracle(env: Any) -> np.ndarray:
    """PapiServe's oracle: :func:`serve_greedy` with the hidden acceptance rate."""
    return serve_greedy(env, env.acceptance_rate or 1.0)


LOOKAHEAD_S = 4.0
"""[D] Seconds of serving a rollout looks ahead: about one request's service time on the Azure trace
(with 1 s a rollout sees too few completions to rank the candidates)."""


class ServeLookahead(Bound):
    """PapiServe: a hindsight lookahead oracle over the compiled server. Each iteration it copies the
    server (sim.serve_engine.ServeEngine.fork: its future arrivals and acceptance draws included,
    which no runtime knows) once per candidate (FC unit x TLP, admitting all that fit or none) and
    rolls every copy ``horizon_s`` seconds ahead, keeping the candidate's unit and TLP and then
    admitting all that fit. Over each rollout it takes the rate of requests (scored or not) served
    within their latency targets (goodput), the mean number of requests in the system (latency, Little's
    law) and joules per token (energy), and picks the best for the env's objective (goodput: the
    highest, then the fewest in the system). A headroom estimate, not a bound: the rollout's own
    policy is fixed and its horizon short."""

    kind = "oracle"

    def __init__(self, horizon_s: float = LOOKAHEAD_S) -> None:
        self.horizon_s = float(horizon_s)

    def act(self, env):
        s = env.server
        units = [u for u in (0, 1) if env.unit_mask[u]] or [1]
        candidates = [(u, t, a) for a in (env.max_admit, 0) for u in units for t in range(1, env.max_tlp + 1)]
        if not len(s.running):  # nothing to decode: only admission matters, and one is admitted anyway
            candidates = [(units[0], 1, env.max_admit)]
        n = len(candidates)
        fork = self.fork(env, n)
        units_a = np.array([c[0] for c in candidates], dtype=np.int64)
        tlps = np.array([c[1] for c in candidates], dtype=np.int64)
        first_admits = np.array([c[2] for c in candidates], dtype=np.int64)
        later_admits = np.full(n, env.max_admit, dtype=np.int64)
        good, area, energy, tokens = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        t0, t_end = s.t, s.t + self.horizon_s
        first = True
        while True:
            srv = fork.srv
            pending = (srv[:, sk.S_FINISHED] < srv[:, sk.S_SIZE]) & (srv[:, sk.S_TIME] < t_end)
            if not pending.any():
                break
            stepped = pending.copy()
            fork.iterate(units_a, tlps, first_admits if first else later_admits, pending)
            first = False
            out = fork.out
            good += np.where(stepped, out[:, sk.O_FINISHED] - out[:, sk.O_MISSES], 0.0)  # every request
            area += np.where(stepped, out[:, sk.O_AREA], 0.0)
            energy += np.where(stepped, out[:, sk.O_ENERGY], 0.0)
            tokens += np.where(stepped, out[:, sk.O_TOKENS], 0.0)
        elapsed = np.maximum(fork.srv[:, sk.S_TIME] - t0, 1e-12)
        in_system = area / elapsed
        if env.reward_kind == "energy":
            order = np.lexsort((in_system, energy / np.maximum(tokens, 1.0)))
        elif env.reward_kind == "goodput":
            order = np.lexsort((in_system, -good / elapsed))
        else:
            order = np.argsort(in_system, kind="stable")
        u, t, a = candidates[int(order[0])]
        return np.array([u, t - 1, a])

    def fork(self, env: Any, copies: int) -> Any:
        """The copies of the env's server to roll out: exact ones (hindsight)."""
        return env.server.engine.fork(env.server.i, copies)


class ServeRolloutPlanner(ServeLookahead):
    """PapiServe: :class:`ServeLookahead` as a runtime could run it, a lookahead planner over the cost
    model: its copies of the server see only the requests that have arrived (no future arrivals)
    and accept drafts with the runtime's moving-average estimate (``accept_ema``) from draws of
    their own, not the episode's."""

    kind = "planner"

    def fork(self, env: Any, copies: int) -> Any:
        s = env.server
        return s.engine.fork(s.i, copies, hindsight=False, acceptance_rate=min(env.accept_ema, 1.0),
                             key=s.iterations + 1)


class SmartSpec(Bound):
    """PapiServe: SmartSpec's goodput-based speculation length (Liu et al., "Optimizing Speculative
    Decoding for Serving Large Language Models Using Goodput", 2024) on the cost model: each
    iteration the (TLP, FC unit) of the most expected tokens per second for the running batch
    (:func:`serve_greedy`; least joules per token for the energy objective), with the acceptance
    rate the runtime's moving average of kept / verified tokens (``accept_ema``), not the truth;
    FCFS admission of all that fits. SmartSpec profiles its batch-time model; here the cost model
    stands in for the profile."""

    def act(self, env):
        return serve_greedy(env, min(env.accept_ema, 1.0))


class Oracle(Bound):
    """The environment's best action each iteration by the cost model.

    PapiSchedule/Kernel: greedy over the candidate actions. Placement does not change which
    requests are live or their contexts, so for latency, energy and latency_target the
    per-iteration best is the episode optimum; for edp it is the greedy best. PapiSplit:
    :func:`split_oracle`. PapiSpecSchedule: greedy on expected cost per token with the true
    (hidden) acceptance probabilities, a strong reference but not a bound. PapiServe:
    :func:`serve_oracle`.
    """

    def __init__(self, env: Any = None) -> None:
        if env is not None:
            self.bind(env)

    def act(self, env):
        variant = env.variant
        if variant == "spec":
            return least_cost(env.action_values(env.acceptance.probabilities()))
        if variant == "split":
            return split_oracle(env)
        if variant == "serve":
            return serve_oracle(env)
        a = greedy_best(env)
        return np.int64(a) if np.ndim(a) == 0 else np.asarray(a)


def time_to_go(env: Any, tlp: int, p: np.ndarray, remaining: np.ndarray) -> float:
    """Expected seconds to finish a spec env's batch if every iteration from now on speculates at
    ``tlp`` (FC on the faster unit at each RLP, target plus draft), given live request i's
    acceptance p[i] and remaining tokens remaining[i]: request i finishes after
    remaining[i] / expected_gain(p[i], tlp) iterations and the batch shrinks as they do.
    Contexts stay at today's mean (a short-horizon approximation)."""
    finish = np.sort(remaining / expected_gain(p, tlp))
    cm = env.cost_model
    n, ctx, draft = len(finish), env.sum_context / env.batch.live, env.draft
    seconds, before = 0.0, 0.0
    for j, at in enumerate(finish):
        if at > before:
            rlp = n - j
            target = min(cm.iteration(rlp, tlp, rlp * ctx, u).time for u in UNITS)
            seconds += (at - before) * (target + draft.draft(rlp, tlp, rlp * ctx).time)
            before = at
    return seconds


class LookaheadOracle(Bound):
    """PapiSpecSchedule, latency: with the hidden truth (acceptance probabilities and remaining
    output lengths), the TLP that would finish the batch soonest if kept (:func:`time_to_go`), FC
    on the faster unit now. With wide acceptance spread the greedy oracle spends speculation on
    requests that are not on the batch's critical path; this one does not. Neither is a proven
    bound."""

    def bind(self, env: Any) -> LookaheadOracle:
        base = env.unwrapped
        if getattr(base, "variant", None) != "spec" or base.reward_kind != "latency":
            raise ValueError("oracle-lookahead is defined for PapiSpecSchedule-v0 with reward='latency' only")
        return super().bind(env)

    def act(self, env):
        mask = env.batch.live_mask()
        p, remaining = env.acceptance.probabilities()[mask], env.batch.remaining()[mask].astype(float)
        tlp = min(range(1, env.max_tlp + 1), key=lambda t: time_to_go(env, t, p, remaining))
        unit = min((0, 1), key=lambda u: env.cost_at(tlp, u).time)
        return np.array([tlp - 1, unit], dtype=np.int64)


class GreedyEMA(Bound):
    """A model-based planner (PapiSpecSchedule): each iteration, evaluate the cost model for
    every (TLP, unit) and take the least cost per expected token, with expected tokens from each
    request's own running acceptance estimate (what the oracle does with the true
    probabilities and the true remaining lengths; the planner does not know when a request will
    end). Needs an accurate per-iteration cost model, which real deployments lack."""

    def act(self, env):
        return least_cost(env.action_values(env.request_estimates(), known_lengths=False))
