"""The serving loop of N PAPI environments as arrays: the one implementation of the dynamics.

Every variant's environment, scalar or vector, runs on a :class:`VectorCore` subclass: the vector
environments (papi_env.vector) step N of them at once, the scalar ``gymnasium.Env`` classes are
the case N = 1. The core owns the batches, the episode totals, the objectives' rewards, the
observations' shared features and the infos; a variant adds its spaces and action checks
(``single_spaces``, ``batch_action``, ``check_actions``), its cost (``_price``), its infos
(``_record``) and its own features (``_extra_features``); the speculation variant, whose action
sets the TLP, has its own ``step``. Everything is computed for all N
environments at once; an environment whose episode has ended is computed too (on a clamped RLP)
and its results are thrown away when it is reset.

Randomness: environment i has its own seeded ``numpy.random.Generator`` (``rngs[i]``, seeded
like gymnasium seeds the i-th sub-environment: seed + i), from which each reset draws the
episode (hardware, dataset, batch size, TLP, requests); draws during an episode come from
sim.random_streams under a key the reset draws, so they do not depend on N.

Infos follow gymnasium's vector layout: ``infos[key]`` an array over environments and
``infos["_" + key]`` a mask of the environments that have the key (what
``gymnasium.vector.SyncVectorEnv`` builds from N scalar infos).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hardware.calibrate import CALIBRATION_MAX_TOKENS, calibrate_alpha, calibration_objective
from hardware.cost_tables import UNITS, CostTables
from hardware.systems import CostModel, IterationCost
from hardware.workloads import get_dataset
from sim import random_streams
from sim.acceptance import leading_accepts
from sim.batches import BatchArrays

RLP_SCALE, TLP_SCALE, CTX_SCALE, LOG_R_SCALE = 256.0, 16.0, 4096.0, 12.0
REWARDS = ("latency", "energy", "edp", "latency_target")
OVER_CAPACITY = ("error", "admit")
"""What reset does with a drawn batch whose KV cache (every request at its full length) exceeds the
attention memory: 'error' (default: an experiment never silently runs a smaller batch than it
asked for) or 'admit' (admit requests in the drawn order while they fit, as a server would)."""
TARGET_IN_TIME_SCALES = 2.0  # [D] default per-token latency target, in units of time_scale
LOG2 = np.log2(np.maximum(np.arange(int(RLP_SCALE * TLP_SCALE) + 1), 1)) / LOG_R_SCALE  # log2(r) / 12 by r
STEP_KEYS = ("time_fc", "time_attention", "time_communication", "time_other", "energy_fc", "energy_attention",
             "energy_communication", "energy_other")
ACCEPT_STREAM = 0  # random_streams stream of the acceptance draws (the drift uses 1 and 2)


def as_choices(name: str, value: Any, low: int, high: int) -> tuple[int, ...]:
    """An int or a list of ints in [low, high], as a tuple; a clear error otherwise."""
    if isinstance(value, (int, np.integer)):
        values = (value,)
    elif isinstance(value, (list, tuple)):
        values = tuple(value)
    else:
        raise ValueError(f"{name} must be an integer or a list of integers in [{low}, {high}], got {value!r}")
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= v <= high
                         for v in values):
        raise ValueError(f"{name} must be an integer or a list of integers in [{low}, {high}], got {value!r}")
    return tuple(int(v) for v in values)


def _as_list(value: Any) -> list:
    """One value or a list of values (a dict is one value: a system override)."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_tlp(tlp: Any) -> tuple:
    """``tlp``: an int, a list of ints (one drawn per episode), or one schedule [[iteration, tlp],
    ...] as a 1-tuple holding a tuple of pairs."""
    if isinstance(tlp, (list, tuple)) and len(tlp) and all(isinstance(item, (list, tuple)) for item in tlp):
        if any(len(item) != 2 or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                                         for x in item) for item in tlp):
            raise ValueError(f"a TLP schedule is a list of [iteration, tlp] integer pairs, got {tlp!r}")
        schedule = tuple((int(s), int(v)) for s, v in tlp)
        if any(b[0] <= a[0] for a, b in zip(schedule[:-1], schedule[1:], strict=True)):
            raise ValueError(f"a TLP schedule's iterations must increase, got {tlp!r}")
        as_choices("tlp", [v for _, v in schedule], 1, int(TLP_SCALE))
        if schedule[0][0] != 0:
            raise ValueError("a TLP schedule must start at iteration 0")
        return (schedule,)
    return as_choices("tlp", tlp, 1, int(TLP_SCALE))


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


