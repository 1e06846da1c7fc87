"""Compiled kernels of the static-batch MDP (numba): rewards, episode ends and observations.

One environment step of the lock-step variants (PapiSchedule, PapiKernelSchedule,
PapiSplitSchedule) is one call of :func:`step_lockstep`: it prices the iteration
(sim.kernels.price_lockstep), rewards it, advances the batches (sim.kernels.advance_lockstep),
adds it to the episode totals, ends episodes and moves a TLP schedule on, for every environment
in one loop each; :func:`observe_shared` observes the eight shared features (after any resets).
The per-element operations and their order are those of the numpy code they replaced, so the
numbers are the same bit for bit.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from sim.kernels import advance_lockstep, lockstep_live_context, price_lockstep

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
def price_and_reward(fc_mode: int, actions: np.ndarray, attention_units: np.ndarray, cm: np.ndarray,
                     tlp: np.ndarray, size: np.ndarray, first: np.ndarray, generated: np.ndarray,
                     live_input: np.ndarray, live_max_input: np.ndarray, fc_table: np.ndarray,
                     split_table: np.ndarray, fixed_table: np.ndarray, reward_kind: int, time_scales: np.ndarray,
                     energy_scales: np.ndarray, targets: np.ndarray, miss_penalty: float, total_time: np.ndarray,
                     total_energy: np.ndarray, cost: np.ndarray, rlp: np.ndarray, reward: np.ndarray,
                     missing: np.ndarray) -> int:
    """The cost (8, N) and reward (N,) of the actions now, without stepping; the number of missing
    table entries (as sim.kernels.price_lockstep)."""
    n_missing = price_lockstep(fc_mode, actions, attention_units, cm, tlp, size, first, generated, live_input,
                               live_max_input, fc_table, split_table, fixed_table, cost, rlp, missing)
    if n_missing:
        return n_missing
    for i in range(len(cm)):
        c = cm[i]
        reward[i] = objective_reward(reward_kind, iteration_time(cost, i), iteration_energy(cost, i), time_scales[c],
                                     energy_scales[c], targets[c], float(tlp[i]), total_time[i], total_energy[i],
                                     miss_penalty)
    return 0


@nb.njit(cache=True)
def step_lockstep(fc_mode: int, actions: np.ndarray, attention_units: np.ndarray, cm: np.ndarray,
                  tlp: np.ndarray, size: np.ndarray, first: np.ndarray, generated: np.ndarray,
                  next_output: np.ndarray, live_input: np.ndarray, live_max_input: np.ndarray,
                  output_lengths: np.ndarray, prefix_output: np.ndarray, suffix_input: np.ndarray,
                  suffix_max_input: np.ndarray, fc_table: np.ndarray, split_table: np.ndarray,
                  fixed_table: np.ndarray, reward_kind: int, time_scales: np.ndarray, energy_scales: np.ndarray,
                  targets: np.ndarray, miss_penalty: float, max_steps: int, total_time: np.ndarray,
                  total_energy: np.ndarray, tokens: np.ndarray, misses: np.ndarray, steps: np.ndarray,
                  schedule_starts: np.ndarray, schedule_values: np.ndarray, cost: np.ndarray, rlp: np.ndarray,
                  produced: np.ndarray, missed: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
                  truncated: np.ndarray, live_after: np.ndarray, total_after: np.ndarray, longest_after: np.ndarray,
                  missing: np.ndarray) -> int:
    """One iteration in every environment (see the module docstring), observations aside
    (:func:`observe_shared`, after any resets); ``*_after``: the batches' live requests and
    context sum and maximum after it. Returns the number of cost table entries that were missing
    (listed in ``missing``); if not 0, nothing changed and the caller fills them and calls again."""
    n_missing = price_and_reward(fc_mode, actions, attention_units, cm, tlp, size, first, generated, live_input,
                                 live_max_input, fc_table, split_table, fixed_table, reward_kind, time_scales,
                                 energy_scales, targets, miss_penalty, total_time, total_energy, cost, rlp, reward,
                                 missing)
    if n_missing:
        return n_missing
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
        live_after[i], total_after[i], longest_after[i] = lockstep_live_context(
            size, first, generated, live_input, live_max_input, i)
        terminated[i] = live_after[i] == 0
        truncated[i] = not terminated[i] and steps[i] >= max_steps
        if len(schedule_starts) and not (terminated[i] or truncated[i]):  # a TLP schedule moves on
            k = np.searchsorted(schedule_starts, steps[i], side="right") - 1
            tlp[i] = schedule_values[k]
    return 0
