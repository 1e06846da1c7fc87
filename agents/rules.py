"""Rules: decisions from what a runtime knows (counters, timers, offline calibration). No cost model
at run time.

PAPI's characterizer (FC on the GPU iff RLP x TLP > alpha) is ``hardware.calibrate.fc_on_gpu``
with alpha from ``hardware.calibrate.calibrate_alpha`` for the objective that
``calibration_objective`` picks; every rule here that places FC by PAPI's test calls it.

Rules that act in one environment are bound to it (:class:`Bound`, ``bind(env)``) and read the
env's public view: ``variant`` (which decision it offers: schedule, kernel, split, spec, serve),
``batch.live`` (RLP), ``tlp``, ``tlp_setting``, ``alpha()``, ``reward_kind``, ``cost_model``, and a
variant's own counters (``accept_ema``, ``draft_ratio()``, ``server``); never private attributes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hardware.calibrate import CALIBRATION_MAX_TOKENS, calibrate_alpha, calibration_objective, fc_on_gpu
from hardware.cost_tables import UNITS  # FC unit of action index 0 and 1 in every variant
from hardware.systems import FC_KERNELS, CostModel
from papi_env.schedule_env import decode_parallelism
from sim.online import OnlineServer
from sim.static import Placement

SPLIT_TABLE_STEPS = 32  # [D] the split table's (and the split oracle's) GPU fractions: k / 32 per kernel


def shape_like(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """A single observation gives a 0-d action, a batch gives one per row (as SB3 does)."""
    return actions.reshape(np.asarray(obs).shape[:-1]).astype(np.int64)


# ------------------------------------------------------------------ placements for sim.static
def threshold_placement(alpha: float) -> Placement:
    """PAPI's characterizer as a placement of sim.static.run_batch."""
    return lambda rlp, tlp, sum_ctx, it: "gpu" if fc_on_gpu(rlp, tlp, alpha) else "pim"


def static_placement(unit: str) -> Placement:
    """Always the same FC unit."""
    return lambda rlp, tlp, sum_ctx, it: unit


# ------------------------------------------------------------------ serving (sim.online)
def fcfs_decision(server: OnlineServer, alpha: float, tlp: int = 1, fc: str = "threshold",
                  max_admit: int | None = None) -> tuple[str, int, int]:
    """vLLM's default policy: admit every queued request that fits (at most ``max_admit``), speculate
    ``tlp``; FC by PAPI's test on the tokens through the FC kernels (``fc='threshold'``: RLP x TLP;
    with chunked prefill, the decoded requests' RLP x TLP plus the prompt chunk they are fused
    with) or always on 'gpu' / 'pim'. Returns (FC unit, TLP, admit)."""
    admit = server.admissible() if max_admit is None else min(server.admissible(), max_admit)
    if fc != "threshold":
        return fc, tlp, admit
    if server.token_budget is None:
        tokens = len(server.running) * tlp
    else:
        plan = server.plan("gpu", tlp, admit)  # (which requests decode and how big a chunk: not the unit's)
        tokens = plan.rlp * tlp + plan.prefill_tokens
    return ("gpu" if fc_on_gpu(tokens, 1, alpha) else "pim"), tlp, admit


def fcfs_rule(cost_model: CostModel, tlp: int = 1, fc: str = "threshold", alpha: float | None = None):
    """:func:`fcfs_decision` as a function of the server (for sim.online.serve); alpha from the
    latency calibration unless given.
    The batch limit is the server's own (``OnlineServer.admissible``)."""
    if fc == "threshold":
        alpha = calibrate_alpha(cost_model, CALIBRATION_MAX_TOKENS, "latency") if alpha is None else alpha
    elif fc not in cost_model.fc_units:
        raise ValueError(f"fc must be 'threshold' or one of {cost_model.fc_units}, got {fc!r}")
    else:
        alpha = 0.0  # not read: the unit is fixed
    return lambda server: fcfs_decision(server, alpha, tlp, fc)


# ------------------------------------------------------------------ observation-only rules
class ThresholdCharacterizer:
    """PAPI's online kernel characterization [P]: FC on the GPU if RLP x TLP > alpha, else FC-PIM.

    Reads RLP and TLP from the observation only. ``alpha`` defaults to the offline calibration
    (hardware.calibrate) of ``model`` on ``system`` for ``objective``.
    """

    def __init__(self, alpha: float | None = None, model: Any = "llama-65b", system: Any = "papi",
                 objective: str = "latency") -> None:
        if alpha is None:
            alpha = calibrate_alpha(CostModel(system, model), CALIBRATION_MAX_TOKENS, calibration_objective(objective))
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0 (RLP x TLP), got {alpha!r}")
        self.alpha = float(alpha)

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        rlp, tlp = decode_parallelism(observation)
        return shape_like(observation, fc_on_gpu(rlp, tlp, self.alpha).astype(np.int64)), state


