"""PAPI's threshold characterizer (the reference policy), static baselines, random, oracle."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from hardware.calibrate import calibrate_alpha
from hardware.systems import CostModel
from papi_env.schedule_env import decode_parallelism


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

    def __init__(self, alpha: float | None = None, model: str = "llama-65b", system: Any = "papi") -> None:
        if alpha is None:
            alpha = calibrate_alpha(CostModel(system, model), max_tokens=1024)
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


class RandomPolicy:
    """Uniformly random placement: the floor."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(observation)
        return _shape_like(obs, self.rng.integers(0, 2, size=obs.shape[:-1] or (1,))), state


class Oracle:
    """The best placement each iteration from the cost model.

    Placement does not change which requests are live or their contexts, so for the latency and
    energy objectives the per-iteration best is the episode optimum: the upper bound of the env.
    For EDP it is the greedy best. Needs the environment it acts in (bind with :meth:`bind`).
    """

    def __init__(self, env: Any = None) -> None:
        self.env = None if env is None else env.unwrapped

    def bind(self, env: Any) -> Oracle:
        self.env = env.unwrapped
        return self

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        if self.env is None:
            raise RuntimeError("Oracle needs its environment: Oracle(env) or oracle.bind(env)")
        mask = self.env.action_masks()
        values = [self.env.step_objective(a) if mask[a] else -np.inf for a in (0, 1)]
        return np.int64(int(np.argmax(values))), state


RULES = {
    "threshold": ThresholdCharacterizer,
    "always-gpu": AlwaysGPU,
    "always-pim": AlwaysPIM,
    "random": RandomPolicy,
    "oracle": Oracle,
}


def make_policy(spec: str, env: Any = None, model: str = "llama-65b", system: Any = "papi", seed: int = 0):
    """A policy from a name: a rule in RULES, ``threshold:ALPHA``, or ``ALGO:PATH`` for a learned one."""
    name, _, arg = spec.partition(":")
    if name == "threshold":
        return ThresholdCharacterizer(float(arg) if arg else None, model=model, system=system)
    if name == "oracle":
        return Oracle(env)
    if name == "random":
        return RandomPolicy(seed)
    if name in RULES and not arg:
        return RULES[name]()
    if arg:
        from agents.learned import LearnedPolicy  # imports torch; only for learned agents

        return LearnedPolicy.load(name, arg)
    raise ValueError(f"unknown policy {spec!r}; allowed: {sorted(RULES)}, threshold:ALPHA, or ALGO:PATH "
                     "(ppo, a2c, dqn, maskable_ppo)")
