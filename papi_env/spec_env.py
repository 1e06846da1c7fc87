"""PapiSpecSchedule-v0: choose the speculation length (TLP) and the FC placement every iteration.

In PAPI the user sets TLP and every verified token counts [P]. Here drafted tokens are accepted
with a per-request probability that varies across requests and over time, a draft model pays
for every extra token, and the scheduler picks TLP and the FC unit each iteration.

Per iteration at speculation length TLP: the draft model (``draft_model``, default TinyLlama-1.1B
on the GPUs, hardware.speculation.DraftCost) proposes TLP - 1 tokens per live request; the target
model verifies TLP tokens per request (the iteration's cost at RLP x TLP, FC where the action
says); request i gains 1 + (leading drafts accepted, each with its own p_i(t)) tokens
(sim.acceptance; the mean acceptance of a batch is drawn from
``acceptance["mean_range"]``, default 0.4..0.9).

Action: ``MultiDiscrete([max_tlp, 2])``: (TLP - 1, FC unit 0 = FC-PIM, 1 = GPU).

Observation (``Box(0, 1, (15,))``): the eight features of PapiSchedule-v0 (index 1 is the TLP of
the last iteration; index 6 its FC placement), then

====  ==========================================================  ======================
idx   value                                                       scale
====  ==========================================================  ======================
8     the objective's calibrated crossover alpha (all FC)         log2(alpha + 1) / 12
9     acceptance seen last iteration, A / (A + R)                 (0 at TLP 1)
10    running batch acceptance estimate                           -
11    tokens gained per live request, last iteration              / TLP_SCALE
12    one draft step's time / one target iteration at TLP 1       clipped to 1
13    mean of the live requests' own acceptance estimates         -
14    their standard deviation                                    x 2, clipped to 1
====  ==========================================================  ======================

Draws: the per-request offsets and drifts are drawn at reset from the environment's seeded
generator; which drafts are accepted (one uniform per request and iteration: the number of
leading accepted drafts is geometric, P(>= j) = p^j) and the drift's innovations come from
sim.random_streams, so N environments stepped together draw what N stepped apart draw.

Acceptance estimates are what a runtime can count: A drafts accepted and R rejections seen (a
request's drafts after its first rejection are never verified, so "accepted / drafted" would be
biased low); the estimate is (A + 1.3) / (A + R + 2) (a Beta prior with mean 0.65 worth two
drafts) over counts that decay by ``ESTIMATE_DECAY`` per iteration (the batch's and each request's).

Reward: the objective's term of papi_env.base on the iteration's cost *including the draft*
(the per-token latency divides by the tokens each live request actually gained; this term alone
is ``info["objective_reward"]`` and sums to the episode objective), plus a credit for every
accepted token worth what non-speculative decoding would pay for it now: ``token_reward`` x
tokens x (-objective term of TLP 1 with PAPI's placement) / RLP. So a step earns about zero when
speculation produces tokens exactly as cheaply as TLP 1, more when cheaper. This is
potential-based shaping of the objective (potential: the remaining tokens times the current
cost per token, Ng et al. 1999) and keeps a discounted learner from preferring cheap, short
iterations over productive ones. ``info["score"]`` is the objective alone.

``token_credit`` sets the credit per token. ``"tlp1"`` (default) is the above. With a discount
gamma < 1 that over-values tokens: a token gained now saves the *best* cost per token of the
iterations to come, which is below TLP 1's when speculation pays, so a short-horizon learner is
pushed toward longer speculation than minimises cost per token. ``"best"`` credits each token at
the least objective term per expected token of any action now (``best_token_value``, with the
true acceptance probabilities): the step reward is then at most about zero and about zero only
for the action with the least cost per expected token (Dinkelbach's condition for a ratio
objective). The reward reads simulator state the observation hides, as a training signal may;
dynamics, observation and ``info["score"]`` are unchanged.

``reward_tokens`` sets which tokens the reward counts. ``"drawn"`` (default): the tokens the
requests actually gained. ``"expected"``: the tokens the action is expected to gain with the true
acceptance probabilities (the reward is then ``step_objective(action)``), which removes the
acceptance draw's noise from the training signal; as with ``"best"``, only the reward changes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from hardware.calibrate import fc_on_gpu
from hardware.cost_tables import UNITS, CostTables
from hardware.speculation import DraftCost
from hardware.systems import IterationCost
from papi_env import kernels
from papi_env.base import PapiBaseEnv
from papi_env.core import (
    CTX_SCALE,
    LOG2,
    LOG_R_SCALE,
    RLP_SCALE,
    TLP_SCALE,
    VectorCore,
    put,
    put_all,
)
from papi_env.kernels import PRIOR_ACCEPT, PRIOR_COUNT, REWARD_CODES
from sim.acceptance import AcceptanceModel, DriftingAcceptance, expected_gain, expected_gain_per_request

OBS_SIZE = 15
UNIT_NAMES = np.array(UNITS, dtype=object)
TOKEN_CREDITS = ("tlp1", "best")
REWARD_TOKENS = ("drawn", "expected")
ESTIMATE_DECAY = 0.8  # [D] per-iteration forgetting of acceptance counts (time constant ~5 iterations)


def estimate(accepted, rejected):
    """Acceptance estimate from decayed counts of accepted drafts and seen rejections (Beta prior)."""
    return (accepted + PRIOR_ACCEPT * PRIOR_COUNT) / (accepted + rejected + PRIOR_COUNT)


class SpecCore(VectorCore):
    """PapiSpecSchedule-v0's dynamics for N environments: speculation length and FC unit."""

    obs_size = OBS_SIZE
    stochastic_variant = True

    def __init__(self, num_envs: int = 1, max_tlp: int = 8, draft_model: str = "tinyllama-1.1b",
                 acceptance: dict | None = None, token_reward: float = 1.0, token_credit: str = "tlp1",
                 reward_tokens: str = "drawn", **kwargs: Any) -> None:
        if isinstance(max_tlp, bool) or not isinstance(max_tlp, int) or not 1 <= max_tlp <= TLP_SCALE:
            raise ValueError(f"max_tlp must be an integer in [1, {int(TLP_SCALE)}], got {max_tlp!r}")
        if kwargs.get("acceptance_rate") is not None:
            raise ValueError("PapiSpecSchedule-v0 models acceptance per request: use `acceptance` "
                             f"({list(AcceptanceModel.__dataclass_fields__)}), not acceptance_rate")
        if token_credit not in TOKEN_CREDITS:
            raise ValueError(f"token_credit must be one of {TOKEN_CREDITS}, got {token_credit!r}")
        if reward_tokens not in REWARD_TOKENS:
            raise ValueError(f"reward_tokens must be one of {REWARD_TOKENS}, got {reward_tokens!r}")
        if isinstance(token_reward, bool) or not isinstance(token_reward, (int, float)) or not (
                math.isfinite(token_reward) and token_reward >= 0):
            raise ValueError(f"token_reward must be a finite number >= 0, got {token_reward!r}")
        kwargs.setdefault("tlp", 1)
        super().__init__(num_envs, **kwargs)
        self.token_credit, self.reward_tokens = token_credit, reward_tokens
        self.acceptance_model = AcceptanceModel.from_any(acceptance)
        self.max_tlp = max_tlp
        # table lookups per environment in a step at most: draft, action, TLP-1 reference, every action (best credit)
        self._missing = np.zeros(((4 * max_tlp + 8) * self.num_envs, 5), dtype=np.int64)
        # every action as (1, 2 max_tlp) TLPs and units: each TLP on FC-PIM, then each on the GPUs
        self.every_tlp = np.tile(np.arange(1, max_tlp + 1), 2)[None, :]
        self.every_unit = np.repeat([0, 1], max_tlp)[None, :]
        self.token_reward = float(token_reward)
        for cm in self.cost_models:
            if set(cm.fc_units) != set(UNITS):
                raise ValueError(f"PapiSpecSchedule-v0 needs a system with FC on both units (e.g. 'papi'); "
                                 f"'{cm.system.name}' has {list(cm.fc_units)}")
        self.drafts = [DraftCost(cm.system, draft_model) for cm in self.cost_models]
        self.draft_tables = CostTables.shared([d.cost_model for d in self.drafts])
        self.draft_gpus = np.array([d.gpus for d in self.drafts])
        n, w = self.num_envs, self.batch.width
        self.acceptance_state = DriftingAcceptance(self.acceptance_model, n, w)
        self.req_accepted, self.req_rejected = np.zeros((n, w)), np.zeros((n, w))
        self.batch_accepted, self.batch_rejected = np.zeros(n), np.zeros(n)
        self.accept_ema = np.full(n, PRIOR_ACCEPT)
        self.last_unit = np.zeros(n, dtype=np.int64)
        self.last_accept, self.last_gain = np.zeros(n), np.zeros(n)

    def single_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return spaces.MultiDiscrete([self.max_tlp, 2]), spaces.Box(0.0, 1.0, shape=(self.obs_size,), dtype=np.float32)

    def _begin_variants(self, envs: np.ndarray) -> None:
        self.acceptance_state.begin(envs, self.batch.size[envs], self.rngs)
        self.req_accepted[envs] = self.req_rejected[envs] = 0.0
        self.batch_accepted[envs] = self.batch_rejected[envs] = 0.0
        self.accept_ema[envs] = PRIOR_ACCEPT
        self.last_unit[envs], self.last_accept[envs], self.last_gain[envs] = 0, 0.0, 0.0

    def _reset_info(self, envs: np.ndarray) -> dict[str, np.ndarray]:
        info = super()._reset_info(envs)
        put(info, "mean_acceptance", self.acceptance_state.mean, envs)
        return info

    # ------------------------------------------------------------------------------ costs
    def probabilities(self) -> np.ndarray:
        """(N, width) every request's acceptance probability p_i(t) now."""
        return self.acceptance_state.probabilities()

    def request_estimates(self) -> np.ndarray:
        """(N, width) each request's running acceptance estimate."""
        return estimate(self.req_accepted, self.req_rejected)

    def draft_step(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) seconds and joules of one draft step in every environment now: its live requests
        (at least 1), each context one token longer than before the iteration
        (hardware.speculation.DraftCost.step), whatever the TLP (papi_env.kernels.draft_step)."""
        ones = np.ones((self.num_envs, 1), dtype=np.int64)
        return self._priced(ones, np.zeros_like(ones))[1]

    def cost_at(self, tlp: np.ndarray, unit: np.ndarray | int) -> IterationCost:
        """Target iteration plus draft at speculation length ``tlp`` with FC on ``unit``, (N,) or
        (N, K) for K candidates per environment (``unit`` broadcast to ``tlp``'s shape), priced by
        the kernels that price a step (papi_env.kernels.spec_costs)."""
        tlp = np.asarray(tlp, dtype=np.int64)
        unit = np.broadcast_to(np.asarray(unit, dtype=np.int64), tlp.shape)
        one = tlp.ndim == 1
        t2, u2 = (tlp[:, None], unit[:, None]) if one else (tlp, unit)
        shape = (self.num_envs, t2.shape[1])
        costs, _ = self._priced(np.ascontiguousarray(np.broadcast_to(t2, shape)),
                                np.ascontiguousarray(np.broadcast_to(u2, shape)))
        return IterationCost(*(c[:, 0] if one else c for c in costs))

    def _priced(self, tlp: np.ndarray, unit: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """((8, N, K) costs of the candidate actions, (N,) draft step seconds and joules), filling
        the cost tables as the kernel reports entries missing."""
        n, k = tlp.shape
        out, draft = np.empty((8, n, k)), np.empty((2, n))
        missing = np.zeros((n * (2 * k + 2), 5), dtype=np.int64)
        b = self.batch
        while True:
            n_missing = kernels.spec_costs(tlp, unit, self.cm, b.input_lengths, b.output_lengths, b.gen,
                                           self.draft_gpus, self.draft_tables.fc, self.draft_tables.fixed,
                                           self.attention_units, self.tables.fc, self.tables.fixed, out, draft, missing)
            if not n_missing:
                return out, (draft[0], draft[1])
            self._fill(missing[:n_missing])

    def expected_tokens(self, tlp: int | np.ndarray, probs: np.ndarray) -> np.ndarray:
        """(N,) expected tokens of every batch at ``tlp`` (one, or (N,) per environment) if request
        j accepts with probs[:, j] (no request gains more than it has left)."""
        rows, slots = self.live_slots()
        p = probs[rows, slots]
        gains = expected_gain(p, tlp) if np.isscalar(tlp) else expected_gain_per_request(p, tlp[rows])
        return self._sum_over_slots(np.minimum(gains, self.batch.remaining()[rows, slots]))

    def _sum_over_slots(self, live_values: np.ndarray) -> np.ndarray:
        """Per-environment sums of values given at the live slots (``live_slots`` order): (L,) ->
        (N,), (L, K) -> (N, K). Each is the sum over a whole row of request slots, zero off the
        live ones: one summation order for every expected-token count."""
        rows, slots = self.live_slots()
        full = np.zeros((self.num_envs, *live_values.shape[1:], self.batch.width))
        full[rows, ..., slots] = live_values
        return full.sum(axis=-1)

    def token_value(self) -> np.ndarray:
        """(N,) reward credit per accepted token: minus the objective term per token of one TLP-1
        iteration with PAPI's placement, now."""
        rlp = np.maximum(self.rlp(), 1)
        ones = np.ones_like(rlp)
        reference = self.cost_at(ones, fc_on_gpu(rlp, ones, self.alpha_array()).astype(np.int64))
        return -self.objective_reward(reference, ones.astype(np.float64)) / rlp

    def best_token_value(self, probs: np.ndarray | None = None) -> np.ndarray:
        """(N,) reward credit per token for ``token_credit="best"``: the least objective term per
        expected token over every action now, with the requests' true acceptance probabilities
        ``probs`` (default ``probabilities()``: simulator state a runtime cannot see; used in the
        reward only, never observed)."""
        rlp = np.maximum(self.rlp(), 1)[:, None]
        probs = self.probabilities() if probs is None else probs
        rows, slots = self.live_slots()
        p, left = probs[rows, slots], self.batch.remaining()[rows, slots]
        k = self._sum_over_slots(np.stack([np.minimum(expected_gain(p, t), left) for t in range(1, self.max_tlp + 1)],
                                          axis=1))  # (N, TLP): expected_tokens at every TLP
        k = np.concatenate([k, k], axis=1)  # every action priced at once
        with np.errstate(divide="ignore", invalid="ignore"):
            per_token = -self.objective_reward(self.cost_at(np.broadcast_to(self.every_tlp, k.shape), self.every_unit),
                                               k / rlp) / k
        return per_token.min(axis=1)

    def credit_per_token(self, probs: np.ndarray | None = None) -> np.ndarray:
        """(N,) the reward's credit per token gained, under ``token_credit`` (``probs``: the
        requests' acceptance probabilities now, if already computed)."""
        return self.best_token_value(probs) if self.token_credit == "best" else self.token_value()

    def action_masks(self) -> np.ndarray:
        """(N, max_tlp + 2) every TLP and unit is always allowed."""
        return np.ones((self.num_envs, self.max_tlp + 2), dtype=bool)

    # -------------------------------------------------------------------------------- step
    def check_actions(self, actions: Any, stepping: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(TLP, FC unit) arrays from actions (N, 2) of (TLP - 1, unit)."""
        a = np.asarray(actions)
        ok = a.shape == (self.num_envs, 2) and a.dtype.kind in "iuf"
        if ok:
            whole = np.all(a == np.round(a), axis=1)
            ok_envs = whole & (a[:, 0] >= 0) & (a[:, 0] < self.max_tlp) & ((a[:, 1] == 0) | (a[:, 1] == 1))
        bad = stepping & (~ok_envs if ok else True)
        if np.any(bad):
            shown = a[int(np.argmax(bad))] if ok else a
            raise ValueError(f"invalid action {shown!r}: expected (TLP - 1 in [0, {self.max_tlp - 1}], FC unit 0/1)")
        a = np.where(stepping[:, None], a, 0).astype(np.int64)
        return a[:, 0] + 1, a[:, 1]

    def expected_reward(self, action: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """(N,) expected reward of the actions now (expected tokens with the true probabilities)."""
        tlp, unit = action
        rlp = np.maximum(self.rlp(), 1)
        k = self.expected_tokens(tlp, self.probabilities())
        return (self.objective_reward(self.cost_at(tlp, unit), k / rlp)
                + self.token_reward * k * self.credit_per_token())

    def step(self, action: tuple[np.ndarray, np.ndarray], observe: bool = True):
        """One iteration in every environment, compiled (papi_env.kernels.step_spec)."""
        tlp, unit = (np.ascontiguousarray(x, dtype=np.int64) for x in action)
        n, b, acc = self.num_envs, self.batch, self.acceptance_state
        out, objective = self._new_outputs(), np.empty(n)  # fresh arrays: the infos keep them
        self._run(kernels.step_spec, tlp, unit, self.cm, self.keys, self.steps, b.input_lengths, b.output_lengths,
                  b.gen, b.last_request_accepted, b.last_request_rejected, b.last_drafted, b.last_accepted, acc.base,
                  acc.drift, acc.rho, self.acceptance_model.drift, self.tables.fc, self.tables.fixed,
                  self.draft_tables.fc, self.draft_tables.fixed, self.draft_gpus, self.attention_units,
                  self.alpha_array().astype(np.float64), self.max_tlp, self.token_credit == "best",
                  self.reward_tokens == "expected", self.token_reward, REWARD_CODES[self.reward_kind],
                  self.time_scales, self.energy_scales, self.targets, self.miss_penalty, self.max_steps,
                  self.total_time, self.total_energy, self.tokens, self.misses, self.req_accepted,
                  self.req_rejected, self.batch_accepted, self.batch_rejected, self.accept_ema, self.last_accept,
                  self.last_gain, self.last_unit, self.last_share, ESTIMATE_DECAY, out.cost, out.rlp, out.produced,
                  out.missed, out.reward, objective, out.terminated, out.truncated, out.live, out.total, out.longest)
        self.tlp = tlp
        self._context = (out.live, out.total, out.longest)
        self._derived.clear()
        info: dict[str, np.ndarray] = {}
        put_all(info, "placement", UNIT_NAMES[unit], fresh=True)
        put_all(info, "tlp", tlp)  # copies of state arrays
        put_all(info, "drafted", b.last_drafted)
        put_all(info, "accepted", b.last_accepted)
        put_all(info, "objective_reward", objective, fresh=True)
        self.put_step_info(info, out.cost, out.produced, out.rlp, out.missed, out.terminated, out.truncated)
        obs = self.end_observations(out.terminated) if observe else None
        return obs, out.reward, out.terminated, out.truncated, info

    def _fill(self, entries: np.ndarray) -> None:
        """Missing entries of the target's tables (ids 0, 1) and of the draft model's (3, 4)."""
        draft = entries[:, 0] >= kernels.TABLE_DRAFT
        if (~draft).any():
            self.tables.fill(entries[~draft])
        if draft.any():
            rows = entries[draft].copy()
            rows[:, 0] -= kernels.TABLE_DRAFT
            self.draft_tables.fill(rows)

    def observe(self) -> np.ndarray:
        """(N, 15) float32 observations: the eight shared features, then the variant's seven
        (papi_env.kernels.spec_features)."""
        rlp, total, longest = self._batch_state()
        obs = np.empty((self.num_envs, self.obs_size), dtype=np.float32)
        kernels.observe_shared(obs, rlp, total, longest, self.tlp, self.batch.size, LOG2, self.last_share, self.steps,
                               self.max_steps, RLP_SCALE, TLP_SCALE, CTX_SCALE)
        b = self.batch
        log_alphas = self._per_env.get("log_alphas")  # constant over an episode: made once after a reset
        if log_alphas is None:
            log_alphas = self._per_env["log_alphas"] = np.log2(self.alpha_array() + 1.0) / LOG_R_SCALE
        self._run(kernels.spec_features, obs, self.cm, b.input_lengths, b.output_lengths, b.gen, log_alphas,
                  self.last_accept,
                  self.accept_ema, self.last_gain, TLP_SCALE, self.tables.fc, self.tables.fixed,
                  self.draft_tables.fc, self.draft_tables.fixed, self.draft_gpus, self.attention_units,
                  self.req_accepted, self.req_rejected)
        return self.with_descriptors(obs)

    # -------------------------------------------------------------------------- features
    def draft_ratio(self) -> np.ndarray:
        """(N,) one draft step's time over one target iteration at TLP 1 with FC on FC-PIM."""
        ones = np.ones((self.num_envs, 1), dtype=np.int64)
        target, (step_time, _) = self._priced(ones, np.zeros_like(ones))  # TLP 1: no draft in the target's cost
        return step_time / IterationCost(*target[:, :, 0]).time


class AcceptanceView:
    """Environment i's acceptance process (its per-request acceptance probabilities now)."""

    def __init__(self, core: SpecCore, i: int = 0) -> None:
        self._core, self._i = core, i

    @property
    def mean(self) -> float:
        return float(self._core.acceptance_state.mean[self._i])

    def probabilities(self) -> np.ndarray:
        """p_i(t) for every request of the batch (finished ones included), sorted by output length."""
        return self._core.probabilities()[self._i, :int(self._core.batch.size[self._i])]


class PapiSpecScheduleEnv(PapiBaseEnv):
    """Speculation length and FC placement per iteration. See the module docstring."""

    core_class = SpecCore
    variant = "spec"
    max_tlp = property(lambda self: self.core.max_tlp)
    token_credit = property(lambda self: self.core.token_credit)
    reward_tokens = property(lambda self: self.core.reward_tokens)
    token_reward = property(lambda self: self.core.token_reward)
    acceptance_model = property(lambda self: self.core.acceptance_model)
    accept_ema = property(lambda self: float(self.core.accept_ema[0]))
    last_accept = property(lambda self: float(self.core.last_accept[0]), doc="Acceptance seen last iteration.")

    @property
    def draft(self) -> DraftCost:
        """This episode's draft model cost."""
        return self.core.drafts[int(self.core.cm[0])]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self.acceptance = AcceptanceView(self.core)
        return obs, info

    def draft_ratio(self) -> float:
        """One draft step's time over one target iteration at TLP 1 with FC on FC-PIM (runtime timers)."""
        return float(self.core.draft_ratio()[0])

    def request_estimates(self) -> np.ndarray:
        """Each request's running acceptance estimate (sorted by output length)."""
        return self.core.request_estimates()[0, :self.batch.size]

    def cost_at(self, tlp: int, unit: int) -> IterationCost:
        """Target iteration plus draft at speculation length ``tlp`` with FC on ``unit``."""
        c = self.core.cost_at(np.array([tlp]), np.array([unit]))
        return IterationCost(*(float(v[0]) for v in c))

    def expected_tokens(self, tlp: int, p: np.ndarray | float, known_lengths: bool = True) -> float:
        """Expected tokens of the batch at ``tlp`` if live request i accepts with p[i] (or p);
        with ``known_lengths``, no request gains more than it has left (hidden from a runtime,
        which does not know the output lengths)."""
        mask = self.batch.live_mask()
        probs = np.broadcast_to(np.asarray(p, dtype=np.float64), mask.shape)[mask]
        gains = expected_gain(probs, tlp)
        return float((np.minimum(gains, self.batch.remaining()[mask]) if known_lengths else gains).sum())

    def action_values(self, p: np.ndarray | float, known_lengths: bool = True) -> np.ndarray:
        """Objective cost per expected token of every action this iteration, shape (max_tlp, 2)
        [TLP - 1, unit], if request i accepts with p[i]: seconds, joules, the episode's
        time x energy increase in s x J (edp: (T + t)(E + e) - T E with T, E the totals so far,
        the objective's own marginal), or (time term + miss penalty) per token (latency_target),
        each per expected token. Lower is better. ``known_lengths``: see expected_tokens."""
        rlp, kind, core = self.batch.live, self.reward_kind, self.core
        k = np.tile([self.expected_tokens(t, p, known_lengths) for t in range(1, self.max_tlp + 1)], 2)[None, :]
        c = core.cost_at(core.every_tlp, core.every_unit)  # every action at once
        if kind == "latency":
            values = c.time / k
        elif kind == "energy":
            values = c.energy / k
        elif kind == "edp":
            values = self.core.edp_increase(c.time, c.energy) / k
        else:
            values = (c.time / self.time_scale + self.miss_penalty * self.core.missed(c.time, k / rlp)) / k
        return values.reshape(2, self.max_tlp).T  # (TLP - 1, unit)

    def candidate_actions(self) -> list[tuple[int, int]]:
        return [(t, u) for t in range(self.max_tlp) for u in (0, 1)]

    def token_value(self) -> float:
        return float(self.core.token_value()[0])

    def best_token_value(self) -> float:
        return float(self.core.best_token_value()[0])

    def credit_per_token(self) -> float:
        return float(self.core.credit_per_token()[0])

    def _describe_last_action(self) -> str:
        return f"FC on {UNITS[int(self.core.last_unit[0])]:3s} accept {self.last_accept:.2f}"


__all__ = ["OBS_SIZE", "PapiSpecScheduleEnv", "SpecCore", "estimate"]
