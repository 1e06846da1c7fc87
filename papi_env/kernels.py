"""Compiled kernels of the static-batch MDP (numba): rewards, episode ends and observations.

One environment step of the placement variants (PapiSchedule, PapiKernelSchedule,
PapiSplitSchedule) is one call of :func:`step_batches`: it prices the iteration
(sim.kernels.price_batches), rewards it, advances the batches (sim.kernels.advance_lockstep, or
with ``acceptance_rate`` sim.kernels.advance_stochastic), adds it to the episode totals, ends
episodes and moves a TLP schedule on, for every environment in one loop each;
:func:`observe_shared` observes the eight shared features (after any resets).
The per-element operations and their order are those of the numpy code they replaced, so the
numbers are the same bit for bit.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from hardware.cost_tables import UNITS
from sim.kernels import (
    ALL_FC,
    advance_drift,
    advance_lockstep,
    advance_stochastic,
    expected_gain,
    lockstep_live_context,
    price_batches,
    row_sum,
    stochastic_live_context,
)

REWARD_CODES = {"latency": 0, "energy": 1, "edp": 2, "latency_target": 3}


@nb.njit(cache=True)
def iteration_time(cost: np.ndarray, i: int) -> float:
    """Seconds of environment i's iteration (IterationCost.time: the categories added in order)."""
    return cost[0, i] + cost[1, i] + cost[2, i] + cost[3, i]


@nb.njit(cache=True)
def iteration_energy(cost: np.ndarray, i: int) -> float:
    """Joules of environment i's iteration (IterationCost.energy)."""
    return cost[4, i] + cost[5, i] + cost[6, i] + cost[7, i]


@nb.njit(cache=True)
def objective_reward(kind: int, seconds: float, joules: float, time_scale: float, energy_scale: float,
                     target: float, gain: float, total_time: float, total_energy: float,
                     miss_penalty: float) -> float:
    """The objective's per-step term (papi_env.core.VectorCore.objective_reward) of one iteration."""
    if kind == 0:
        return -seconds / time_scale
    if kind == 1:
        return -joules / energy_scale
    if kind == 2:
        t, e = total_time + seconds, total_energy + joules
        return -(t * e - total_time * total_energy) / (time_scale * energy_scale)
    missed = 1.0 if seconds > target * gain else 0.0
    return -seconds / time_scale - miss_penalty * missed


@nb.njit(cache=True)
def observe_shared(obs: np.ndarray, rlp: np.ndarray, total: np.ndarray, longest: np.ndarray, tlp: np.ndarray,
                   size: np.ndarray, log2_table: np.ndarray, last_share: np.ndarray, steps: np.ndarray, max_steps: int,
                   rlp_scale: float, tlp_scale: float, ctx_scale: float) -> None:
    """The eight shared features (papi_env.core.VectorCore.observe) in obs[:, :8], float32 in [0, 1],
    from each batch's live requests ``rlp``, their context sum ``total`` and longest context
    ``longest`` before the TLP tokens of an iteration."""
    top = len(log2_table) - 1
    for i in range(len(tlp)):
        live, t = rlp[i], tlp[i]
        sum_ctx = float(total[i] + live * t)
        max_ctx = float(longest[i] + t * (1 if live > 0 else 0))
        safe = max(live, 1)
        values = (live / rlp_scale, t / tlp_scale, log2_table[min(live * t, top)], live / size[i],
                  sum_ctx / safe / ctx_scale, max_ctx / ctx_scale, last_share[i], steps[i] / max_steps)
        for column in range(8):
            v = np.float32(values[column])
            obs[i, column] = min(max(v, np.float32(0.0)), np.float32(1.0))


