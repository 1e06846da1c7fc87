"""The static-batch MDP of N PAPI environments as arrays: observations, rewards, infos.

Every variant's environment, scalar or vector, runs on a :class:`VectorCore` subclass: the vector
environments (papi_env.vector) step N of them at once, the scalar ``gymnasium.Env`` classes are
the case N = 1. The dynamics (episode draws, batches, counters, one iteration) are the
simulation layer's ``sim.engine.StaticEngine``, which the core extends with the MDP: the
objectives' rewards, the observations' shared features, episode scores and infos. A variant adds
its spaces and action checks (``single_spaces``, ``batch_action``, ``check_actions``), where its
action places FC (``fc_mode``, ``_placement``: the compiled step prices it), its infos
(``_record``) and its own features (``_extra_features``); the speculation variant, whose action
sets the TLP, has its own ``step``.

Infos follow gymnasium's vector layout: ``infos[key]`` an array over environments and
``infos["_" + key]`` a mask of the environments that have the key (what
``gymnasium.vector.SyncVectorEnv`` builds from N scalar infos).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from hardware.calibrate import (
    CALIBRATION_MAX_TOKENS,
    DESCRIPTOR_SIZE,
    calibrate_alpha,
    calibration_objective,
    descriptor,
)
from hardware.cost_tables import UNITS
from hardware.systems import IterationCost
from papi_env import kernels
from papi_env.kernels import REWARD_CODES
from sim.engine import MAX_BATCH, MAX_TLP, StaticEngine
from sim.kernels import FC_SPLIT

RLP_SCALE, TLP_SCALE = float(MAX_BATCH), float(MAX_TLP)  # the observation's scales: the engine's bounds
CTX_SCALE, LOG_R_SCALE = 4096.0, 12.0
REWARDS = ("latency", "energy", "edp", "latency_target")
TARGET_IN_TIME_SCALES = 2.0  # [D] default per-token latency target, in units of time_scale
LOG2 = np.log2(np.maximum(np.arange(int(RLP_SCALE * TLP_SCALE) + 1), 1)) / LOG_R_SCALE  # log2(r) / 12 by r
SHARED_FEATURES = 8  # observation features every variant has (observe)
NO_SPLIT_TABLE = np.empty((0, 0, 0, 0, 2))  # the kernels' split table argument for variants that do not split
NO_SCHEDULE = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))  # a fixed TLP: no schedule
_EMPTY1, _EMPTY2 = np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.int64)
NO_LOCKSTEP = (_EMPTY1, _EMPTY1, _EMPTY1, _EMPTY1, _EMPTY1, _EMPTY2, _EMPTY2, _EMPTY2)  # a stochastic batch's
"""Stand-ins for the lock-step layout's arrays (first, generated, next_output, live_input,
live_max_input, prefix_output, suffix_input, suffix_max_input) where a batch is stochastic."""
NO_STOCHASTIC = (_EMPTY2, _EMPTY2, np.empty(0, dtype=np.uint64), np.empty(0), _EMPTY2, np.empty((0, 0), dtype=bool),
                 _EMPTY1, _EMPTY1)
"""Stand-ins for the stochastic layout's arrays (input_lengths, gen, keys, acceptance, last accepted
and rejected per request, last drafted and accepted per batch) where a batch is lock-step."""
STEP_KEYS = ("time_fc", "time_attention", "time_communication", "time_other", "energy_fc", "energy_attention",
             "energy_communication", "energy_other")


def episode_score(reward: str, time: Any, energy: Any, tokens: Any, misses: Any, time_scale: Any,
                  miss_penalty: float) -> Any:
    """The objective of finished episodes as a higher-is-better number per token: tokens/s
    (latency), tokens/J (energy), tokens^2/(s J) (edp), tokens / (s + miss_penalty x time_scale x
    misses) (latency_target). Works on numbers and on arrays."""
    if reward == "latency":
        return tokens / time
    if reward == "energy":
        return tokens / energy
    if reward == "edp":
        return tokens * tokens / (time * energy)
    return tokens / (time + miss_penalty * time_scale * misses)


class StepOutputs(NamedTuple):
    """What one compiled step writes, per environment: the iteration's cost (8, N: IterationCost's
    fields by row), reward, live requests before it, tokens produced, live requests and context sum
    and maximum after it, missed target, terminated, truncated."""

    cost: np.ndarray
    reward: np.ndarray
    rlp: np.ndarray
    produced: np.ndarray
    live: np.ndarray
    total: np.ndarray
    longest: np.ndarray
    missed: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


ZERO = np.zeros(1, dtype=np.int64)  # environment 0, as an index array


class VectorCore(StaticEngine):
    """The dynamics of ``num_envs`` environments of one variant (see the module docstring)."""

    obs_size = SHARED_FEATURES
    fc_mode: int | None = None
    missing_per_env = 4  # cost-table lookups a kernel makes per environment at most (its missing list's rows)
    """How the variant's action places FC (sim.kernels.FC_ALL, FC_PER_KERNEL, FC_SPLIT): such a variant
    steps through the compiled papi_env.kernels.step_batches (lock-step or stochastic batches)."""

    def __init__(
        self,
        num_envs: int = 1,
        reward: str = "latency",
        max_steps: int = 4096,
        latency_target_s: float | None = None,
        miss_penalty: float = 1.0,
        hardware_features: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        """``engine_kwargs``: the episodes' settings, as sim.engine.StaticEngine takes them (model,
        dataset, batch_size, tlp, system, acceptance_rate, on_over_capacity). ``hardware_features``
        appends the episode's system and model descriptor (hardware.calibrate.DESCRIPTOR, what a
        runtime knows offline about its own hardware) to the observation."""
        if not isinstance(hardware_features, bool):
            raise ValueError(f"hardware_features must be true or false, got {hardware_features!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        for name, value in (("latency_target_s", latency_target_s), ("miss_penalty", miss_penalty)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                      or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if latency_target_s is not None and not latency_target_s > 0:
            raise ValueError(f"latency_target_s must be > 0 seconds, got {latency_target_s!r}")
        if not miss_penalty >= 0:
            raise ValueError(f"miss_penalty must be >= 0, got {miss_penalty!r}")
        super().__init__(num_envs, **engine_kwargs)
        n = self.num_envs
        self.reward_kind = reward
        self.max_steps = int(max_steps)
        self.latency_target_s = latency_target_s
        self.miss_penalty = float(miss_penalty)
        self._scales()
        self._alphas: dict[tuple[int, str | None], int] = {}
        self._alpha_arrays: dict[str | None, np.ndarray] = {}
        self.misses = np.zeros(n, dtype=np.int64)
        self.last_share = np.zeros(n)
        self.hardware_features = hardware_features
        if hardware_features:  # the descriptor after the variant's own features
            self.obs_size = type(self).obs_size + DESCRIPTOR_SIZE
            self.descriptors = np.array([descriptor(cm) for cm in self.cost_models])
        self._missing = np.zeros((self.missing_per_env * n, 5), dtype=np.int64)  # table entries a kernel found missing
        self._outputs_one: StepOutputs | None = None  # step_one's outputs, reused

    # ------------------------------------------------------------------------------ settings
    def _scales(self) -> None:
        """Per cost model: time_scale (s) and energy_scale (J) of one memory-bound GPU iteration
        (papi_env.base), the latency target (s), and the system's attention unit."""
        ts, es, att = [], [], []
        for cm in self.cost_models:
            sysm, m = cm.system, cm.model
            if sysm.has_gpus:
                weight_bandwidth = sysm.num_gpus * sysm.gpu.memory_bandwidth * sysm.gpu.bandwidth_efficiency
            else:  # a PIM-only system: the FC stacks' internal bandwidth
                weight_bandwidth = sysm.fc_stacks * sysm.fc_pim.internal_bandwidth
            ts.append(m.weight_bytes / weight_bandwidth)
            es.append(m.weight_bytes * sysm.energy.gpu_offchip_pj_per_byte * 1e-12)
            att.append(UNITS.index(sysm.attention_unit))
        self.time_scales, self.energy_scales = np.array(ts), np.array(es)
        self.targets = np.array([self.latency_target_s or TARGET_IN_TIME_SCALES * t for t in ts])
        self.attention_units = np.array(att, dtype=np.int64)
        self.fc_unit_masks = np.array([[u in cm.fc_units for u in UNITS] for cm in self.cost_models])
        self.every_fc_unit_everywhere = bool(self.fc_unit_masks.all())  # every action valid on every system
        self.model_names = np.array([cm.model.name for cm in self.cost_models], dtype=object)
        self.system_names = np.array([cm.system.name for cm in self.cost_models], dtype=object)

    def alpha(self, cm: int, kernel: str | None = None) -> int:
        """The objective's offline FC crossover (all kernels, or one) of cost model ``cm``: what
        PAPI's calibration gives the runtime (hardware.calibrate). Cached."""
        key = (cm, kernel)
        if key not in self._alphas:
            self._alphas[key] = calibrate_alpha(self.cost_models[cm], CALIBRATION_MAX_TOKENS,
                                                calibration_objective(self.reward_kind), kernel)
        return self._alphas[key]

    def alpha_array(self, kernel: str | None = None) -> np.ndarray:
        """(N,) the crossover of every environment's cost model."""
        by_model = self._alpha_arrays.get(kernel)
        if by_model is None:
            by_model = self._alpha_arrays[kernel] = np.array([self.alpha(c, kernel)
                                                              for c in range(len(self.cost_models))])
        return self.by_env(f"alpha:{kernel}", by_model)

    # ---------------------------------------------------------------------------------- reset
    def reset_envs(self, envs: Sequence[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start a new episode in each of ``envs`` (indices) from its generator; return their
        observations (len(envs), obs_size) and the reset infos (gymnasium's vector layout over
        all N, masked to ``envs``)."""
        info = self.start_episodes(envs)
        return self.observe()[np.asarray(envs, dtype=np.int64)], info

    def start_episodes(self, envs: Sequence[int]) -> dict[str, np.ndarray]:
        """Start a new episode in each of ``envs`` (indices) and return their reset infos, without
        observing (a vector step observes once, after its resets)."""
        envs = np.asarray(envs, dtype=np.int64)
        self.new_episodes(envs)
        self.misses[envs] = 0
        self.last_share[envs] = 0.0
        return self._reset_info(envs)

    def _reset_info(self, envs: np.ndarray) -> dict[str, np.ndarray]:
        info: dict[str, np.ndarray] = {}
        put_rows(info, {"batch_size": self.batch.size[envs], "rlp": self.rlp()[envs], "tlp": self.tlp[envs]}, envs,
                 self.num_envs)
        return info

    # ----------------------------------------------------------------------------- features
    def observe(self) -> np.ndarray:
        """(N, obs_size) float32 observations in [0, 1] of the current state: the eight shared
        features (papi_env.kernels.observe_shared), then the variant's own."""
        rlp, total, longest = self._batch_state()
        obs = np.empty((self.num_envs, self.obs_size), dtype=np.float32)
        kernels.observe_shared(obs, rlp, total, longest, self.tlp, self.batch.size, LOG2, self.last_share, self.steps,
                               self.max_steps, RLP_SCALE, TLP_SCALE, CTX_SCALE)
        if type(self).obs_size > SHARED_FEATURES:
            rlp, sum_ctx, _ = self.context(self.tlp)
            extra = obs[:, SHARED_FEATURES:type(self).obs_size]
            for column, values in enumerate(self._extra_features(rlp, sum_ctx)):  # float64 rounded to float32 once
                extra[:, column] = values
            np.clip(extra, 0.0, 1.0, out=extra)
        return self.with_descriptors(obs)

    def with_descriptors(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` with its last DESCRIPTOR_SIZE columns set to each episode's hardware descriptor
        (``hardware_features=True``; unchanged otherwise)."""
        if self.hardware_features:
            obs[:, self.obs_size - DESCRIPTOR_SIZE:] = self.by_env("descriptors")
        return obs

    def _extra_features(self, rlp: np.ndarray, sum_ctx: np.ndarray) -> list[np.ndarray]:
        """A variant's features after the eight shared ones."""
        return []

    # -------------------------------------------------------------------------------- reward
    def objective_reward(self, cost: IterationCost, gain_per_request: np.ndarray) -> np.ndarray:
        """(N,) the objective's per-step term (papi_env.base) of iterations costing ``cost`` in
        which each live request gains ``gain_per_request`` tokens on average; (N, K) for K
        candidate iterations per environment."""
        ts = per_env(self.by_env("time_scales"), cost.fc_time)
        es = per_env(self.by_env("energy_scales"), cost.fc_time)
        kind = self.reward_kind
        if kind == "latency":
            return -cost.time / ts
        if kind == "energy":
            return -cost.energy / es
        if kind == "edp":
            return -self.edp_increase(cost.time, cost.energy) / (ts * es)
        return -cost.time / ts - self.miss_penalty * self.missed(cost.time, gain_per_request)

    def edp_increase(self, time: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """How much iterations costing ``time``, ``energy`` raise the totals' s x J."""
        total_time, total_energy = per_env(self.total_time, time), per_env(self.total_energy, time)
        t, e = total_time + time, total_energy + energy
        return t * e - total_time * total_energy

    def missed(self, seconds: np.ndarray, gain_per_request: np.ndarray) -> np.ndarray:
        return seconds > per_env(self.by_env("targets"), seconds) * gain_per_request

    # ---------------------------------------------------------------------------------- step
    def step(self, actions: Any, observe: bool = True
             ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One iteration in every environment at its episode's TLP (actions already checked by
        ``check_actions``): (observations, rewards, terminated, truncated, infos); with
        ``observe=False`` the observations are None (the caller resets some environments first and
        observes once: ``end_observations``)."""
        out = self._new_outputs()  # fresh arrays: the infos keep them
        tlp, placed = self._kernel_step(actions, out)
        info = self._record(placed)
        put_all(info, "tlp", tlp, fresh=True)
        self.put_step_info(info, out.cost, out.produced, out.rlp, out.missed, out.terminated, out.truncated)
        obs = self.end_observations(out.terminated) if observe else None
        return obs, out.reward, out.terminated, out.truncated, info

    def _kernel_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        split = self.tables.split if self.fc_mode == FC_SPLIT else NO_SPLIT_TABLE
        return self.tables.fc, split, self.tables.fixed

    def _run(self, kernel: Any, *args: Any) -> None:
        """Call a pricing kernel, filling the cost-table entries it reports missing until it has
        none (it changes nothing while it reports some)."""
        missing = self._missing
        while True:
            n_missing = kernel(*args, missing)
            if not n_missing:
                return
            self._fill(missing[:n_missing])

    def _fill(self, entries: np.ndarray) -> None:
        """Compute the cost-table entries a kernel reported missing."""
        self.tables.fill(entries)

    def _new_outputs(self) -> StepOutputs:
        n = self.num_envs
        return StepOutputs(np.empty((8, n)), np.empty(n), *(np.empty(n, dtype=np.int64) for _ in range(5)),
                           *(np.empty(n, dtype=bool) for _ in range(3)))

    def _kernel_step(self, actions: Any, out: StepOutputs) -> tuple[np.ndarray, Any]:
        """Run the compiled step into ``out``; (the iteration's TLP, what was placed)."""
        fc_actions, attention, placed = self._placement(actions)
        tlp = self.tlp.copy()  # the iteration's TLP (a schedule moves self.tlp on)
        fc, split, fixed = self._kernel_tables()
        starts, values = self._schedule if self._schedule is not None else NO_SCHEDULE
        self._run(kernels.step_batches, self.stochastic, self.fc_mode, fc_actions, attention, self.cm, self.tlp,
                  *self._layout(), fc, split, fixed, REWARD_CODES[self.reward_kind], self.time_scales,
                  self.energy_scales, self.targets, self.miss_penalty, self.max_steps, self.total_time,
                  self.total_energy, self.tokens, self.misses, self.steps, starts, values, out.cost, out.rlp,
                  out.produced, out.missed, out.reward, out.terminated, out.truncated, out.live, out.total,
                  out.longest)
        self._context = (out.live, out.total, out.longest)
        self._derived.clear()
        return tlp, placed

    def _layout(self) -> tuple[np.ndarray, ...]:
        """The batches' arrays as kernels.step_batches takes them: the lock-step layout's, then the
        stochastic one's (and its acceptance), each empty for the layout the batches do not use."""
        b = self.batch
        if self.stochastic:
            slots = np.full(b.width, float(self.acceptance_rate))  # one probability per request slot
            return (b.size, *NO_LOCKSTEP[:5], b.output_lengths, *NO_LOCKSTEP[5:], b.input_lengths, b.gen, self.keys,
                    slots, b.last_request_accepted, b.last_request_rejected, b.last_drafted, b.last_accepted)
        return (b.size, b.first, b.generated, b.next_output, b.live_input, b.live_max_input, b.output_lengths,
                b.prefix_output, b.suffix_input, b.suffix_max_input, *NO_STOCHASTIC)

    def step_one(self, actions: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """The scalar environments' step (N = 1, compiled variants): the same kernel as ``step``,
        its results as Python values and the info as a scalar environment gives it."""
        out = self._outputs_one
        if out is None:
            out = self._outputs_one = self._new_outputs()  # reused: the infos copy their values out
        tlp, placed = self._kernel_step(actions, out)
        info = scalar_info(self._record(placed))
        info["tlp"] = int(tlp[0])
        info.update(zip(STEP_KEYS, out.cost[:, 0].tolist(), strict=True))
        info["tokens"], info["rlp"], info["missed_target"] = int(out.produced[0]), int(out.rlp[0]), bool(out.missed[0])
        terminated, truncated = bool(out.terminated[0]), bool(out.truncated[0])
        if terminated or truncated:
            episode: dict[str, np.ndarray] = {}
            self._episode_info(episode, ZERO)
            info.update(scalar_info(episode))
        obs = self.observe()[0]
        if terminated:
            obs[:] = 0.0
        return obs, float(out.reward[0]), terminated, truncated, info

    def expected_reward(self, actions: Any) -> np.ndarray:
        """(N,) the reward the (checked) actions would earn now, without stepping (drafts all
        accepted: TLP tokens per request)."""
        fc_actions, attention, _ = self._placement(actions)
        n = self.num_envs
        cost, reward, rlp = np.empty((8, n)), np.empty(n), np.empty(n, dtype=np.int64)
        fc, split, fixed = self._kernel_tables()
        layout = self._layout()
        self._run(kernels.price_and_reward, self.stochastic, self.fc_mode, fc_actions, attention, self.cm, self.tlp,
                  *(layout[k] for k in (0, 1, 2, 4, 5, 10, 6, 11)), fc, split, fixed, REWARD_CODES[self.reward_kind],
                  self.time_scales, self.energy_scales, self.targets, self.miss_penalty, self.total_time,
                  self.total_energy, cost, rlp, reward)
        return reward

    def _placement(self, actions: Any) -> tuple[np.ndarray, np.ndarray, Any]:
        """A compiled variant's checked actions as (FC actions (N, 3) int64 for ``fc_mode``,
        attention units (N,) int64, what ``_record`` is given)."""
        raise NotImplementedError

    def _record(self, placed: Any) -> dict[str, np.ndarray]:
        """Remember the placement (for the observation) and return the variant's step infos."""
        raise NotImplementedError

    @staticmethod
    def batch_action(action: Any) -> np.ndarray:
        """One scalar environment's action as a batch of one (check_actions judges its shape)."""
        return np.asarray(action)[None]

    def action_masks(self) -> np.ndarray:
        """(N, ...) which actions are possible now, for discrete action spaces."""
        raise NotImplementedError(f"{type(self).__name__} has a continuous action space: no action masks")

    def check_actions(self, actions: Any, live: np.ndarray) -> Any:
        """``actions`` as the variant's arrays; ValueError naming what is allowed otherwise.
        ``live``: which environments step (the others' actions are ignored)."""
        raise NotImplementedError

    def put_step_info(self, info: dict[str, np.ndarray], cost: Any, tokens: np.ndarray, rlp: np.ndarray,
                      missed: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """The infos every step gives (the iteration's cost by category, tokens, RLP, missed target)
        and, where an episode ended, its episode infos; the arrays are new ones of this step."""
        for key, value in zip(STEP_KEYS, cost, strict=True):
            put_all(info, key, value, fresh=True)
        put_all(info, "tokens", tokens, fresh=True)
        put_all(info, "rlp", rlp, fresh=True)
        put_all(info, "missed_target", missed, fresh=True)
        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            self._episode_info(info, ended)

    def _episode_info(self, info: dict[str, np.ndarray], ended: np.ndarray) -> None:
        t, e, n, misses, cm = (self.total_time[ended], self.total_energy[ended], self.tokens[ended],
                               self.misses[ended], self.cm[ended])
        score = episode_score(self.reward_kind, t, e, n, misses, self.time_scales[cm], self.miss_penalty)
        put_rows(info, {"episode_time": t, "episode_energy": e, "episode_tokens": n, "episode_misses": misses,
                        "episode_steps": self.steps[ended], "tokens_per_s": n / t, "joules_per_token": e / n,
                        "model": self.model_names[cm], "system": self.system_names[cm], "score": score},
                 ended, self.num_envs)

    def end_observations(self, terminated: np.ndarray) -> np.ndarray:
        """Observations after a step: zeros where the batch ended."""
        obs = self.observe()
        obs[terminated] = 0.0
        return obs

def per_env(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Per-environment ``values`` (N,) shaped to broadcast against ``like``: (N,) or (N, K)."""
    return values[:, None] if np.ndim(like) == 2 else values


_EVERYONE: dict[int, np.ndarray] = {}


def _everyone(n: int) -> np.ndarray:
    """A read-only all-True mask of length n (shared: masks of keys every environment has)."""
    mask = _EVERYONE.get(n)
    if mask is None:
        mask = _EVERYONE[n] = np.ones(n, dtype=bool)
        mask.flags.writeable = False
    return mask


def scalar_info(info: dict[str, np.ndarray], i: int = 0) -> dict[str, Any]:
    """Environment i's info as a scalar environment gives it (Python numbers, strings, arrays)."""
    out = {}
    for key, values in info.items():
        if key[0] != "_" and info["_" + key][i]:
            if isinstance(values, dict):  # a nested info (a dict per environment)
                out[key] = scalar_info(values, i)
            else:
                out[key] = values.item(i) if values.ndim == 1 and values.dtype != object else values[i]
    return out


def put_all(info: dict[str, np.ndarray], key: str, values: np.ndarray, fresh: bool = False) -> None:
    """Set ``info[key]`` for every environment: ``values`` (an int64, float64, bool or object array
    over all environments), copied unless ``fresh`` (an array no one else holds: state arrays
    change in place at reset). The mask is the shared all-True one."""
    info[key] = values if fresh else values.copy()
    info["_" + key] = _everyone(len(values))


def put(info: dict[str, np.ndarray], key: str, values: Any, where: Any) -> None:
    """Set ``info[key]`` (an array over all environments) at ``where`` from ``values`` (an array
    over all environments), and mark it present there (``info["_" + key]``), in gymnasium's
    vector-info layout. Array dtypes are what SyncVectorEnv makes of Python values (int64,
    float64, bool, object)."""
    values = np.asarray(values)
    if key not in info:
        info[key] = _empty_like(values)
        info["_" + key] = np.zeros(len(values), dtype=bool)
    elif not info["_" + key].flags.writeable:  # a shared mask (put_all, put_rows)
        info["_" + key] = info["_" + key].copy()
    info[key][where] = values[where]
    info["_" + key][where] = True


def put_rows(info: dict[str, np.ndarray], values_by_key: dict[str, Any], where: np.ndarray, n: int) -> None:
    """Set keys new to ``info`` at the rows ``where`` of ``n`` environments from ``values_by_key``
    (arrays of len(where), in its order), as ``put`` does, sharing one read-only mask."""
    mask = np.zeros(n, dtype=bool)
    mask[where] = True
    mask.flags.writeable = False
    for key, values in values_by_key.items():
        values = np.asarray(values)
        array = info[key] = _empty_like(values, n)
        array[where] = values
        info["_" + key] = mask


def _empty_like(values: np.ndarray, n: int | None = None) -> np.ndarray:
    """An all-absent info array for ``values`` (over ``n`` environments; default len(values)):
    zeros of SyncVectorEnv's dtype, or Nones."""
    n = len(values) if n is None else n
    dtype = {"i": np.int64, "u": np.int64, "f": np.float64, "b": np.bool_}.get(values.dtype.kind, object)
    return np.zeros((n, *values.shape[1:]), dtype=dtype) if dtype is not object else np.empty(n, dtype=object)  # Nones
