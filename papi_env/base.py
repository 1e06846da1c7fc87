"""What every PAPI environment shares: the batch, the objectives, randomisation, the episode totals.

The dynamics live in papi_env.core (arrays over N environments); a scalar environment is the core
with N = 1, and this class its ``gymnasium.Env`` face plus read-only views (``batch``, ``cost_model``
...) for rules and oracles.

An episode is one static batch, one step one decoding iteration, until the last request ends (or
``max_steps``). Subclasses define the action (what the scheduler decides each iteration) and add
observation features; this class owns the rest.

Objectives (``reward``), each a per-step term whose episode sum is the objective, divided by a
fixed scale so that a step is about -1:

- ``latency``: -iteration seconds / ``time_scale``.
- ``energy``: -iteration joules / ``energy_scale``.
- ``edp``: the step's increment of -(total s x total J) / (``time_scale`` x ``energy_scale``).
- ``latency_target``: the latency term minus ``miss_penalty`` for every iteration whose per-token
  latency (iteration seconds / tokens each live request gained) exceeds ``latency_target_s``.

``time_scale`` is the GPUs' weight-streaming time of the model (weight bytes / (GPUs x bandwidth
x 0.85)) and ``energy_scale`` their energy to read the weights once: the cost of one memory-bound
GPU iteration. The default ``latency_target_s`` is 2 x time_scale (15.2 ms for LLaMA-65B on PAPI).

Each episode ends with ``info["score"]``, the objective as a higher-is-better figure per token:
tokens/s (latency), tokens/J (energy), tokens^2/(s J) (edp), tokens / (s + miss_penalty x
time_scale x misses) (latency_target).

Generalisation: ``model``, ``system`` and ``dataset`` each take one value or a list; with a list,
every episode draws one uniformly (train on one preset, evaluate on another; or randomise).

Capacity: the model's weights must fit the system's FC memory (checked when the env is built) and
each drawn batch's KV cache, reserved at every request's full length, the attention memory
(``on_over_capacity``: 'error' by default, or 'admit' a prefix of the batch that fits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from hardware.systems import CostModel
from papi_env.core import (
    CTX_SCALE,
    LOG_R_SCALE,
    REWARDS,
    RLP_SCALE,
    TARGET_IN_TIME_SCALES,
    TLP_SCALE,
    VectorCore,
    episode_score,
    scalar_info,
)

__all__ = ["CTX_SCALE", "LOG_R_SCALE", "REWARDS", "RLP_SCALE", "TARGET_IN_TIME_SCALES",
           "TLP_SCALE", "BatchView", "PapiBaseEnv", "episode_score",
           "merge_env_config", "scalar_info"]


ONE_STEPS = np.ones(1, dtype=bool)  # the one environment of a scalar env steps
ONE_STEPS.flags.writeable = False


def merge_env_config(env_config: Mapping[str, Any] | None, render_mode: str | None,
                     kwargs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(render_mode, keyword arguments) from RLlib's positional ``env_config`` dict (an EnvContext;
    its worker fields are attributes, not settings) and the keyword arguments; a key in both, or an
    env_config that is not a dict, is an error."""
    if env_config is None:
        return render_mode, kwargs
    if not isinstance(env_config, Mapping):
        raise TypeError(f"env_config must be a dict of keyword arguments, got {type(env_config).__name__}")
    both = sorted(set(env_config) & set(kwargs))
    if both:
        raise ValueError(f"{both} given both in env_config and as keyword arguments")
    kwargs = {**env_config, **kwargs}
    return kwargs.pop("render_mode", render_mode), kwargs


class BatchView:
    """Read-only view of environment i's batch in a core (live requests, remaining tokens)."""

    def __init__(self, core: VectorCore, i: int = 0) -> None:
        self._core, self._i = core, i

    @property
    def size(self) -> int:
        return int(self._core.batch.size[self._i])

    @property
    def live(self) -> int:
        """RLP: requests still decoding."""
        return int(self._core.rlp()[self._i])

    @property
    def done(self) -> bool:
        return self.live == 0

    @property
    def total_output(self) -> int:
        return int(self._core.batch.total_output[self._i])

    def live_mask(self) -> np.ndarray:
        """Which requests (sorted by output length) are still decoding."""
        return self._core.batch.live_mask()[self._i, :self.size]

    def remaining(self) -> np.ndarray:
        """Tokens each request (sorted by output length) still has to produce."""
        return self._core.batch.remaining()[self._i, :self.size]