@nb.njit(cache=True)
def price_and_reward(stochastic: bool, fc_mode: int, actions: np.ndarray, attention_units: np.ndarray,
                     cm: np.ndarray, tlp: np.ndarray, size: np.ndarray, first: np.ndarray, generated: np.ndarray,
                     live_input: np.ndarray, live_max_input: np.ndarray, input_lengths: np.ndarray,
                     output_lengths: np.ndarray, gen: np.ndarray, fc_table: np.ndarray, split_table: np.ndarray,
                     fixed_table: np.ndarray, reward_kind: int, time_scales: np.ndarray, energy_scales: np.ndarray,
                     targets: np.ndarray, miss_penalty: float, total_time: np.ndarray, total_energy: np.ndarray,
                     cost: np.ndarray, rlp: np.ndarray, reward: np.ndarray, missing: np.ndarray) -> int:
    """The cost (8, N) and reward (N,) of the actions now, without stepping; the number of missing
    table entries (as sim.kernels.price_batches, whose layouts it takes)."""
    n_missing = price_batches(stochastic, fc_mode, actions, attention_units, cm, tlp, size, first, generated,
                              live_input, live_max_input, input_lengths, output_lengths, gen, fc_table, split_table,
                              fixed_table, cost, rlp, missing)
    if n_missing:
        return n_missing
    for i in range(len(cm)):
        c = cm[i]
        reward[i] = objective_reward(reward_kind, iteration_time(cost, i), iteration_energy(cost, i), time_scales[c],
                                     energy_scales[c], targets[c], float(tlp[i]), total_time[i], total_energy[i],
                                     miss_penalty)
    return 0


@nb.njit(cache=True)
def step_batches(stochastic: bool, fc_mode: int, actions: np.ndarray, attention_units: np.ndarray, cm: np.ndarray,
                 tlp: np.ndarray, size: np.ndarray, first: np.ndarray, generated: np.ndarray,
                 next_output: np.ndarray, live_input: np.ndarray, live_max_input: np.ndarray,
                 output_lengths: np.ndarray, prefix_output: np.ndarray, suffix_input: np.ndarray,
                 suffix_max_input: np.ndarray, input_lengths: np.ndarray, gen: np.ndarray, keys: np.ndarray,
                 acceptance: np.ndarray, last_request_accepted: np.ndarray, last_request_rejected: np.ndarray,
                 last_drafted: np.ndarray, last_accepted: np.ndarray, fc_table: np.ndarray, split_table: np.ndarray,
                 fixed_table: np.ndarray, reward_kind: int, time_scales: np.ndarray, energy_scales: np.ndarray,
                 targets: np.ndarray, miss_penalty: float, max_steps: int, total_time: np.ndarray,
                 total_energy: np.ndarray, tokens: np.ndarray, misses: np.ndarray, steps: np.ndarray,
                 schedule_starts: np.ndarray, schedule_values: np.ndarray, cost: np.ndarray, rlp: np.ndarray,
                 produced: np.ndarray, missed: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
                 truncated: np.ndarray, live_after: np.ndarray, total_after: np.ndarray, longest_after: np.ndarray,
                 missing: np.ndarray) -> int:
    """One iteration in every environment (see the module docstring), observations aside
    (:func:`observe_shared`, after any resets): lock-step batches, or with ``stochastic`` batches
    whose drafts are accepted with probability ``acceptance`` (one per request slot) from the
    counter draws of ``keys`` at each environment's step; ``*_after``: the batches' live requests
    and context sum and maximum after it. Returns the number of cost table entries that were
    missing (listed in ``missing``); if not 0, nothing changed and the caller fills them and
    calls again."""
    n_missing = price_and_reward(stochastic, fc_mode, actions, attention_units, cm, tlp, size, first, generated,
                                 live_input, live_max_input, input_lengths, output_lengths, gen, fc_table, split_table,
                                 fixed_table, reward_kind, time_scales, energy_scales, targets, miss_penalty,
                                 total_time, total_energy, cost, rlp, reward, missing)
    if n_missing:
        return n_missing
    if stochastic:
        for i in range(len(cm)):
            produced[i] = advance_stochastic(i, tlp[i], keys[i], steps[i], acceptance, output_lengths, gen,
                                             last_request_accepted, last_request_rejected, last_drafted,
                                             last_accepted)
    else:
        advance_lockstep(tlp, size, first, generated, next_output, live_input, live_max_input, output_lengths,
                         prefix_output, suffix_input, suffix_max_input, produced)
    for i in range(len(cm)):
        steps[i] += 1
        seconds = iteration_time(cost, i)
        missed[i] = seconds > targets[cm[i]] * (produced[i] / max(rlp[i], 1))
        total_time[i] += seconds
        total_energy[i] += iteration_energy(cost, i)
        tokens[i] += produced[i]
        misses[i] += missed[i]
        if stochastic:
            live_after[i], total_after[i], longest_after[i] = stochastic_live_context(i, input_lengths,
                                                                                      output_lengths, gen)
        else:
            live_after[i], total_after[i], longest_after[i] = lockstep_live_context(
                size, first, generated, live_input, live_max_input, i)
        terminated[i] = live_after[i] == 0
        truncated[i] = not terminated[i] and steps[i] >= max_steps
        if len(schedule_starts) and not (terminated[i] or truncated[i]):  # a TLP schedule moves on
            k = np.searchsorted(schedule_starts, steps[i], side="right") - 1
            tlp[i] = schedule_values[k]
    return 0