class _Static:
    action = 0

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(observation)
        return shape_like(obs, np.full(obs.shape[:-1] or (1,), self.action)), state


class AlwaysPIM(_Static):
    """FC always on FC-PIM (the PIM-only PAPI mapping)."""

    action = 0


class AlwaysGPU(_Static):
    """FC always on the GPU (the A100+AttAcc mapping)."""

    action = 1


# ------------------------------------------------------------------ rules bound to an env
class Bound:
    """A policy that acts in one environment (bind it before each episode)."""

    env: Any = None

    def bind(self, env: Any) -> Bound:
        self.env = env.unwrapped
        return self

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        if self.env is None:
            raise RuntimeError(f"{type(self).__name__} needs its environment: call bind(env) first")
        return self.act(self.env), state

    def act(self, env: Any) -> Any:
        raise NotImplementedError


class PapiRule(Bound):
    """PAPI's rule in any variant: FC on the GPU iff RLP x TLP > alpha (the objective's offline
    crossover). Kernel env: all three FC kernels together, attention on Attn-PIM. Split env: all
    or nothing. Spec and serve envs: the speculation length is the user's fixed ``tlp`` (PAPI does
    not choose it; default: the env's configured TLP, or 1); serving admits FCFS."""

    def __init__(self, tlp: int | None = None) -> None:
        self.tlp = tlp

    def act(self, env):
        variant = env.variant
        if variant == "serve":
            tlp = min(max(int(self.tlp or 1), 1), env.max_tlp)
            return serve_action(env, *fcfs_decision(env.server, env.alpha(), tlp, "threshold", env.max_admit))
        rlp = env.batch.live
        if variant == "spec":
            default = env.tlp_setting if isinstance(env.tlp_setting, int) else 1
            tlp = min(self.tlp or default, env.max_tlp)
            return np.array([tlp - 1, int(fc_on_gpu(rlp, tlp, env.alpha()))])
        gpu = fc_on_gpu(rlp, env.tlp, env.alpha())
        if variant == "kernel":
            g = int(gpu)
            return np.array([g, g, g, 0])
        if variant == "split":
            return np.full(3, float(gpu), dtype=np.float32)
        return np.int64(gpu)


class FixedTLP(PapiRule):
    """PAPI's rule with a fixed speculation length K (PapiSpecSchedule, PapiServe)."""


VALIDATION_EPISODES = 4  # [D] episodes per candidate TLP when ValidatedTLP chooses
VALIDATION_SEED = 7_000_000  # [D] their seeds: disjoint from experiments.evaluate's (1,000,000 + 1000 x seed + i)
VALIDATION_SPLIT = {"test": "validation", "all": "validation"}  # a trace's part to validate on, by the env's


class ValidatedTLP(PapiRule):
    """PAPI's rule (FCFS admission, FC by the threshold) with the fixed TLP that scored best on
    validation episodes, chosen before it acts, as a deployment would tune it: every TLP in
    1..max_tlp runs ``episodes`` episodes of the env's own settings on seeds no evaluation uses
    (VALIDATION_SEED) and, for a trace, on its validation split (VALIDATION_SPLIT), never the
    test episodes; the best mean score wins (ties: the shorter TLP). PapiServe-v0 and
    PapiSpecSchedule-v0 made by ``gymnasium.make`` (their settings are ``env.spec.kwargs``)."""

    def __init__(self, episodes: int = VALIDATION_EPISODES) -> None:
        super().__init__(None)
        self.episodes = int(episodes)
        self.chosen: dict[str, int] = {}  # by the env's settings: bind() runs before every episode
        self.validation_scores: dict[int, float] = {}

    def bind(self, env: Any) -> ValidatedTLP:
        super().bind(env)
        spec = self.env.spec
        if spec is None:
            raise ValueError("ValidatedTLP validates on the env's own settings: make the env with gymnasium.make")
        key = repr(sorted(spec.kwargs.items()))
        if key not in self.chosen:
            self.chosen[key] = self.choose(spec.id, dict(spec.kwargs))
        self.tlp = self.chosen[key]
        return self

    def choose(self, env_id: str, settings: dict[str, Any]) -> int:
        """The TLP with the best mean validation score for these env settings."""
        import gymnasium as gym  # the rule builds its own validation envs

        if settings.get("trace") is not None:
            split = settings.get("trace_split", "all")
            settings["trace_split"] = VALIDATION_SPLIT.get(split, split)
        env = gym.make(env_id, **settings).unwrapped
        scores = {}
        for tlp in range(1, env.max_tlp + 1):
            rule = PapiRule(tlp).bind(env)
            total = 0.0
            for k in range(self.episodes):
                env.reset(seed=VALIDATION_SEED + k)
                done = False
                while not done:
                    _, _, terminated, truncated, info = env.step(rule.act(env))
                    done = terminated or truncated
                total += info["score"]
            scores[tlp] = total / self.episodes
        self.validation_scores = scores
        return max(scores, key=lambda t: (scores[t], -t))