class VectorCore:
    """The dynamics of ``num_envs`` environments of one variant (see the module docstring)."""

    obs_size = 8
    stochastic_variant = False  # True: per-request acceptance every step (the spec variant)

    def __init__(
        self,
        num_envs: int = 1,
        model: str | Sequence[str] = "llama-65b",
        dataset: str | Sequence[str] = "creative-writing",
        batch_size: int | Sequence[int] = (4, 16, 64),
        tlp: int | Sequence[int] | Sequence[Sequence[int]] = (1, 2, 4),
        system: Any = "papi",
        reward: str = "latency",
        max_steps: int = 4096,
        acceptance_rate: float | None = None,
        latency_target_s: float | None = None,
        miss_penalty: float = 1.0,
        on_over_capacity: str = "error",
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        for name, value in (("latency_target_s", latency_target_s), ("miss_penalty", miss_penalty),
                            ("acceptance_rate", acceptance_rate)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                      or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if on_over_capacity not in OVER_CAPACITY:
            raise ValueError(f"on_over_capacity must be one of {OVER_CAPACITY}, got {on_over_capacity!r}")
        for name, value in (("model", model), ("dataset", dataset), ("system", system)):
            if isinstance(value, (list, tuple)) and len(value) == 0:
                raise ValueError(f"{name} must be one value or a non-empty list, got an empty list")
        if latency_target_s is not None and not latency_target_s > 0:
            raise ValueError(f"latency_target_s must be > 0 seconds, got {latency_target_s!r}")
        if not miss_penalty >= 0:
            raise ValueError(f"miss_penalty must be >= 0, got {miss_penalty!r}")
        if acceptance_rate is not None and not 0.0 < acceptance_rate <= 1.0:
            raise ValueError(f"acceptance_rate must be in (0, 1], got {acceptance_rate!r}")
        self.num_envs = n = int(num_envs)
        self.cost_models = [CostModel(s, m) for s in _as_list(system) for m in _as_list(model)]
        self.datasets = [get_dataset(d) for d in _as_list(dataset)]
        self.batch_sizes = as_choices("batch_size", batch_size, 1, int(RLP_SCALE))
        self.tlp_choices = parse_tlp(tlp)
        self.reward_kind = reward
        self.max_steps = int(max_steps)
        self.acceptance_rate = None if acceptance_rate in (None, 1.0) else float(acceptance_rate)
        self.latency_target_s = latency_target_s
        self.miss_penalty = float(miss_penalty)
        self.on_over_capacity = on_over_capacity
        self.tables = CostTables.shared(self.cost_models)
        self._scales()
        self._alphas: dict[tuple[int, str | None], int] = {}
        self._alpha_arrays: dict[str | None, np.ndarray] = {}
        self.stochastic = self.stochastic_variant or self.acceptance_rate is not None
        self.batch = BatchArrays(n, max(self.batch_sizes), self.stochastic)
        self.rngs: list[np.random.Generator | None] = [None] * n
        self.keys = np.zeros(n, dtype=np.uint64)
        self.cm = np.zeros(n, dtype=np.int64)
        self.dataset_index = np.zeros(n, dtype=np.int64)
        self.tlp_spec_index = np.zeros(n, dtype=np.int64)
        self.tlp = np.ones(n, dtype=np.int64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.total_time, self.total_energy = np.zeros(n), np.zeros(n)
        self.tokens, self.misses = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self.last_share = np.zeros(n)
        self._schedule = None
        self._context: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._derived: dict[str, Any] = {}  # other values derived from the batches (live_slots, ...), until they change
        self._per_env: dict[str, np.ndarray] = {}
        if isinstance(self.tlp_choices[0], tuple):
            starts, values = zip(*self.tlp_choices[0], strict=True)
            self._schedule = (np.array(starts), np.array(values, dtype=np.int64))

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

    def by_env(self, name: str, per_model: np.ndarray | None = None) -> np.ndarray:
        """``per_model[self.cm]`` for every environment, of a per-cost-model array (default the
        attribute ``name``), cached under ``name`` until the next reset (episodes draw their cost
        model at reset)."""
        values = self._per_env.get(name)
        if values is None:
            values = self._per_env[name] = (getattr(self, name) if per_model is None else per_model)[self.cm]
        return values

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
        cached = self._context
        self._context = None
        self._derived.clear()
        if len(envs):
            self._begin_episodes(envs)
            self._per_env.clear()  # the new episodes' cost models
            if cached is not None:  # refresh the new episodes' rows only
                rlp, total, longest = (a.copy() for a in cached)
                rlp[envs], (total[envs], longest[envs]) = self.batch.live()[envs], self.batch.context(envs)
                self._context = (rlp, total, longest)
        return self._reset_info(envs)

    def _begin_episodes(self, envs: np.ndarray) -> None:
        """Draw each of ``envs``' hardware, model, dataset, batch and TLP from its own generator
        (in the order the scalar environments of v0.2 drew them, so the same seed gives the same
        episodes), then set the episodes up for all of them at once."""
        n_models, n_datasets, n_sizes, n_tlps = (len(self.cost_models), len(self.datasets), len(self.batch_sizes),
                                                 len(self.tlp_choices))
        cms, dss, specs, draws = [], [], [], []
        for i in envs.tolist():
            rng = self.rngs[i]
            if rng is None:
                rng = self.rngs[i] = np.random.default_rng()
            cm = int(rng.integers(n_models)) if n_models > 1 else 0
            ds = int(rng.integers(n_datasets)) if n_datasets > 1 else 0
            size = self.batch_sizes[rng.integers(n_sizes)]
            specs.append(int(rng.integers(n_tlps)))
            draws.append(self.datasets[ds].draw(size, rng))
            cms.append(cm)
            dss.append(ds)
        lins, louts = self._lengths(dss, draws)
        for j, c in enumerate(cms):
            model = self.cost_models[c]
            if self.on_over_capacity == "admit":
                fits = model.batch_prefix_that_fits(lins[j], louts[j])
                lins[j], louts[j] = lins[j][:fits], louts[j][:fits]
            else:
                model.check_batch_fits(lins[j], louts[j])
        cm = np.array(cms, dtype=np.int64)
        self.cm[envs], self.dataset_index[envs] = cm, dss
        self.tlp_spec_index[envs] = specs
        self.batch.load_many(envs, lins, louts)
        self.steps[envs] = 0
        self.total_time[envs] = self.total_energy[envs] = 0.0
        self.tokens[envs] = self.misses[envs] = 0
        self.last_share[envs] = 0.0
        self.tlp[envs] = self._schedule[1][0] if self._schedule else np.asarray(self.tlp_choices, dtype=np.int64)[specs]
        self._begin_variants(envs)
        if self.stochastic:
            for i in envs.tolist():
                self.keys[i] = random_streams.episode_keys(self.rngs[i])[0]

    def _lengths(self, datasets: list[int], draws: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each batch's (input, output) lengths from its dataset's draws, one call per dataset."""
        if len(draws) == 1:  # most steps start one episode
            lin, lout = self.datasets[datasets[0]].lengths_of(draws[0])
            return [lin], [lout]
        lins: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(draws)
        louts = list(lins)
        for ds in sorted(set(datasets)):
            which = [j for j, d in enumerate(datasets) if d == ds]
            lin, lout = self.datasets[ds].lengths_of(np.concatenate([draws[j] for j in which], axis=-1))
            start = 0
            for j in which:
                end = start + draws[j].shape[-1]
                lins[j], louts[j] = lin[start:end], lout[start:end]
                start = end
        return lins, louts

    def _begin_variants(self, envs: np.ndarray) -> None:
        """A variant's own per-episode state for ``envs`` (batches loaded), with any draws from
        each environment's generator (before its episode key)."""

    def _reset_info(self, envs: np.ndarray) -> dict[str, np.ndarray]:
        info: dict[str, np.ndarray] = {}
        put_rows(info, {"batch_size": self.batch.size[envs], "rlp": self.rlp()[envs], "tlp": self.tlp[envs]}, envs,
                 self.num_envs)
        return info

    # ----------------------------------------------------------------------------- features
    def _batch_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(RLP, context sum, longest context) of the batches, cached until they advance or reset."""
        if self._context is None:
            total, longest = self.batch.context()
            self._context = (self.batch.live(), total, longest)
        return self._context

    def live_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """(environment, slot) indices of every live request, row by row (np.nonzero of the live
        mask), cached until the batches advance or reset."""
        slots = self._derived.get("live_slots")
        if slots is None:
            slots = self._derived["live_slots"] = np.nonzero(self.batch.live_mask())
        return slots

    def rlp(self) -> np.ndarray:
        """(N,) live requests of every batch."""
        return self._batch_state()[0]

    def context_before_verify(self) -> np.ndarray:
        """(N,) float64 sum of the live requests' prompt + generated tokens (without the TLP
        tokens an iteration verifies)."""
        return self._batch_state()[1].astype(np.float64)

    def context(self, tlp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(RLP, sum, max) of the live requests' contexts at speculation length ``tlp`` (N,),
        the sums as float64 tokens (what CostModel.iteration takes)."""
        rlp, total, longest = self._batch_state()
        return rlp, (total + rlp * tlp).astype(np.float64), (longest + tlp * (rlp > 0)).astype(np.float64)

    def observe(self) -> np.ndarray:
        """(N, obs_size) float32 observations in [0, 1] of the current state."""
        rlp, sum_ctx, max_ctx = self.context(self.tlp)
        r = rlp * self.tlp
        safe = np.maximum(rlp, 1)
        feats = [
            rlp / RLP_SCALE,
            self.tlp / TLP_SCALE,
            LOG2[np.minimum(r, len(LOG2) - 1)],
            rlp / self.batch.size,
            sum_ctx / safe / CTX_SCALE,
            max_ctx / CTX_SCALE,
            self.last_share,
            self.steps / self.max_steps,
        ]
        feats += self._extra_features(rlp, sum_ctx)
        obs = np.empty((self.num_envs, len(feats)), dtype=np.float32)
        for column, values in enumerate(feats):  # float64 features rounded to float32 once, as np.stack + astype did
            obs[:, column] = values
        return np.clip(obs, 0.0, 1.0, out=obs)

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
        rlp, cost, reward, placed = self._price(actions)
        tlp = self.tlp
        tokens = self.advance(tlp)
        info = self._record(placed)
        put_all(info, "tlp", tlp)
        terminated, truncated = self.finish_step(cost, tokens, rlp, info)
        self.next_tlp(terminated, truncated)
        return self.end_observations(terminated) if observe else None, reward, terminated, truncated, info

    def expected_reward(self, actions: Any) -> np.ndarray:
        """(N,) the reward the (checked) actions would earn now, without stepping."""
        return self._price(actions)[2]

    def _price(self, actions: Any) -> tuple[np.ndarray, IterationCost, np.ndarray, Any]:
        """(RLP, cost, reward, what was placed) of the actions now; no state changes."""
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

    def finish_step(self, cost: IterationCost, tokens: np.ndarray, rlp: np.ndarray,
                    info: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Add the iteration to the totals; fill ``info``; return (terminated, truncated)."""
        self.steps += 1
        seconds = cost.time
        missed = self.missed(seconds, tokens / np.maximum(rlp, 1))
        self.total_time += seconds
        self.total_energy += cost.energy
        self.tokens += tokens
        self.misses += missed
        for key, value in zip(STEP_KEYS, cost, strict=True):  # new arrays of this iteration: no copies
            put_all(info, key, value, fresh=True)
        put_all(info, "tokens", tokens, fresh=True)
        put_all(info, "rlp", rlp)
        put_all(info, "missed_target", missed, fresh=True)
        terminated = self.rlp() == 0
        truncated = ~terminated & (self.steps >= self.max_steps)
        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            self._episode_info(info, ended)
        return terminated, truncated

    def _episode_info(self, info: dict[str, np.ndarray], ended: np.ndarray) -> None:
        t, e, n, misses, cm = (self.total_time[ended], self.total_energy[ended], self.tokens[ended],
                               self.misses[ended], self.cm[ended])
        score = episode_score(self.reward_kind, t, e, n, misses, self.time_scales[cm], self.miss_penalty)
        put_rows(info, {"episode_time": t, "episode_energy": e, "episode_tokens": n, "episode_misses": misses,
                        "episode_steps": self.steps[ended], "tokens_per_s": n / t, "joules_per_token": e / n,
                        "model": self.model_names[cm], "system": self.system_names[cm], "score": score},
                 ended, self.num_envs)

    def next_tlp(self, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Move the TLP schedule on (episodes that go on; a truncated one keeps its TLP)."""
        if self._schedule is not None:
            starts, values = self._schedule
            on = ~(terminated | truncated)
            self.tlp = np.where(on, values[np.searchsorted(starts, self.steps, side="right") - 1], self.tlp)

    def end_observations(self, terminated: np.ndarray) -> np.ndarray:
        """Observations after a step: zeros where the batch ended."""
        obs = self.observe()
        obs[terminated] = 0.0
        return obs

    def advance(self, tlp: np.ndarray, probs: np.ndarray | float | None = None) -> np.ndarray:
        """Run the iteration on the batches (tokens produced, (N,)); with per-request acceptance
        ``probs`` (or the scalar ``acceptance_rate``), drafts are accepted at random."""
        if not self.stochastic:
            tokens = self.batch.advance(tlp)
        else:
            probs = self.acceptance_rate if probs is None else probs
            tokens = self.batch.advance(tlp, self.leading_accepts(tlp, probs))
        self._context = None
        self._derived.clear()
        return tokens

    def leading_accepts(self, tlp: np.ndarray, probs: np.ndarray | float) -> np.ndarray:
        """(N, width) drafts each request has accepted before its first rejection this iteration,
        each draft accepted with probability ``probs`` (per request, or one for all): geometric,
        P(leading >= j) = p^j, capped at TLP - 1 (one uniform per request, random_streams)."""
        rows, slots = self.live_slots()  # finished and empty slots gain nothing: no draw
        u = random_streams.uniform(self.keys[rows], self.steps[rows], slots, ACCEPT_STREAM)
        p = probs[rows, slots] if np.ndim(probs) == 2 else probs
        leading = np.zeros((self.num_envs, self.batch.width), dtype=np.int64)
        leading[rows, slots] = leading_accepts(u, p, tlp[rows] - 1)
        return leading


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