# ------------------------------------------------------------------------ speculation variant
TABLE_DRAFT = 3  # missing entries of the draft model's tables: table ids 3 (fc) and 4 (fixed)
GPU = UNITS.index("gpu")
PRIOR_ACCEPT, PRIOR_COUNT = 0.65, 2.0  # [D] Beta prior: mean 0.65 (middle of 0.4..0.9), worth 2 drafts


@nb.njit(cache=True, error_model="numpy")
def iteration_on(fc_table: np.ndarray, fixed_table: np.ndarray, table_base: int, c: int, rlp: int, tlp: int,
                 sum_ctx: float, fc_unit: int, attention_unit: int, costs: np.ndarray, missing: np.ndarray,
                 n_missing: int) -> int:
    """CostTables.iteration_on for one element into ``costs`` (8,); missing entries are listed
    (table ids ``table_base`` for fc, ``table_base + 1`` for fixed) and counted."""
    tokens = rlp * tlp
    costs[0] = fc_table[c, ALL_FC, fc_unit, tokens, 0]
    costs[4] = fc_table[c, ALL_FC, fc_unit, tokens, 1]
    if np.isnan(costs[0]):
        missing[n_missing, 0], missing[n_missing, 1], missing[n_missing, 2] = table_base, c, ALL_FC
        missing[n_missing, 3], missing[n_missing, 4] = fc_unit, tokens
        n_missing += 1
    p = fixed_table[c, attention_unit, rlp, tlp]
    if np.isnan(p[0]):
        missing[n_missing, 0], missing[n_missing, 1], missing[n_missing, 2] = table_base + 1, c, attention_unit
        missing[n_missing, 3], missing[n_missing, 4] = rlp, tlp
        n_missing += 1
    costs[1] = p[0] + p[2] * sum_ctx
    costs[2] = p[4]
    costs[3] = p[6]
    costs[5] = p[1] + p[3] * sum_ctx
    costs[6] = p[5]
    costs[7] = p[7]
    return n_missing


