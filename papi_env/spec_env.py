"""PapiSpecSchedule-v0: choose the speculation length (TLP) and the FC placement every iteration.

In PAPI the user sets TLP and every verified token counts [P]. Here drafted tokens are accepted
with a per-request probability that varies across requests and over time, a draft model pays
for every extra token, and the scheduler picks TLP and the FC unit each iteration.

Per iteration at speculation length TLP: the draft model (``draft_model``, default TinyLlama-1.1B
on the GPUs, hardware.speculation.DraftCost) proposes TLP - 1 tokens per live request; the target
model verifies TLP tokens per request (the iteration's cost at RLP x TLP, FC where the action
says); request i gains 1 + (leading drafts accepted, each with its own p_i(t)) tokens
(hardware.speculation.AcceptanceProcess; the mean acceptance of a batch is drawn from
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

from hardware.costs import Cost
from hardware.speculation import AcceptanceModel, AcceptanceProcess, DraftCost, expected_gain
from hardware.systems import IterationCost
from papi_env.base import LOG_R_SCALE, TLP_SCALE, PapiBaseEnv

OBS_SIZE = 15
UNITS = ("pim", "gpu")
TOKEN_CREDITS = ("tlp1", "best")
REWARD_TOKENS = ("drawn", "expected")
ESTIMATE_DECAY = 0.8  # [D] per-iteration forgetting of acceptance counts (time constant ~5 iterations)
PRIOR_ACCEPT, PRIOR_COUNT = 0.65, 2.0  # [D] Beta prior: mean 0.65 (middle of 0.4..0.9), worth 2 drafts


def with_draft(c: IterationCost, draft) -> IterationCost:
    """The target iteration's cost plus the draft model's (booked under 'other')."""
    return c._replace(other_time=c.other_time + draft.time, other_energy=c.other_energy + draft.energy)


class PapiSpecScheduleEnv(PapiBaseEnv):
    """Speculation length and FC placement per iteration. See the module docstring."""

    def __init__(self, max_tlp: int = 8, draft_model: str = "tinyllama-1.1b", acceptance: dict | None = None,
                 token_reward: float = 1.0, token_credit: str = "tlp1", reward_tokens: str = "drawn",
                 **kwargs: Any) -> None:
        if isinstance(max_tlp, bool) or not isinstance(max_tlp, int) or not 1 <= max_tlp <= TLP_SCALE:
            raise ValueError(f"max_tlp must be an integer in [1, {int(TLP_SCALE)}], got {max_tlp!r}")
        if kwargs.get("acceptance_rate") is not None:
            raise ValueError("PapiSpecSchedule-v0 models acceptance per request: use `acceptance` "
                             f"({list(AcceptanceModel.__dataclass_fields__)}), not acceptance_rate")
        if token_credit not in TOKEN_CREDITS:
            raise ValueError(f"token_credit must be one of {TOKEN_CREDITS}, got {token_credit!r}")
        if reward_tokens not in REWARD_TOKENS:
            raise ValueError(f"reward_tokens must be one of {REWARD_TOKENS}, got {reward_tokens!r}")
        kwargs.setdefault("tlp", 1)
        super().__init__(**kwargs)
        self.token_credit = token_credit
        self.reward_tokens = reward_tokens
        self.acceptance_model = AcceptanceModel.from_any(acceptance)
        self.max_tlp = max_tlp
        if isinstance(token_reward, bool) or not isinstance(token_reward, (int, float)) or not (
                math.isfinite(token_reward) and token_reward >= 0):
            raise ValueError(f"token_reward must be a finite number >= 0, got {token_reward!r}")
        self.token_reward = float(token_reward)
        self.drafts = {id(cm): DraftCost(cm.system, draft_model) for cm in self.cost_models}
        for cm in self.cost_models:
            if set(cm.fc_units) != set(UNITS):
                raise ValueError(f"PapiSpecSchedule-v0 needs a system with FC on both units (e.g. 'papi'); "
                                 f"'{cm.system.name}' has {list(cm.fc_units)}")
        self.action_space = spaces.MultiDiscrete([max_tlp, 2])
        self.observation_space = spaces.Box(0.0, 1.0, shape=(OBS_SIZE,), dtype=np.float32)

    # ------------------------------------------------------------------------ counters
    def draft_ratio(self) -> float:
        """One draft step's time over one target iteration at TLP 1 with FC on FC-PIM (runtime timers)."""
        rlp = self.batch.live
        ctx1 = self._sum_ctx - rlp * (self._tlp - 1)
        target = self.cost_model.iteration(rlp, 1, ctx1, "pim").time
        return self.drafts[id(self.cost_model)].step(rlp, ctx1).time / target

    def _observe(self) -> np.ndarray:
        feats = self._base_features(float(self._last_unit))
        live = self.batch.live_mask()
        own = self.request_estimates()[live] if live.any() else np.array([PRIOR_ACCEPT])
        feats += [math.log2(self.alpha() + 1) / LOG_R_SCALE, self._last_accept, self.accept_ema,
                  self._last_gain / TLP_SCALE, min(self.draft_ratio(), 1.0), float(own.mean()),
                  min(2.0 * float(own.std()), 1.0)]
        obs = np.array(feats, dtype=np.float32)
        return np.clip(obs, 0.0, 1.0, out=obs)

    # -------------------------------------------------------------------------- costs
    def _validate(self, action: Any) -> tuple[int, int]:
        a = np.asarray(action)
        ok = a.shape == (2,) and np.issubdtype(a.dtype, np.number) and bool(np.all(a == np.round(a)))
        tlp, unit = (int(a[0]) + 1, int(a[1])) if ok else (0, -1)
        if not 1 <= tlp <= self.max_tlp or unit not in (0, 1):
            raise ValueError(f"invalid action {action!r}: expected (TLP - 1 in [0, {self.max_tlp - 1}], FC unit 0/1)")
        return tlp, unit

    def cost_at(self, tlp: int, unit: int) -> IterationCost:
        """Target iteration plus draft at speculation length ``tlp`` with FC on ``unit``."""
        rlp = self.batch.live
        ctx = self._sum_ctx + rlp * (tlp - self._tlp)  # contexts include the TLP tokens verified
        c = self.cost_model.iteration(rlp, tlp, ctx, UNITS[unit])
        return with_draft(c, self.drafts[id(self.cost_model)].draft(rlp, tlp, ctx - rlp * (tlp - 1)))

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
        the objective's own marginal; it beat the iteration's t x e / tokens^2 by 1.2% on GPT-3
        175B, see README), or (time term + miss penalty) per token (latency_target), each per
        expected token. Lower is better. ``known_lengths``: see expected_tokens."""
        rlp, kind = self.batch.live, self.reward_kind
        values = np.empty((self.max_tlp, 2))
        for tlp in range(1, self.max_tlp + 1):
            k = self.expected_tokens(tlp, p, known_lengths)
            for unit in (0, 1):
                c = self.cost_at(tlp, unit)
                if kind == "latency":
                    v = c.time / k
                elif kind == "energy":
                    v = c.energy / k
                elif kind == "edp":
                    v = self._edp_increase(c) / k
                else:
                    v = (c.time / self.time_scale + self.miss_penalty * self._missed(c.time, k / rlp)) / k
                values[tlp - 1, unit] = v
        return values

    def greedy_action(self, p: np.ndarray | float, known_lengths: bool = True) -> np.ndarray:
        """The (TLP - 1, unit) with the least objective cost per expected token (action_values)."""
        values = self.action_values(p, known_lengths)
        return np.array(np.unravel_index(int(np.argmin(values)), values.shape), dtype=np.int64)

    def time_to_go(self, tlp: int, p: np.ndarray, remaining: np.ndarray) -> float:
        """Expected seconds to finish the batch if every iteration from now on speculates at
        ``tlp`` (FC on the faster unit at each RLP, target plus draft), given live request i's
        acceptance p[i] and remaining tokens remaining[i]: request i finishes after
        remaining[i] / expected_gain(p[i], tlp) iterations and the batch shrinks as they do.
        Contexts stay at today's mean (a short-horizon approximation)."""
        finish = np.sort(remaining / expected_gain(p, tlp))
        n, ctx, draft = len(finish), self._sum_ctx / self.batch.live, self.drafts[id(self.cost_model)]
        seconds, before = 0.0, 0.0
        for j, at in enumerate(finish):
            if at > before:
                rlp = n - j
                target = min(self.cost_model.iteration(rlp, tlp, rlp * ctx, u).time for u in UNITS)
                seconds += (at - before) * (target + draft.draft(rlp, tlp, rlp * ctx).time)
                before = at
        return seconds

    def lookahead_action(self) -> np.ndarray:
        """With the hidden truth (acceptance probabilities and remaining output lengths): the TLP
        that finishes the batch soonest if kept (time_to_go), FC on the faster unit now. Latency
        objective only; a second oracle, since the greedy one ignores which requests are on the
        batch's critical path."""
        mask = self.batch.live_mask()
        p, remaining = self.acceptance.probabilities()[mask], self.batch.remaining()[mask].astype(float)
        tlp = min(range(1, self.max_tlp + 1), key=lambda t: self.time_to_go(t, p, remaining))
        unit = min((0, 1), key=lambda u: self.cost_at(tlp, u).time)
        return np.array([tlp - 1, unit], dtype=np.int64)

    def oracle_action(self) -> np.ndarray:
        """Greedy with the true per-request acceptance probabilities (hidden from agents)."""
        return self.greedy_action(self.acceptance.probabilities())

    def candidate_actions(self) -> list[tuple[int, int]]:
        return [(t, u) for t in range(self.max_tlp) for u in (0, 1)]

    @staticmethod
    def _estimate(accepted, rejected):
        return (accepted + PRIOR_ACCEPT * PRIOR_COUNT) / (accepted + rejected + PRIOR_COUNT)

    def request_estimates(self) -> np.ndarray:
        """Each request's running acceptance estimate (this batch's order)."""
        return self._estimate(self._req_accepted, self._req_rejected)

    def _update_estimates(self) -> None:
        b = self.batch
        d = ESTIMATE_DECAY
        self._req_accepted = d * self._req_accepted + b.last_request_accepted
        self._req_rejected = d * self._req_rejected + b.last_request_rejected
        a, r = b.last_accepted, int(b.last_request_rejected.sum())
        self._batch_counts = (d * self._batch_counts[0] + a, d * self._batch_counts[1] + r)
        self.accept_ema = float(self._estimate(*self._batch_counts))
        self._last_accept = a / (a + r) if b.last_drafted else 0.0

    def token_value(self) -> float:
        """Reward credit per accepted token: minus the objective term per token of one TLP-1
        iteration with PAPI's placement, now."""
        rlp = self.batch.live
        reference = self.cost_at(1, int(rlp > self.alpha()))
        return -self._reward(reference, 1.0) / rlp

    def best_token_value(self) -> float:
        """Reward credit per token for ``token_credit="best"``: the least objective term per
        expected token over every action now, with the requests' true acceptance probabilities
        (simulator state a runtime cannot see; used in the reward only, never observed)."""
        # The same arithmetic as expected_tokens and cost_at, with what they share hoisted out of
        # the 2 x max_tlp loop (the draft step's context does not depend on TLP): ~2x faster.
        rlp, mask = self.batch.live, self.batch.live_mask()
        probs, remaining = self.acceptance.probabilities()[mask], self.batch.remaining()[mask]
        draft = self.drafts[id(self.cost_model)]
        draft_step = draft.step(rlp, self._sum_ctx - rlp * (self._tlp - 1))
        best = math.inf
        for tlp in range(1, self.max_tlp + 1):
            k = float(np.minimum(expected_gain(probs, tlp), remaining).sum())
            ctx = self._sum_ctx + rlp * (tlp - self._tlp)
            d = draft_step.scaled(tlp - 1) if tlp > 1 else Cost(0.0, 0.0)
            for unit in UNITS:
                c = with_draft(self.cost_model.iteration(rlp, tlp, ctx, unit), d)
                best = min(best, -self._reward(c, k / rlp) / k)
        return best

    def credit_per_token(self) -> float:
        """The reward's credit per token gained, under ``token_credit``."""
        return self.best_token_value() if self.token_credit == "best" else self.token_value()

    def step_objective(self, action: Any) -> float:
        """Expected reward of ``action`` now (expected tokens with the true probabilities)."""
        tlp, unit = self._validate(action)
        k = self.expected_tokens(tlp, self.acceptance.probabilities())
        value = self.credit_per_token()
        return self._reward(self.cost_at(tlp, unit), k / self.batch.live) + self.token_reward * k * value

    # ----------------------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        size = self._begin_episode(stochastic=True)
        self.acceptance = AcceptanceProcess(self.acceptance_model, size, self.np_random)
        self._last_unit, self._last_accept, self._last_gain = 0, 0.0, 0.0
        self._req_accepted = np.zeros(size)
        self._req_rejected = np.zeros(size)
        self._batch_counts = (0.0, 0.0)
        self.accept_ema = PRIOR_ACCEPT
        return self._observe(), {"batch_size": size, "rlp": self.batch.live, "tlp": self._tlp,
                                 "mean_acceptance": self.acceptance.mean}

    def step(self, action):
        self._check_stepping()
        tlp, unit = self._validate(action)
        cost = self.cost_at(tlp, unit)
        rlp = self.batch.live
        value = self.credit_per_token()
        probs = self.acceptance.probabilities()
        expected = self.expected_tokens(tlp, probs) if self.reward_tokens == "expected" else None
        tokens = self.batch.advance(tlp, probs)
        self.acceptance.advance()
        objective = self._reward(cost, tokens / rlp)
        reward = objective + self.token_reward * tokens * value
        if expected is not None:  # the action's expected reward instead of the drawn one
            reward = self._reward(cost, expected / rlp) + self.token_reward * expected * value
        b = self.batch
        self._update_estimates()
        self._last_unit, self._last_gain, self._tlp = unit, tokens / rlp, tlp
        info = {"placement": UNITS[unit], "tlp": tlp, "drafted": b.last_drafted, "accepted": b.last_accepted,
                "objective_reward": objective}
        terminated, truncated = self._finish_step(cost, tokens, rlp, info)
        obs = np.zeros(OBS_SIZE, dtype=np.float32) if terminated else self._observe()  # TLP is the agent's
        return obs, reward, terminated, truncated, info

    def _describe_last_action(self) -> str:
        return f"FC on {UNITS[self._last_unit]:3s} accept {self._last_accept:.2f}"


__all__ = ["OBS_SIZE", "PapiSpecScheduleEnv", "with_draft"]
