"""Schedulers behind one interface, shaped like stable-baselines3's ``predict``.

``predict(obs, state=None, episode_start=None, deterministic=True) -> (action, state)``: the
evaluator cannot tell a rule from a network. :mod:`agents.rules` holds the rules (PAPI's
characterizer, the reference policy, and its extensions), :mod:`agents.planners` the oracles and
planners, :mod:`agents.learned` the loader of stable-baselines3 agents, and
:func:`agents.policies.make_policy` makes any of them from a name.
"""

from agents.planners import GreedyEMA, LookaheadOracle, Oracle
from agents.policies import Policy, RandomPolicy, make_policy
from agents.rules import AlwaysGPU, AlwaysPIM, Bound, PapiRule, ThresholdCharacterizer

__all__ = ["AlwaysGPU", "AlwaysPIM", "Bound", "GreedyEMA", "LookaheadOracle", "Oracle", "PapiRule", "Policy",
           "RandomPolicy", "ThresholdCharacterizer", "make_policy"]