@nb.njit(cache=True, error_model="numpy")
def draft_step(c: int, safe: int, before: float, draft_gpus: np.ndarray, draft_fc: np.ndarray,
               draft_fixed: np.ndarray, scratch: np.ndarray, missing: np.ndarray, n_missing: int
               ) -> tuple[float, float, int]:
    """SpecCore.draft_step for one environment: (seconds, joules, missing count)."""
    gpus = draft_gpus[c]
    per_gpu = -(-safe // gpus)
    ctx1 = before + safe
    n_missing = iteration_on(draft_fc, draft_fixed, TABLE_DRAFT, c, per_gpu, 1, ctx1 * per_gpu / safe, GPU, GPU,
                             scratch, missing, n_missing)
    seconds = scratch[0] + scratch[1] + scratch[2] + scratch[3]
    joules = (scratch[4] + scratch[5] + scratch[6] + scratch[7]) * gpus
    return seconds, joules, n_missing


@nb.njit(cache=True, error_model="numpy")
def spec_batch(i: int, c: int, input_lengths: np.ndarray, output_lengths: np.ndarray, gen: np.ndarray,
               draft_gpus: np.ndarray, draft_fc: np.ndarray, draft_fixed: np.ndarray, scratch: np.ndarray,
               missing: np.ndarray, n_missing: int) -> tuple[int, int, float, float, float, int]:
    """Environment i's batch as the spec variant prices it: (RLP, RLP priced (at least 1), context
    sum before the iteration, one draft step's seconds and joules, missing count)."""
    live, total, _ = stochastic_live_context(i, input_lengths, output_lengths, gen)
    safe = max(live, 1)
    before = float(total)
    step_time, step_energy, n_missing = draft_step(c, safe, before, draft_gpus, draft_fc, draft_fixed, scratch,
                                                   missing, n_missing)
    return live, safe, before, step_time, step_energy, n_missing


@nb.njit(cache=True, error_model="numpy")
def spec_cost(c: int, safe: int, before: float, tlp: int, unit: int, attention_units: np.ndarray,
              fc_table: np.ndarray, fixed_table: np.ndarray, step_time: float, step_energy: float,
              costs: np.ndarray, missing: np.ndarray, n_missing: int) -> int:
    """SpecCore.cost_at for one environment and action into ``costs`` (the draft under 'other')."""
    n_missing = iteration_on(fc_table, fixed_table, 0, c, safe, tlp, before + safe * tlp, unit, attention_units[c],
                             costs, missing, n_missing)
    costs[3] = costs[3] + step_time * (tlp - 1)
    costs[7] = costs[7] + step_energy * (tlp - 1)
    return n_missing


@nb.njit(cache=True, error_model="numpy")
def spec_costs(tlp: np.ndarray, unit: np.ndarray, cm: np.ndarray, input_lengths: np.ndarray,
               output_lengths: np.ndarray, gen: np.ndarray, draft_gpus: np.ndarray, draft_fc: np.ndarray,
               draft_fixed: np.ndarray, attention_units: np.ndarray, fc_table: np.ndarray, fixed_table: np.ndarray,
               out: np.ndarray, draft: np.ndarray, missing: np.ndarray) -> int:
    """SpecCore.cost_at for K candidate actions per environment: ``out`` (8, N, K) the target
    iteration plus the draft at TLP ``tlp[i, k]`` with FC on ``unit[i, k]`` (:func:`spec_cost`, as
    :func:`step_spec` prices its action), ``draft`` (2, N) one draft step's seconds and joules.
    Returns the number of missing table entries (listed; the outputs are then incomplete)."""
    costs = np.empty(8)
    n_missing = 0
    for i in range(len(cm)):
        c = cm[i]
        live, safe, before, step_time, step_energy, n_missing = spec_batch(
            i, c, input_lengths, output_lengths, gen, draft_gpus, draft_fc, draft_fixed, costs, missing, n_missing)
        draft[0, i], draft[1, i] = step_time, step_energy
        for k in range(tlp.shape[1]):
            n_missing = spec_cost(c, safe, before, tlp[i, k], unit[i, k], attention_units, fc_table, fixed_table,
                                  step_time, step_energy, costs, missing, n_missing)
            out[:, i, k] = costs
    return n_missing


@nb.njit(cache=True, error_model="numpy")
def step_spec(tlp: np.ndarray, unit: np.ndarray, cm: np.ndarray, keys: np.ndarray, steps: np.ndarray,
              input_lengths: np.ndarray, output_lengths: np.ndarray, gen: np.ndarray,
              last_request_accepted: np.ndarray, last_request_rejected: np.ndarray, last_drafted: np.ndarray,
              last_accepted: np.ndarray, base: np.ndarray, drift: np.ndarray, rho: float, drift_std: float,
              fc_table: np.ndarray, fixed_table: np.ndarray, draft_fc: np.ndarray, draft_fixed: np.ndarray,
              draft_gpus: np.ndarray, attention_units: np.ndarray, alphas: np.ndarray, max_tlp: int,
              best_credit: bool, expected_tokens: bool, token_reward: float, reward_kind: int,
              time_scales: np.ndarray, energy_scales: np.ndarray, targets: np.ndarray, miss_penalty: float,
              max_steps: int, total_time: np.ndarray, total_energy: np.ndarray, tokens: np.ndarray,
              misses: np.ndarray, req_accepted: np.ndarray, req_rejected: np.ndarray, batch_accepted: np.ndarray,
              batch_rejected: np.ndarray, accept_ema: np.ndarray, last_accept: np.ndarray, last_gain: np.ndarray,
              last_unit: np.ndarray, last_share: np.ndarray, estimate_decay: float, cost: np.ndarray,
              rlp: np.ndarray, produced: np.ndarray, missed: np.ndarray, reward: np.ndarray,
              objective: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, live_after: np.ndarray,
              total_after: np.ndarray, longest_after: np.ndarray, missing: np.ndarray) -> int:
    """One iteration of PapiSpecSchedule-v0 in every environment (papi_env.spec_env: draft and
    target cost, the token credit, drafts accepted per request, the acceptance drift, estimates,
    totals, episode ends), observations aside. First every environment is priced; if a cost table
    entry is missing, returns how many (listed in ``missing``) with nothing changed."""
    n, width = len(cm), gen.shape[1]
    costs = np.empty(8)
    probs, row = np.empty(width), np.empty(width)
    value = np.empty(n)
    expected = np.empty(n)
    n_missing = 0
    for i in range(n):  # pricing: no state changes
        c = cm[i]
        live, safe, before, step_time, step_energy, n_missing = spec_batch(
            i, c, input_lengths, output_lengths, gen, draft_gpus, draft_fc, draft_fixed, costs, missing, n_missing)
        n_missing = spec_cost(c, safe, before, tlp[i], unit[i], attention_units, fc_table, fixed_table, step_time,
                              step_energy, costs, missing, n_missing)
        cost[:, i] = costs
        if best_credit or expected_tokens:  # the live requests' acceptance probabilities (others are never read)
            for j in range(width):
                if gen[i, j] < output_lengths[i, j]:
                    probs[j] = 1.0 / (1.0 + np.exp(-(base[i, j] + drift[i, j])))
        ts, es, target = time_scales[c], energy_scales[c], targets[c]
        if best_credit:  # the least objective term per expected token over every action now
            best = np.inf
            for t in range(1, max_tlp + 1):
                for j in range(width):
                    row[j] = (min(expected_gain(probs[j], t), float(output_lengths[i, j] - gen[i, j]))
                              if gen[i, j] < output_lengths[i, j] else 0.0)
                k = row_sum(row)  # numpy's summation over the slot row
                for u in range(2):
                    n_missing = spec_cost(c, safe, before, t, u, attention_units, fc_table, fixed_table, step_time,
                                          step_energy, costs, missing, n_missing)
                    if k == 0.0:  # no live request (an episode awaiting reset): nothing to credit
                        per_token = np.nan
                    else:
                        per_token = -objective_reward(reward_kind, costs[0] + costs[1] + costs[2] + costs[3],
                                                      costs[4] + costs[5] + costs[6] + costs[7], ts, es, target,
                                                      k / safe, total_time[i], total_energy[i], miss_penalty) / k
                    if per_token < best or np.isnan(per_token):
                        best = per_token
            value[i] = best
        else:  # minus the objective term per token of one TLP-1 iteration with PAPI's placement
            ref_unit = 1 if safe > alphas[i] else 0
            n_missing = spec_cost(c, safe, before, 1, ref_unit, attention_units, fc_table, fixed_table, step_time,
                                  step_energy, costs, missing, n_missing)
            value[i] = -objective_reward(reward_kind, costs[0] + costs[1] + costs[2] + costs[3],
                                         costs[4] + costs[5] + costs[6] + costs[7], ts, es, target, 1.0,
                                         total_time[i], total_energy[i], miss_penalty) / safe
        if expected_tokens:
            for j in range(width):
                row[j] = (min(expected_gain(probs[j], tlp[i]), float(output_lengths[i, j] - gen[i, j]))
                          if gen[i, j] < output_lengths[i, j] else 0.0)
            expected[i] = row_sum(row)
        rlp[i] = live
    if n_missing:
        return n_missing
    for i in range(n):  # the iteration
        c, t = cm[i], tlp[i]
        safe = max(rlp[i], 1)
        for j in range(width):
            if gen[i, j] < output_lengths[i, j]:
                probs[j] = 1.0 / (1.0 + np.exp(-(base[i, j] + drift[i, j])))
        made = advance_stochastic(i, t, keys[i], steps[i], probs, output_lengths, gen, last_request_accepted,
                                  last_request_rejected, last_drafted, last_accepted)
        advance_drift(i, keys[i], steps[i], output_lengths, gen, drift, rho, drift_std)
        seconds = iteration_time(cost, i)
        joules = iteration_energy(cost, i)
        ts, es, target = time_scales[c], energy_scales[c], targets[c]
        objective[i] = objective_reward(reward_kind, seconds, joules, ts, es, target, made / safe, total_time[i],
                                        total_energy[i], miss_penalty)
        if expected_tokens:
            reward[i] = (objective_reward(reward_kind, seconds, joules, ts, es, target, expected[i] / safe,
                                          total_time[i], total_energy[i], miss_penalty)
                         + token_reward * expected[i] * value[i])
        else:
            reward[i] = objective[i] + token_reward * made * value[i]
        rejected = 0.0
        for j in range(width):
            req_accepted[i, j] = estimate_decay * req_accepted[i, j] + last_request_accepted[i, j]
            req_rejected[i, j] = estimate_decay * req_rejected[i, j] + last_request_rejected[i, j]
            rejected += last_request_rejected[i, j]
        a = last_accepted[i]
        batch_accepted[i] = estimate_decay * batch_accepted[i] + a
        batch_rejected[i] = estimate_decay * batch_rejected[i] + rejected
        accept_ema[i] = (batch_accepted[i] + PRIOR_ACCEPT * PRIOR_COUNT) / (
            batch_accepted[i] + batch_rejected[i] + PRIOR_COUNT)
        last_accept[i] = a / max(a + rejected, 1.0) if last_drafted[i] > 0 else 0.0
        last_unit[i], last_gain[i], last_share[i] = unit[i], made / safe, float(unit[i])
        steps[i] += 1
        produced[i] = made
        missed[i] = seconds > target * (made / safe)
        total_time[i] += seconds
        total_energy[i] += joules
        tokens[i] += made
        misses[i] += missed[i]
        live_after[i], total_after[i], longest_after[i] = stochastic_live_context(i, input_lengths, output_lengths, gen)
        terminated[i] = live_after[i] == 0
        truncated[i] = not terminated[i] and steps[i] >= max_steps
    return 0


@nb.njit(cache=True, error_model="numpy")
def spec_features(obs: np.ndarray, cm: np.ndarray, input_lengths: np.ndarray, output_lengths: np.ndarray,
                  gen: np.ndarray, log_alphas: np.ndarray, last_accept: np.ndarray, accept_ema: np.ndarray,
                  last_gain: np.ndarray, tlp_scale: float, fc_table: np.ndarray, fixed_table: np.ndarray,
                  draft_fc: np.ndarray, draft_fixed: np.ndarray, draft_gpus: np.ndarray,
                  attention_units: np.ndarray, req_accepted: np.ndarray, req_rejected: np.ndarray,
                  missing: np.ndarray) -> int:
    """PapiSpecSchedule-v0's seven own features in obs[:, 8:15] (papi_env.spec_env's table), float32
    in [0, 1]; the number of missing cost-table entries (then obs is incomplete)."""
    width = gen.shape[1]
    costs, row = np.empty(8), np.empty(width)
    n_missing = 0
    for i in range(len(cm)):
        c = cm[i]
        live, safe, before, step_time, _, n_missing = spec_batch(
            i, c, input_lengths, output_lengths, gen, draft_gpus, draft_fc, draft_fixed, costs, missing, n_missing)
        n_missing = iteration_on(fc_table, fixed_table, 0, c, safe, 1, before + safe, 0, attention_units[c], costs,
                                 missing, n_missing)
        ratio = step_time / (costs[0] + costs[1] + costs[2] + costs[3])
        count = 0
        for j in range(width):
            live_j = gen[i, j] < output_lengths[i, j]
            count += live_j
            row[j] = (req_accepted[i, j] + PRIOR_ACCEPT * PRIOR_COUNT) / (
                req_accepted[i, j] + req_rejected[i, j] + PRIOR_COUNT) if live_j else 0.0
        mean = row_sum(row) / max(count, 1) if count > 0 else PRIOR_ACCEPT
        for j in range(width):
            if gen[i, j] < output_lengths[i, j]:
                own = (req_accepted[i, j] + PRIOR_ACCEPT * PRIOR_COUNT) / (
                    req_accepted[i, j] + req_rejected[i, j] + PRIOR_COUNT)
                row[j] = (own - mean) ** 2
        square = row_sum(row)
        spread = np.sqrt(square / max(count, 1))
        values = (log_alphas[i], last_accept[i], accept_ema[i], last_gain[i] / tlp_scale, min(ratio, 1.0), mean,
                  min(2.0 * spread, 1.0))
        for column in range(7):
            v = np.float32(values[column])
            obs[i, 8 + column] = min(max(v, np.float32(0.0)), np.float32(1.0))
    return n_missing
