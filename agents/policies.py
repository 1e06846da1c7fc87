"""Every scheduler behind one interface, shaped like stable-baselines3's ``predict``, and the
factory that makes one from a name.

``predict(obs, state=None, episode_start=None, deterministic=True) -> (action, state)``: the
evaluator cannot tell a rule from a network. Rules live in agents.rules, oracles and planners in
agents.planners, learned agents load through agents.learned. Policy kinds (POLICY_KINDS):
``rule`` (counters + offline calibration), ``planner`` (evaluates the cost model every iteration
with estimated inputs), ``oracle`` (cost model with hidden truth), ``floor`` (random),
``learned``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from agents.planners import GreedyEMA, LookaheadOracle, Oracle, ServeLookahead, ServeRolloutPlanner, SmartSpec
from agents.rules import (
    AlwaysGPU,
    AlwaysPIM,
    FixedTLP,
    KernelThreshold,
    Leviathan,
    PapiRule,
    SplitTable,
    Static,
    ThresholdCharacterizer,
    ValidatedTLP,
    shape_like,
)

VARIANT_ENV = {"schedule": "PapiSchedule-v0", "kernel": "PapiKernelSchedule-v0", "split": "PapiSplitSchedule-v0",
               "spec": "PapiSpecSchedule-v0", "serve": "PapiServe-v0"}
"""Each env's ``variant`` (papi_env.base.PapiBaseEnv.variant) and its id."""


class Policy(Protocol):
    """Anything with stable-baselines3's ``predict`` signature."""

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]: ...


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
        if env is None or env.variant == "schedule":
            obs = np.asarray(observation)
            return shape_like(obs, self.rng.integers(0, 2, size=obs.shape[:-1] or (1,))), state
        space = env.action_space
        if hasattr(space, "nvec"):
            a = np.array([self.rng.integers(n) for n in space.nvec])
            if env.variant == "kernel" and not env.action_masks()[-1]:
                a[3] = 0
            return a, state
        return self.rng.uniform(space.low, space.high).astype(np.float32), state


POLICY_KINDS = {
    "threshold": "rule", "kernel-threshold": "rule", "split-table": "rule", "fixed-tlp": "rule",
    "validated-tlp": "rule", "leviathan": "rule", "always-gpu": "rule", "always-pim": "rule",
    "greedy-ema": "planner", "smartspec": "planner", "oracle": "oracle", "oracle-lookahead": "oracle",
    "oracle-rollout": "oracle", "planner-rollout": "planner",
    "random": "floor",
}
RULES_BY_VARIANT = {
    "schedule": ("threshold", "always-gpu", "always-pim", "random", "oracle"),
    "kernel": ("threshold", "kernel-threshold", "always-gpu", "always-pim", "random", "oracle"),
    "split": ("threshold", "split-table", "always-gpu", "always-pim", "random", "oracle"),
    "spec": ("threshold", "fixed-tlp:2", "fixed-tlp:3", "fixed-tlp:4", "fixed-tlp:8", "leviathan", "greedy-ema",
             "random", "oracle"),
    "serve": ("threshold", "fixed-tlp:2", "fixed-tlp:3", "fixed-tlp:4", "validated-tlp", "smartspec", "always-gpu",
              "always-pim", "random", "oracle"),
}
"""The policies an evaluation runs by default on each variant."""
VARIANTS_OF_RULE = {  # rules that decide what only some variants' action spaces hold
    "kernel-threshold": ("kernel",), "split-table": ("split",), "fixed-tlp": ("spec", "serve"),
    "validated-tlp": ("spec", "serve"),
    "leviathan": ("spec",), "greedy-ema": ("spec",), "oracle-lookahead": ("spec",), "smartspec": ("serve",),
    "oracle-rollout": ("serve",), "planner-rollout": ("serve",),
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
    "validated-tlp": ValidatedTLP,
    "leviathan": Leviathan,
    "greedy-ema": GreedyEMA,
    "smartspec": SmartSpec,
    "oracle-rollout": ServeLookahead,
    "planner-rollout": ServeRolloutPlanner,
}


def policy_kind(spec: str) -> str:
    """'rule', 'planner', 'oracle', 'floor' or 'learned' for a policy name."""
    name, _, arg = spec.partition(":")
    return POLICY_KINDS.get(name, "learned" if arg else "rule")


def make_policy(spec: str, env: Any = None, model: str | None = None, system: Any = None, seed: int = 0):
    """A policy from a name: a rule in RULES (``threshold:ALPHA``, ``fixed-tlp:K``), or
    ``ALGO:PATH`` for a learned one. With ``env``, rules fit that environment's variant.

    ``threshold`` calibrates its alpha offline for a system and model: the env's, or ``model`` and
    ``system`` given here; without either it is an error (a default system would silently give
    another system's alpha). ``threshold:ALPHA`` takes the alpha as given."""
    name, _, arg = spec.partition(":")
    base = None if env is None else env.unwrapped
    simple = base is None or base.variant == "schedule"
    variants = VARIANTS_OF_RULE.get(name)
    if base is not None and variants is not None and base.variant not in variants:
        where = " or ".join(VARIANT_ENV[v] for v in variants)
        raise ValueError(f"policy {spec!r} decides what only {where} lets a scheduler "
                         f"decide; on {VARIANT_ENV[base.variant]} use one of "
                         f"{list(RULES_BY_VARIANT.get(base.variant, ()))}")
    if name == "threshold":
        if arg:
            try:
                alpha = float(arg)
            except ValueError:
                alpha = math.nan
            if not (math.isfinite(alpha) and alpha >= 0):
                raise ValueError(f"threshold:ALPHA needs a finite alpha >= 0 (RLP x TLP), got {spec!r}")
            return ThresholdCharacterizer(alpha, model=model or "llama-65b", system=system or "papi")
        if simple:
            if base is None and (model is None or system is None):
                raise ValueError("make_policy('threshold') calibrates alpha for a system and model: pass env= (its "
                                 "own), or model= and system=, or give the alpha as 'threshold:ALPHA'")
            objective = "latency" if base is None else base.reward_kind
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
