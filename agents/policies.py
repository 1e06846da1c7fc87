"""PAPI's threshold characterizer (the reference policy), its extensions to the richer
environments, static baselines, random, the greedy planner and the oracle.

Every policy has stable-baselines3's ``predict``. Rules for the richer environments are *bound*
to the environment (``bind(env)``, done by experiments.evaluate) and read only what a runtime
knows: RLP, TLP, the offline-calibrated crossovers, its own acceptance counters and timers.
Policy kinds (POLICY_KINDS): ``rule`` (counters + offline calibration), ``planner`` (evaluates the
cost model every iteration with estimated inputs), ``oracle`` (cost model with hidden truth),
``floor`` (random), ``learned``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from hardware.calibrate import calibrate_alpha
from hardware.systems import CostModel
from papi_env.base import calibration_objective
from papi_env.schedule_env import PapiScheduleEnv, decode_parallelism


class Policy(Protocol):
    """Anything with stable-baselines3's ``predict`` signature."""

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]: ...


def _shape_like(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """A single observation gives a 0-d action, a batch gives one per row (as SB3 does)."""
    return actions.reshape(np.asarray(obs).shape[:-1]).astype(np.int64)


class ThresholdCharacterizer:
    """PAPI's online kernel characterization [P]: FC on the GPU if RLP x TLP > alpha, else FC-PIM.

    Reads RLP and TLP from the observation only. ``alpha`` defaults to the offline calibration
    (hardware.calibrate) of ``model`` on ``system``.
    """

    def __init__(self, alpha: float | None = None, model: str = "llama-65b", system: Any = "papi",
                 objective: str = "latency") -> None:
        if alpha is None:
            alpha = calibrate_alpha(CostModel(system, model), max_tokens=1024, objective=objective)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0 (RLP x TLP), got {alpha!r}")
        self.alpha = float(alpha)

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        rlp, tlp = decode_parallelism(observation)
        return _shape_like(observation, (rlp * tlp > self.alpha).astype(np.int64)), state


class _Static:
    action = 0

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(observation)
        return _shape_like(obs, np.full(obs.shape[:-1] or (1,), self.action)), state


class AlwaysPIM(_Static):
    """FC always on FC-PIM (the PIM-only PAPI mapping)."""

    action = 0


class AlwaysGPU(_Static):
    """FC always on the GPU (the A100+AttAcc mapping)."""

    action = 1


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


def _env_name(env: Any) -> str:
    return type(env).__name__


class Oracle(Bound):
    """The environment's best action each iteration by the cost model (``env.oracle_action``).

    PapiSchedule/Kernel/Split: placement does not change which requests are live or their
    contexts, so for latency, energy and latency_target the per-iteration best is the episode
    optimum; for edp it is the greedy best. PapiSpecSchedule: greedy on expected cost per token
    with the true (hidden) acceptance probabilities, a strong reference but not a bound.
    """

    def __init__(self, env: Any = None) -> None:
        if env is not None:
            self.bind(env)

    def act(self, env):
        a = env.oracle_action()
        return np.int64(a) if np.ndim(a) == 0 else np.asarray(a)


class LookaheadOracle(Bound):
    """PapiSpecSchedule, latency: the TLP that would finish the batch soonest if kept, from the
    true acceptance probabilities and remaining lengths (``env.lookahead_action``). With wide
    acceptance spread the greedy oracle spends speculation on requests that are not on the batch's
    critical path; this one does not. Neither is a proven bound."""

    def bind(self, env: Any) -> LookaheadOracle:
        base = env.unwrapped
        if _env_name(base) != "PapiSpecScheduleEnv" or base.reward_kind != "latency":
            raise ValueError("oracle-lookahead is defined for PapiSpecSchedule-v0 with reward='latency' only")
        return super().bind(env)

    def act(self, env):
        return env.lookahead_action()


class PapiRule(Bound):
    """PAPI's rule in any variant: FC on the GPU iff RLP x TLP > alpha (the objective's offline
    crossover). Kernel env: all three FC kernels together, attention on Attn-PIM. Split env: all
    or nothing. Spec env: the speculation length is the user's fixed ``tlp`` (PAPI does not choose
    it; default: the env's configured TLP)."""

    def __init__(self, tlp: int | None = None) -> None:
        self.tlp = tlp

    def act(self, env):
        name = _env_name(env)
        if name == "PapiServeEnv":
            return env.rule_action("threshold", self.tlp or 1)
        rlp = env.batch.live
        if name == "PapiSpecScheduleEnv":
            default = env._tlp_spec if isinstance(env._tlp_spec, int) else 1
            tlp = min(self.tlp or default, env.max_tlp)
            return np.array([tlp - 1, int(rlp * tlp > env.alpha())])
        if name == "PapiKernelScheduleEnv":
            g = int(rlp * env._tlp > env.alphas()[0])
            return np.array([g, g, g, 0])
        if name == "PapiSplitScheduleEnv":
            return np.full(3, float(rlp * env._tlp > env.alpha()), dtype=np.float32)
        return np.int64(rlp * env._tlp > env.alpha())


class KernelThreshold(Bound):
    """PAPI's rule per kernel (PapiKernelSchedule): each FC kernel on the GPU iff RLP x TLP > its
    own offline crossover; attention stays on Attn-PIM, as in PAPI."""

    def act(self, env):
        r = env.batch.live * env._tlp
        _, *alphas = env.alphas()
        return np.array([int(r > a) for a in alphas] + [0])


class SplitTable(Bound):
    """PAPI's offline calibration extended to splits (PapiSplitSchedule): a table, per RLP x TLP,
    of each kernel's best GPU fraction on its own objective measure (env.split_table)."""

    def act(self, env):
        return np.array(env.split_table(env.batch.live * env._tlp), dtype=np.float32)


class Leviathan(Bound):
    """Adaptive speculation by the classic analysis (Leviathan et al., ICML 2023): choose the
    number of drafts g maximising (1 - a^(g+1)) / ((1 - a)(g c + 1)), with a the runtime's running
    acceptance estimate and c the measured draft-step / target-step time ratio; TLP = g + 1; FC by
    PAPI's rule on RLP x TLP. It assumes verifying TLP tokens costs one target step, which is
    what PAPI's memory-bound regime suggests and what large RLP x TLP breaks."""

    def act(self, env):
        a, c = min(env.accept_ema, 0.999), env.draft_ratio()
        g = max(range(env.max_tlp), key=lambda g: (1 - a ** (g + 1)) / ((1 - a) * (g * c + 1)))
        return np.array([g, int(env.batch.live * (g + 1) > env.alpha())])


class GreedyEMA(Bound):
    """A model-based planner (PapiSpecSchedule): each iteration, evaluate the cost model for
    every (TLP, unit) and take the least cost per expected token, with expected tokens from each
    request's own running acceptance estimate (what the oracle does with the true
    probabilities and the true remaining lengths; the planner does not know when a request will
    end). Needs an accurate per-iteration cost model, which real deployments lack."""

    def act(self, env):
        return env.greedy_action(env.request_estimates(), known_lengths=False)


class Static(Bound):
    """Everything on one unit (and no speculation)."""

    def __init__(self, unit: int) -> None:
        self.unit = unit

    def act(self, env):
        name = _env_name(env)
        if name == "PapiServeEnv":
            return env.rule_action(("pim", "gpu")[self.unit], 1)
        if name == "PapiSpecScheduleEnv":
            return np.array([0, self.unit])
        if name == "PapiKernelScheduleEnv":
            return np.array([self.unit] * 3 + [0])
        if name == "PapiSplitScheduleEnv":
            return np.full(3, float(self.unit), dtype=np.float32)
        return np.int64(self.unit)


class RandomPolicy:
    """Uniformly random actions (respecting the kernel env's mask): the floor."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.env = None

    def bind(self, env: Any) -> RandomPolicy:
        self.env = env.unwrapped
        return self

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        env = self.env
        if env is None or _env_name(env) == "PapiScheduleEnv":
            obs = np.asarray(observation)
            return _shape_like(obs, self.rng.integers(0, 2, size=obs.shape[:-1] or (1,))), state
        space = env.action_space
        if hasattr(space, "nvec"):
            a = np.array([self.rng.integers(n) for n in space.nvec])
            if _env_name(env) == "PapiKernelScheduleEnv" and not env.action_masks()[-1]:
                a[3] = 0
            return a, state
        return self.rng.uniform(space.low, space.high).astype(np.float32), state


class FixedTLP(PapiRule):
    """PAPI's rule with a fixed speculation length K (PapiSpecSchedule, PapiServe)."""


POLICY_KINDS = {
    "threshold": "rule", "kernel-threshold": "rule", "split-table": "rule", "fixed-tlp": "rule",
    "leviathan": "rule", "always-gpu": "rule", "always-pim": "rule",
    "greedy-ema": "planner", "oracle": "oracle", "oracle-lookahead": "oracle", "random": "floor",
}
RULES_BY_ENV = {
    "PapiScheduleEnv": ("threshold", "always-gpu", "always-pim", "random", "oracle"),
    "PapiKernelScheduleEnv": ("threshold", "kernel-threshold", "always-gpu", "always-pim", "random", "oracle"),
    "PapiSplitScheduleEnv": ("threshold", "split-table", "always-gpu", "always-pim", "random", "oracle"),
    "PapiSpecScheduleEnv": ("threshold", "fixed-tlp:2", "fixed-tlp:3", "fixed-tlp:4", "fixed-tlp:8", "leviathan",
                            "greedy-ema", "random", "oracle"),
    "PapiServeEnv": ("threshold", "fixed-tlp:2", "fixed-tlp:3", "fixed-tlp:4", "always-gpu", "always-pim",
                     "random", "oracle"),
}
VARIANT_OF_RULE = {  # rules that decide what only one variant's action space holds
    "kernel-threshold": "PapiKernelScheduleEnv", "split-table": "PapiSplitScheduleEnv",
    "fixed-tlp": ("PapiSpecScheduleEnv", "PapiServeEnv"), "leviathan": "PapiSpecScheduleEnv",
    "greedy-ema": "PapiSpecScheduleEnv",
    "oracle-lookahead": "PapiSpecScheduleEnv",
}
RULES = {
    "threshold": ThresholdCharacterizer,
    "always-gpu": AlwaysGPU,
    "always-pim": AlwaysPIM,
    "random": RandomPolicy,
    "oracle": Oracle,
    "oracle-lookahead": LookaheadOracle,
    "kernel-threshold": KernelThreshold,
    "split-table": SplitTable,
    "fixed-tlp": FixedTLP,
    "leviathan": Leviathan,
    "greedy-ema": GreedyEMA,
}


def policy_kind(spec: str) -> str:
    """'rule', 'planner', 'oracle', 'floor' or 'learned' for a policy name."""
    name, _, arg = spec.partition(":")
    return POLICY_KINDS.get(name, "learned" if arg else "rule")


def make_policy(spec: str, env: Any = None, model: str = "llama-65b", system: Any = "papi", seed: int = 0):
    """A policy from a name: a rule in RULES (``threshold:ALPHA``, ``fixed-tlp:K``), or
    ``ALGO:PATH`` for a learned one. With ``env``, rules fit that environment's variant."""
    name, _, arg = spec.partition(":")
    base = None if env is None else env.unwrapped
    simple = base is None or isinstance(base, PapiScheduleEnv)
    variant = VARIANT_OF_RULE.get(name)
    variants = variant if isinstance(variant, tuple) else (variant,)
    if base is not None and variant is not None and type(base).__name__ not in variants:
        where = " or ".join(f"{v.removesuffix('Env')}-v0" for v in variants)
        raise ValueError(f"policy {spec!r} decides what only {where} lets a scheduler "
                         f"decide; on {type(base).__name__.removesuffix('Env')}-v0 use one of "
                         f"{list(RULES_BY_ENV.get(type(base).__name__, ()))}")
    if name == "threshold":
        if arg:
            try:
                alpha = float(arg)
            except ValueError:
                alpha = math.nan
            if not (math.isfinite(alpha) and alpha >= 0):
                raise ValueError(f"threshold:ALPHA needs a finite alpha >= 0 (RLP x TLP), got {spec!r}")
            return ThresholdCharacterizer(alpha, model=model, system=system)
        if simple:
            objective = "latency" if base is None else calibration_objective(base.reward_kind)
            cm = None if base is None else base.cost_model
            return ThresholdCharacterizer(None, model=cm.model if cm else model, system=cm.system if cm else system,
                                          objective=objective)
        return PapiRule()
    if name == "fixed-tlp":
        high = int(getattr(base, "max_tlp", 16)) if base is not None else 16
        try:
            k = int(arg)
        except ValueError:
            k = 0
        if not 1 <= k <= high:
            raise ValueError(f"fixed-tlp:K needs an integer speculation length K in [1, {high}], got {spec!r}")
        return FixedTLP(k)
    if name == "oracle":
        return Oracle(env)
    if name == "random":
        return RandomPolicy(seed)
    if name in ("always-gpu", "always-pim") and not arg:
        return (AlwaysGPU() if name == "always-gpu" else AlwaysPIM()) if simple else Static(int(name == "always-gpu"))
    if name in RULES and not arg:
        return RULES[name]()
    if arg:
        from agents.learned import LearnedPolicy  # imports torch; only for learned agents

        return LearnedPolicy.load(name, arg)
    raise ValueError(f"unknown policy {spec!r}; allowed: {sorted(RULES)}, threshold:ALPHA, fixed-tlp:K, or "
                     "ALGO:PATH (ppo, a2c, dqn, maskable_ppo, sac)")