class PapiBaseEnv(gym.Env):
    """A scalar environment: the variant's core with N = 1. See the module docstring."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    core_class: type[VectorCore] = VectorCore
    variant = ""
    """Which decision the env offers ('schedule', 'kernel', 'split', 'spec'; 'serve' for PapiServe):
    what rules in agents/ dispatch on."""

    def __init__(self, env_config: Mapping[str, Any] | None = None, *, render_mode: str | None = None,
                 **kwargs: Any) -> None:
        """Keyword arguments as ``gymnasium.make`` passes them; or one dict of them, positionally, as
        RLlib passes its ``env_config`` (an EnvContext; its worker fields are not settings)."""
        render_mode, kwargs = merge_env_config(env_config, render_mode, kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        self.core = self.core_class(1, **kwargs)
        self.render_mode = render_mode
        self.batch: BatchView | None = None
        self.action_space, self.observation_space = self.core.single_spaces()

    # ------------------------------------------------------------------------------ views
    cost_models = property(lambda self: self.core.cost_models)
    datasets = property(lambda self: self.core.datasets)
    batch_sizes = property(lambda self: self.core.batch_sizes)
    tlp_choices = property(lambda self: self.core.tlp_choices)
    reward_kind = property(lambda self: self.core.reward_kind)
    max_steps = property(lambda self: self.core.max_steps)
    miss_penalty = property(lambda self: self.core.miss_penalty)
    on_over_capacity = property(lambda self: self.core.on_over_capacity)

    @property
    def cost_model(self) -> CostModel:
        """This episode's hardware and model."""
        return self.core.cost_models[int(self.core.cm[0])]

    @property
    def dataset(self):
        return self.core.datasets[int(self.core.dataset_index[0])]

    time_scale = property(lambda self: float(self.core.time_scales[self.core.cm[0]]))
    energy_scale = property(lambda self: float(self.core.energy_scales[self.core.cm[0]]))
    target_s = property(lambda self: float(self.core.targets[self.core.cm[0]]))
    tlp = property(lambda self: int(self.core.tlp[0]), doc="Speculation length of this iteration.")
    steps = property(lambda self: int(self.core.steps[0]), doc="Iterations run this episode.")
    total_time = property(lambda self: float(self.core.total_time[0]), doc="Seconds of this episode so far.")
    total_energy = property(lambda self: float(self.core.total_energy[0]), doc="Joules of this episode so far.")
    tokens = property(lambda self: int(self.core.tokens[0]), doc="Tokens produced this episode so far.")

    @property
    def tlp_setting(self) -> Any:
        """This episode's TLP setting: an int or a schedule of (iteration, tlp) pairs."""
        return self.core.tlp_choices[int(self.core.tlp_spec_index[0])]

    @property
    def sum_context(self) -> float:
        """Context of the live requests at this iteration's TLP (prompt + generated + TLP), tokens."""
        return float(self.core.context(self.core.tlp)[1][0])

    def alpha(self, kernel: str | None = None) -> int:
        """The objective's offline FC crossover (all kernels, or one) for this episode's model and
        system: what PAPI's calibration gives the runtime (hardware.calibrate). Cached."""
        return self.core.alpha(int(self.core.cm[0]), kernel)

    # -------------------------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.rngs[0] = self.np_random
        obs, info = self.core.reset_envs([0])
        self.batch = BatchView(self.core)
        return obs[0], scalar_info(info)

    def step(self, action):
        if self.batch is None:
            raise RuntimeError("call reset() before step()")
        if self.core.rlp()[0] == 0 or self.core.steps[0] >= self.core.max_steps:
            raise RuntimeError("the episode has ended (terminated or truncated); call reset()")
        if self.core.fc_mode is not None:  # the placement variants' scalar step (the spec variant has its own)
            return self.core.step_one(self._checked(action))
        obs, reward, terminated, truncated, info = self.core.step(self._checked(action))
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), scalar_info(info)

    def episode_info(self) -> dict[str, Any]:
        """The episode's infos as its last step gives them (score, totals), for the episode so far:
        what papi_env.wrappers.EpisodeEndInfo adds when gymnasium's TimeLimit ends an episode."""
        info: dict[str, np.ndarray] = {}
        self.core._episode_info(info, np.zeros(1, dtype=np.int64))
        return scalar_info(info)

    def _checked(self, action: Any) -> Any:
        """The action as the core's checked batch of one; ValueError naming what is allowed."""
        return self.core.check_actions(self.core.batch_action(action), ONE_STEPS)

    # ------------------------------------------------------------- pricing (for agents/)
    def candidate_actions(self) -> list[Any]:
        """The actions a greedy planner compares (variants with finite choices list them)."""
        raise NotImplementedError

    def step_objective(self, action: Any) -> float:
        """The reward ``action`` would earn at the current iteration, without stepping."""
        return float(self.core.expected_reward(self._checked(action))[0])

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.batch is None:
            return None
        return (
            f"iter {self.steps:5d}  RLP {self.batch.live:3d}/{self.batch.size:<3d} TLP {self.tlp}  "
            f"{self._describe_last_action()}  t {self.total_time * 1e3:9.2f} ms  "
            f"E {self.total_energy:8.2f} J  tokens {self.tokens}"
        )

    def _describe_last_action(self) -> str:
        return ""
