"""Schedulers behind one interface, shaped like stable-baselines3's ``predict``.

``predict(obs, state=None, episode_start=None, deterministic=True) -> (action, state)``: the
evaluator cannot tell a rule from a network. Learned agents load through :func:`load_policy`.
"""

from agents.policies import (
    AlwaysGPU,
    AlwaysPIM,
    Oracle,
    Policy,
    RandomPolicy,
    ThresholdCharacterizer,
    make_policy,
)

__all__ = ["AlwaysGPU", "AlwaysPIM", "Oracle", "Policy", "RandomPolicy", "ThresholdCharacterizer", "make_policy"]