class KernelThreshold(Bound):
    """PAPI's rule per kernel (PapiKernelSchedule): each FC kernel on the GPU iff RLP x TLP > its
    own offline crossover; attention stays on Attn-PIM, as in PAPI."""

    def act(self, env):
        return np.array([int(fc_on_gpu(env.batch.live, env.tlp, env.alpha(k))) for k in FC_KERNELS] + [0])


def split_measure(cost: Any, objective: str) -> float:
    """A kernel's cost on the calibration objective: seconds, joules, or s x J."""
    return {"latency": cost.time, "energy": cost.energy, "edp": cost.time * cost.energy}[objective]


class SplitTable(Bound):
    """PAPI's offline calibration extended to splits (PapiSplitSchedule): a table, per RLP x TLP,
    of each kernel's best GPU fraction (k / 32) on its own objective measure (time, energy or time
    x energy), filled as RLP x TLP values are met."""

    def __init__(self) -> None:
        self._tables: dict[tuple[int, str, int], tuple[float, float, float]] = {}

    def table(self, cost_model: CostModel, objective: str, tokens: int) -> tuple[float, float, float]:
        key = (id(cost_model), objective, tokens)
        if key not in self._tables:
            grid = [k / SPLIT_TABLE_STEPS for k in range(SPLIT_TABLE_STEPS + 1)]
            self._tables[key] = tuple(  # type: ignore[assignment]
                min(grid, key=lambda f, k=kernel: split_measure(cost_model.fc_split(k, tokens, f), objective))
                for kernel in FC_KERNELS)
        return self._tables[key]

    def act(self, env):
        tokens = env.batch.live * env.tlp
        return np.array(self.table(env.cost_model, calibration_objective(env.reward_kind), tokens), dtype=np.float32)


class Leviathan(Bound):
    """Adaptive speculation by the classic analysis (Leviathan et al., ICML 2023): choose the
    number of drafts g maximising (1 - a^(g+1)) / ((1 - a)(g c + 1)), with a the runtime's running
    acceptance estimate and c the measured draft-step / target-step time ratio; TLP = g + 1; FC by
    PAPI's rule on RLP x TLP. It assumes verifying TLP tokens costs one target step, which is
    what PAPI's memory-bound regime suggests and what large RLP x TLP breaks."""

    def act(self, env):
        a, c = min(env.accept_ema, 0.999), env.draft_ratio()
        g = max(range(env.max_tlp), key=lambda g: (1 - a ** (g + 1)) / ((1 - a) * (g * c + 1)))
        return np.array([g, int(fc_on_gpu(env.batch.live, g + 1, env.alpha()))])


class Static(Bound):
    """Everything on one unit (and no speculation)."""

    def __init__(self, unit: int) -> None:
        self.unit = unit

    def act(self, env):
        variant = env.variant
        if variant == "serve":
            return serve_action(env, *fcfs_decision(env.server, 0.0, 1, UNITS[self.unit], env.max_admit))
        if variant == "spec":
            return np.array([0, self.unit])
        if variant == "kernel":
            return np.array([self.unit] * 3 + [0])
        if variant == "split":
            return np.full(3, float(self.unit), dtype=np.float32)
        return np.int64(self.unit)


def serve_action(env: Any, unit: str, tlp: int, admit: int) -> np.ndarray:
    """PapiServe-v0's action (unit index, TLP - 1, admit) from a decision, TLP clipped to the env's."""
    tlp = min(max(int(tlp), 1), env.max_tlp)
    return np.array([UNITS.index(unit), tlp - 1, admit])
