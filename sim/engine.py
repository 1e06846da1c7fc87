"""N static batches stepped as arrays: the dynamics under the static-batch environments.

A :class:`StaticEngine` holds N independent episodes, each a static batch of requests on one
system and model: it draws each episode (hardware, model, dataset, batch size, TLP, request
lengths) from that environment's own seeded generator, keeps the batches (sim.batches), the
per-episode counters (iterations, seconds, joules, tokens) and the TLP schedule, and answers the
state questions pricing needs (live requests, context sums). One iteration is advanced by the
compiled kernels (sim.kernels: lock-step batches, or per-request acceptance by sim.acceptance's
one formula on the counter draws of the episode's key), which papi_env.kernels' steps call.

What an iteration costs is hardware's (the cost tables); what an action is, what is observed and
rewarded is papi_env's (``papi_env.core.VectorCore`` extends this class with the MDP). Everything
is computed for all N at once; an environment whose episode has ended is computed too (on a
clamped RLP) and its results are thrown away when it starts a new episode.

Randomness: environment i has its own ``numpy.random.Generator`` (``rngs[i]``; gymnasium seeds the
i-th sub-environment with seed + i), from which each new episode is drawn; draws during an
episode come from sim.random_streams under a key drawn at the episode's start, so they do not
depend on N.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hardware.cost_tables import CostTables
from hardware.population import cost_models_of
from hardware.systems import CostModel
from hardware.workloads import get_dataset
from sim import random_streams
from sim.batches import BatchArrays

MAX_BATCH = 256  # requests in a batch at most (the observation's RLP scale, papi_env.core.RLP_SCALE)
MAX_TLP = 16  # speculation length at most (papi_env.core.TLP_SCALE)
MAX_ENVS = 65_536
"""[measured] Environments of one engine at most: each new episode is drawn from its environment's own
generator in Python (~50 us each on a 2-core machine), so a reset of all of them takes ~3 s here."""
OVER_CAPACITY = ("error", "admit")
"""What a new episode does with a drawn batch whose KV cache (every request at its full length)
exceeds the attention memory: 'error' (default: an experiment never silently runs a smaller batch
than it asked for) or 'admit' (admit requests in the drawn order while they fit, as a server would)."""


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
        as_choices("tlp", [v for _, v in schedule], 1, MAX_TLP)
        if schedule[0][0] != 0:
            raise ValueError("a TLP schedule must start at iteration 0")
        return (schedule,)
    return as_choices("tlp", tlp, 1, MAX_TLP)



class StaticEngine:
    """The dynamics of ``num_envs`` static-batch episodes (see the module docstring)."""

    stochastic_variant = False  # True: per-request acceptance every step (the spec variant)

    def __init__(
        self,
        num_envs: int = 1,
        model: str | Sequence[str] = "llama-65b",
        dataset: str | Sequence[str] = "creative-writing",
        batch_size: int | Sequence[int] = (4, 16, 64),
        tlp: int | Sequence[int] | Sequence[Sequence[int]] = (1, 2, 4),
        system: Any = "papi",
        acceptance_rate: float | None = None,
        on_over_capacity: str = "error",
        population: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        """``model`` and ``system``: one each, or lists whose every combination an episode may draw;
        ``population``: instead, a list of [system, model] pairs, one drawn per episode
        (hardware.population draws such lists)."""
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or not 1 <= num_envs <= MAX_ENVS:
            raise ValueError(f"num_envs must be an integer in [1, {MAX_ENVS:,}], got {num_envs!r}")
        if acceptance_rate is not None and (isinstance(acceptance_rate, bool) or not isinstance(
                acceptance_rate, (int, float, np.number)) or not math.isfinite(acceptance_rate)):
            raise ValueError(f"acceptance_rate must be a finite number, got {acceptance_rate!r}")
        if on_over_capacity not in OVER_CAPACITY:
            raise ValueError(f"on_over_capacity must be one of {OVER_CAPACITY}, got {on_over_capacity!r}")
        for name, value in (("model", model), ("dataset", dataset), ("system", system)):
            if isinstance(value, (list, tuple)) and len(value) == 0:
                raise ValueError(f"{name} must be one value or a non-empty list, got an empty list")
        if acceptance_rate is not None and not 0.0 < acceptance_rate <= 1.0:
            raise ValueError(f"acceptance_rate must be in (0, 1], got {acceptance_rate!r}")
        self.num_envs = n = int(num_envs)
        if population is not None:
            if (model, system) != ("llama-65b", "papi"):
                raise ValueError("give population (a list of [system, model] pairs) or model and system, not both")
            self.cost_models = cost_models_of(population)
        else:
            self.cost_models = [CostModel(s, m) for s in _as_list(system) for m in _as_list(model)]
        self.datasets = [get_dataset(d) for d in _as_list(dataset)]
        self.batch_sizes = as_choices("batch_size", batch_size, 1, MAX_BATCH)
        self.tlp_choices = parse_tlp(tlp)
        self.acceptance_rate = None if acceptance_rate in (None, 1.0) else float(acceptance_rate)
        self.on_over_capacity = on_over_capacity
        self.tables = CostTables.shared(self.cost_models)
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
        self.tokens = np.zeros(n, dtype=np.int64)
        self._schedule = None
        self._context: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._derived: dict[str, Any] = {}  # other values derived from the batches (live_slots, ...), until they change
        self._per_env: dict[str, np.ndarray] = {}
        if isinstance(self.tlp_choices[0], tuple):
            starts, values = zip(*self.tlp_choices[0], strict=True)
            self._schedule = (np.array(starts), np.array(values, dtype=np.int64))

    def by_env(self, name: str, per_model: np.ndarray | None = None) -> np.ndarray:
        """``per_model[self.cm]`` for every environment, of a per-cost-model array (default the
        attribute ``name``), cached under ``name`` until the next reset (episodes draw their cost
        model at reset)."""
        values = self._per_env.get(name)
        if values is None:
            values = self._per_env[name] = (getattr(self, name) if per_model is None else per_model)[self.cm]
        return values

    # ----------------------------------------------------------------------------- episodes
    def new_episodes(self, envs: Sequence[int]) -> None:
        """Start a new episode in each of ``envs`` (indices), drawn from its generator."""
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
        self.tokens[envs] = 0
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

    # -------------------------------------------------------------------------------- state
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

    def next_tlp(self, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Move the TLP schedule on (episodes that go on; a truncated one keeps its TLP)."""
        if self._schedule is not None:
            starts, values = self._schedule
            on = ~(terminated | truncated)
            self.tlp = np.where(on, values[np.searchsorted(starts, self.steps, side="right") - 1], self.tlp)
