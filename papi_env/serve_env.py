"""PapiServe-v0: online serving with continuous batching, arrivals, KV capacity and latency targets.

One step is one iteration of sim.online's serving loop (read its docstring for the loop and its
assumptions), compiled in sim.serve_kernels; the MDP around it is papi_env.serve_kernels, over N
environments (``ServeCore``): this scalar env is N = 1, ``gymnasium.make_vec(...,
vectorization_mode="vector_entry_point")`` gives N at once with the same numbers.
Requests arrive over time; the scheduler decides, at every iteration boundary:

- **action** ``MultiDiscrete([2, max_tlp, max_admit + 1])``: where the FC kernels run (0 FC-PIM,
  1 GPU; on a system without FC-PIM the GPU is used whatever is asked, ``info["unit_fallback"]``),
  the speculation length TLP (index + 1), and how many queued requests to admit (FCFS; clamped to
  what fits the KV capacity and ``max_batch``, ``info["admit_clamped"]``; when nothing runs at
  least one is admitted; ``queue_order`` "shortest" admits the shortest prompts first,
  "deadline" the requests still within their TTFT target first). ``action_masks()`` gives the
  valid choices (MaskablePPO).
- **observation** (11 values in [0, 1]): running RLP / max_batch; log queue length; age of the
  oldest waiting request / TTFT target; KV occupancy (reserved / capacity); log recent arrival
  rate (EMA over ~1 s); last TLP / max_tlp; recent acceptance (EMA of kept / verified tokens);
  RLP x last TLP / PAPI's crossover alpha; admissible requests / max_admit; log total context;
  share of the episode's requests that have arrived; with chunked prefill a twelfth, the log of
  the prompt tokens the running requests have still to compute (in iteration budgets).
- **rewards** (per-step terms that sum to the episode's objective; the first ``warmup`` requests
  are not scored):
  ``latency``: -(request-seconds the scored requests spend in the system during the step) / their
  number, summing to minus their mean end-to-end latency; score = 1 / mean latency (1/s).
  ``energy``: -(joules attributed to scored requests) / their output tokens, summing to minus J per
  token; score = tokens/J.
  ``goodput``: +1 / window for each scored request that finishes within both its TTFT and TPOT
  targets, window = the scored requests' arrival span; the sum is the goodput (requests/s) and
  the score.
  ``shaping`` adds a potential-based term (Ng et al. 1999; undiscounted, so each episode's sum is
  unchanged up to the start's potential): ``"remaining"`` (latency) credits tokens when they are
  made, potential minus the scored requests' remaining tokens x the unloaded time per token per
  scored request; ``"on-track"`` (goodput) charges a request's goodput when it goes off track,
  potential the scored requests in the system that can still meet both targets (within the TTFT
  target, or a first token within it and a pace since within the TPOT target), per window.
- **KV memory** (``kv_policy``): ``"reserve"`` (default) each request's full length at admission,
  never preempting; ``"paged"`` as vLLM: blocks of ``block_tokens`` tokens allocated as contexts
  grow, admission keeping a ``watermark`` share free, preemption by recompute (the most recently
  admitted first; ``info["preempted"]``) when running requests cannot grow.
- **prefill** (``token_budget``): ``None`` (default) prefills each admitted request's whole prompt
  in the iteration that admits it; a number of tokens chunks prompts as Sarathi-Serve does: each
  iteration computes at most that many tokens, the decoded requests' RLP x TLP first and prompt
  chunks of the admitted requests (oldest first) in the rest, fused with the decoding step.
- **latency targets** (goodput, SLO attainment): ``ttft_target_s`` and ``tpot_target_s``, by default
  ``slo_scale`` (5: medium; 2: tight) times the unloaded TTFT and TPOT of the median request (of
  the dataset, or of the trace's split) on the PAPI system with the env's model.
- **systems** (transfer): ``population``, a list of [system, model] pairs (hardware.population
  draws them), one drawn per episode instead of ``system`` and ``model``, each with its own FC
  units, PAPI crossover and default latency targets (unloaded on its own system);
  ``hardware_features=True`` ends the observation with the episode's hardware descriptor
  (hardware.calibrate.DESCRIPTOR, 8 values).
- **episode**: ``requests`` arrivals from the ``arrival`` source (one, or a list: one drawn per
  episode, as ``cv`` and ``rate_scale`` are when lists): Poisson at ``rate`` requests/s, drawn per
  episode from a list; ``"gamma"`` with coefficient of variation ``cv`` for bursts (lengths from
  ``dataset``, by default creative-writing, or the trace split's requests when a trace is given);
  or (``"trace"``, the default when a ``trace`` is given) a window of ``requests`` consecutive
  requests of a ``trace``, at a uniformly drawn start within its ``trace_split`` part (first 60%
  ``train``, next 20% ``validation``, last 20% ``test``, or ``all``), arrivals compressed by
  ``rate_scale`` (load x rate_scale); ``trace="azure-conv"`` is the shipped Azure LLM inference
  trace 2023, conversation part, or give a CSV ``arrival_s,lin,lout``), ends when every request
  has finished (truncated at ``max_steps``).

``info["score"]`` and the episode's latency summary (p50/p99 TTFT and TPOT, goodput, SLO
attainment, J/token) come with the last step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hardware.calibrate import (
    CALIBRATION_MAX_TOKENS,
    DESCRIPTOR_SIZE,
    calibrate_alpha,
    calibration_objective,
    descriptor,
)
from hardware.cost_tables import UNITS
from hardware.population import cost_models_of
from hardware.systems import CostModel
from hardware.workloads import LengthDistribution, get_dataset
from papi_env import serve_kernels as mk
from papi_env.base import merge_env_config
from papi_env.core import put_all, put_rows, scalar_info
from sim import serve_kernels as sk
from sim.online import (
    DEFAULT_MAX_BATCH,
    SLO_SCALE,
    TRACE_SPLITS,
    OnlineServer,
    Workload,
    draw_key,
    load_trace,
    sample_workload,
    split_rows,
    summarise,
    trace_rate,
    trace_window,
    unloaded_targets,
)
from sim.serve_engine import BLOCK_TOKENS, WATERMARK, KVPolicy, ServeEngine, check_queue_order, check_token_budget

SOURCES = ("poisson", "gamma", "trace")  # where an episode's arrivals come from (``arrival``)
SERVE_REWARDS = ("latency", "energy", "goodput")  # papi_env.serve_kernels' reward codes, in order
SHAPINGS = ("none", "remaining", "on-track")  # papi_env.serve_kernels' shaping codes, in order
SHAPED_REWARD = {"remaining": "latency", "on-track": "goodput"}  # the reward each potential shapes
OBS_SIZE = mk.OBS_SIZE
RATE_TAU_S = 1.0  # [D] time constant of the arrival-rate estimate, s
ACCEPT_EMA = 0.1  # [D] weight of the newest iteration in the acceptance estimate


MAX_REQUESTS = 1_000_000
"""[D] Requests per episode at most: an episode keeps about a hundred bytes of arrays per request
(arrival, lengths, progress, timings), so this bound keeps one under ~100 MB."""

MAX_ENV_REQUESTS = 20_000_000
"""[D] Requests over all environments of a core at most (num_envs x requests per episode): about
1.5 GB of request arrays."""

UNIT_NAMES = np.array(UNITS, dtype=object)


def _positive_list(name: str, value: Any, meaning: str) -> list[float]:
    """A positive number or a non-empty list of them, as a list of floats; ValueError otherwise."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0)
                         for v in values):
        raise ValueError(f"{name} must be a positive number ({meaning}) or a list of them, got {value!r}")
    return [float(v) for v in values]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class ServeCore:
    """N PapiServe environments: N servers of a sim.serve_engine.ServeEngine and their MDP state
    (papi_env.serve_kernels). Keyword arguments as PapiServeEnv's (the module docstring)."""

    def __init__(self, num_envs: int = 1, model: str = "llama-65b", system: Any = "papi",
                 dataset: Any = None, rate: float | list[float] = (4.0, 8.0, 16.0, 24.0),
                 arrival: str | list[str] | None = None, cv: float | list[float] = 1.0,
                 trace: str | Path | None = None, trace_split: str = "all", rate_scale: float | list[float] = 1.0,
                 requests: int = 256,
                 warmup: int = 32, max_batch: int = DEFAULT_MAX_BATCH, max_admit: int = 16, max_tlp: int = 4,
                 acceptance_rate: float | None = None, reward: str = "latency",
                 ttft_target_s: float | None = None, tpot_target_s: float | None = None,
                 max_steps: int = 100_000, shaping: str = "none", slo_scale: float = SLO_SCALE,
                 kv_policy: str = "reserve", block_tokens: int = BLOCK_TOKENS, watermark: float = WATERMARK,
                 token_budget: int | None = None, queue_order: str = "fcfs",
                 population: Sequence[Sequence[Any]] | None = None, hardware_features: bool = False) -> None:
        self.num_envs = _positive_int("num_envs", num_envs)
        if not isinstance(hardware_features, bool):
            raise ValueError(f"hardware_features must be true or false, got {hardware_features!r}")
        if reward not in SERVE_REWARDS:
            raise ValueError(f"reward must be one of {SERVE_REWARDS}, got {reward!r}")
        rates = list(rate) if isinstance(rate, (list, tuple)) else [rate]
        if not rates or any(isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0
                            for r in rates):
            raise ValueError(f"rate must be a positive number of requests/s or a list of them, got {rate!r}")
        if population is not None:
            if (model, system) != ("llama-65b", "papi"):
                raise ValueError("give population (a list of [system, model] pairs) or model and system, not both")
            self.cost_models = cost_models_of(population)
        else:
            self.cost_models = [CostModel(system, model)]
        self.population = population is not None
        self.rates = [float(r) for r in rates]
        self.trace = None if trace is None else load_trace(trace)
        if trace_split not in TRACE_SPLITS:
            raise ValueError(f"trace_split must be one of {list(TRACE_SPLITS)}, got {trace_split!r}")
        self.trace_split = trace_split  # sim.online.TRACE_SPLITS
        arrivals = [arrival] if isinstance(arrival, str) or arrival is None else list(arrival)
        arrivals = [("trace" if self.trace is not None else "poisson") if a is None else a for a in arrivals]
        if not arrivals or any(a not in SOURCES for a in arrivals):
            raise ValueError(f"arrival must be one of {list(SOURCES)} or a list of them, got {arrival!r}")
        if "trace" in arrivals and self.trace is None:
            raise ValueError("arrival 'trace' needs a trace= (a shipped name such as 'azure-conv' or a CSV)")
        self.arrivals = arrivals
        self.cvs = _positive_list("cv", cv, "the gamma gaps' coefficient of variation")
        self.rate_scales = _positive_list("rate_scale", rate_scale, "the trace's load times it")
        self.requests = _positive_int("requests", requests)
        if self.requests > MAX_REQUESTS:
            raise ValueError(f"requests must be at most {MAX_REQUESTS:,} per episode (an episode holds every "
                             f"request's arrays), got {self.requests:,}")
        lo = hi = 0
        if self.trace is not None:
            lo, hi = self.trace_rows = split_rows(self.trace, self.trace_split)
            window = min(self.requests, hi - lo)  # a trace episode: a window of this many requests of the split
            size = window if self.arrivals == ["trace"] else self.requests
        else:
            window = size = self.requests
        if self.num_envs * size > MAX_ENV_REQUESTS:
            raise ValueError(f"num_envs x requests per episode must be at most {MAX_ENV_REQUESTS:,} (every "
                             f"environment holds its episode's request arrays), got {self.num_envs:,} x {size:,}")
        if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or not 0 <= warmup < self.requests:
            raise ValueError(f"warmup must be an integer in [0, requests), got {warmup!r}")
        if self.trace is not None and not warmup < window:
            raise ValueError(f"warmup ({warmup}) must be below the {window} requests of a trace window")
        self.warmup = int(warmup)
        self.max_batch = _positive_int("max_batch", max_batch)
        self.max_admit = _positive_int("max_admit", max_admit)
        self.max_tlp = _positive_int("max_tlp", max_tlp)
        self.max_steps = _positive_int("max_steps", max_steps)
        if acceptance_rate is not None and not (isinstance(acceptance_rate, (int, float))
                                                and 0.0 < acceptance_rate <= 1.0):
            raise ValueError(f"acceptance_rate must be in (0, 1] or None, got {acceptance_rate!r}")
        self.acceptance_rate = acceptance_rate
        self.kv = KVPolicy(kv_policy, block_tokens, watermark)
        check_token_budget(token_budget)
        check_queue_order(queue_order)
        self.queue_order = queue_order
        self.token_budget = None if token_budget is None else int(token_budget)
        self.obs_size = OBS_SIZE + (self.token_budget is not None)  # chunked prefill: its backlog too
        self.hardware_features = hardware_features
        if hardware_features:  # the episode's system and model descriptor last
            self.descriptors = np.array([descriptor(cm) for cm in self.cost_models])
            self.obs_size += DESCRIPTOR_SIZE
        self.reward_kind = reward
        if shaping not in SHAPINGS:
            raise ValueError(f"shaping must be one of {SHAPINGS}, got {shaping!r}")
        if shaping != "none" and SHAPED_REWARD[shaping] != reward:
            raise ValueError(f"shaping {shaping!r} shapes the {SHAPED_REWARD[shaping]} reward, not {reward!r}; "
                             f"allowed with reward={reward!r}: "
                             f"{['none'] + [k for k, v in SHAPED_REWARD.items() if v == reward]}")
        self.shaping = shaping
        self.shaping_code = SHAPINGS.index(shaping)
        if isinstance(slo_scale, bool) or not isinstance(slo_scale, (int, float)) or not (
                math.isfinite(slo_scale) and slo_scale > 0):
            raise ValueError(f"slo_scale must be a positive number (targets = slo_scale x unloaded), got {slo_scale!r}")
        self.slo_scale = float(slo_scale)
        # generated arrivals' lengths: the dataset's; with a trace (and no dataset), its split's requests
        split = None if self.trace is None else trace_window(self.trace, lo, hi - lo)
        if dataset is None and split is not None:
            self.dataset = LengthDistribution(f"{trace}:{trace_split}", rows=np.stack([split.lin, split.lout], axis=1))
        else:
            self.dataset = get_dataset("creative-writing" if dataset is None else dataset)
        lengths = self.dataset if split is None else split
        # per cost model: latency targets (unloaded on the PAPI system with its model; a population's
        # members on their own system), the unloaded time per token, FC units, PAPI's alpha
        ttfts, tpots, self.token_times, masks, alphas = [], [], [], [], []
        for cm in self.cost_models:
            ttft0, tpot0 = unloaded_targets(cm if self.population else CostModel("papi", cm.model), lengths,
                                            self.slo_scale)
            ttfts.append(float(ttft_target_s) if ttft_target_s is not None else ttft0)
            tpots.append(float(tpot_target_s) if tpot_target_s is not None else tpot0)
            self.token_times.append(tpot0 / self.slo_scale)  # the unloaded TPOT: the shaping's time per token
            masks.append([u in cm.fc_units for u in UNITS])
            alphas.append(calibrate_alpha(cm, CALIBRATION_MAX_TOKENS, calibration_objective(reward))
                          if all(masks[-1]) else math.inf)
        self.ttft_targets, self.tpot_targets = np.array(ttfts), np.array(tpots)
        if not (np.all(self.ttft_targets > 0) and np.all(self.tpot_targets > 0)):
            raise ValueError("ttft_target_s and tpot_target_s must be > 0 seconds")
        self.unit_masks, self.alphas = np.array(masks, dtype=bool), np.array(alphas)
        n = self.num_envs
        self.cm = np.zeros(n, dtype=np.int64)  # each environment's episode's cost model
        self.unit_mask = np.repeat(self.unit_masks[:1], n, axis=0)
        self.engine = ServeEngine(n, self.cost_models, self.max_batch, size)
        self.mdp = np.zeros((n, mk.MDP_FIELDS))
        self.rngs: list[np.random.Generator | None] = [None] * n
        self.rate = np.zeros(n)
        self.workloads: list[Workload | None] = [None] * n
        self.pending = np.zeros(n, dtype=bool)
        self.reward_code = SERVE_REWARDS.index(reward)
        self._high = np.array([1, self.max_tlp - 1, self.max_admit])  # the largest action per dimension

    def single_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return (spaces.MultiDiscrete([2, self.max_tlp, self.max_admit + 1]),
                spaces.Box(0.0, 1.0, shape=(self.obs_size,), dtype=np.float32))

    def alpha(self, i: int = 0) -> float:
        """PAPI's offline crossover for environment i's system and this objective (latency's for
        goodput); inf without FC-PIM."""
        return float(self.alphas[self.cm[i]])

    def cost_model_of(self, i: int = 0) -> CostModel:
        """Environment i's episode's cost model (the only one without a population)."""
        return self.cost_models[self.cm[i]]

    cost_model = property(cost_model_of, doc="Environment 0's episode's cost model.")
    ttft_target_s = property(lambda self: float(self.ttft_targets[self.cm[0]]),
                             doc="Environment 0's TTFT target, s (every environment's without a population).")
    tpot_target_s = property(lambda self: float(self.tpot_targets[self.cm[0]]),
                             doc="Environment 0's TPOT target, s.")

    # ---------------------------------------------------------------------------------- reset
    def reset_envs(self, envs: Sequence[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start a new episode in each of ``envs`` from its generator; their observations and the
        reset infos (gymnasium's vector layout over all N, masked to ``envs``)."""
        info = self.start_episodes(envs)
        return self.observe()[np.asarray(envs, dtype=np.int64)], info

    def start_episodes(self, envs: Sequence[int]) -> dict[str, np.ndarray]:
        """Draw and load a new episode in each of ``envs``: a rate from the list, the requests (or
        the trace), the acceptance draws' key; return their reset infos."""
        envs = np.asarray(envs, dtype=np.int64)
        sizes = np.empty(len(envs), dtype=np.int64)
        sources = np.empty(len(envs), dtype=object)
        for k, i in enumerate(envs):
            rng = self.rngs[i]
            if rng is None:
                raise RuntimeError("environment has no generator: reset it with a seed first")
            self.rate[i] = self.rates[int(rng.integers(len(self.rates)))]
            source = self._pick(self.arrivals, rng)
            if source == "trace":
                lo, hi = self.trace_rows
                size = min(self.requests, hi - lo)
                start = lo + int(rng.integers(hi - lo - size + 1))
                scale = self._pick(self.rate_scales, rng)
                w = trace_window(self.trace, start, size, scale)
                self.rate[i] = trace_rate(w)
            else:
                cv = self._pick(self.cvs, rng) if source == "gamma" else 1.0
                w = sample_workload(self.rate[i], self.requests, self.dataset, rng, source, cv)
            sources[k] = source
            self.workloads[i] = w
            sizes[k] = w.size
            c = self.cm[i] = self._pick(range(len(self.cost_models)), rng)  # a population's member
            self.unit_mask[i] = self.unit_masks[c]
            self.engine.load(i, w.arrival_s, w.lin, w.lout, c, draw_key(rng, self.acceptance_rate),
                             self.acceptance_rate, self.warmup, self.ttft_targets[c], self.tpot_targets[c], self.kv,
                             self.token_budget, self.queue_order)
            m = self.mdp[i]
            m[:] = 0.0
            scored = w.size - self.warmup
            window = float(w.arrival_s[-1] - w.arrival_s[self.warmup]) if scored > 1 else 1.0
            m[mk.M_LAST_TLP], m[mk.M_ACCEPT_EMA] = 1.0, 1.0
            m[mk.M_SCORED], m[mk.M_SCORED_TOKENS] = scored, float(w.lout[self.warmup:].sum())
            m[mk.M_WINDOW_S] = window if window > 0 else 1.0
            m[mk.M_ALPHA], m[mk.M_TOKEN_TIME_S] = self.alphas[c], self.token_times[c]
            e = self.engine
            m[mk.M_POTENTIAL] = mk.potential(e.req, e.srv, e.running, e.lists, self.mdp, int(i), self.shaping_code)
        info: dict[str, np.ndarray] = {}
        put_rows(info, {"rate": self.rate[envs], "requests": sizes, "arrival": sources}, envs, self.num_envs)
        return info

    @staticmethod
    def _pick(values: list[Any], rng: np.random.Generator) -> Any:
        """One of ``values``, drawn from ``rng`` only when there is a choice."""
        return values[int(rng.integers(len(values)))] if len(values) > 1 else values[0]

    # ---------------------------------------------------------------------------------- step
    def observe(self) -> np.ndarray:
        """(N, obs_size) float32 observations (the module docstring)."""
        obs = np.empty((self.num_envs, self.obs_size), dtype=np.float32)
        e = self.engine
        mk.observe(obs, e.req, e.srv, e.lists, self.mdp, self.max_batch, self.max_tlp, self.max_admit,
                   self.token_budget is not None)
        if self.hardware_features:
            obs[:, self.obs_size - DESCRIPTOR_SIZE:] = self.descriptors[self.cm]
        return obs

    def ended(self) -> np.ndarray:
        """(N,) whose episode has ended (every request finished, or max_steps taken)."""
        srv = self.engine.srv
        return (srv[:, sk.S_FINISHED] == srv[:, sk.S_SIZE]) | (self.mdp[:, mk.M_STEPS] >= self.max_steps)

    def run(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step every environment whose episode has not ended with its (checked) action; the others
        stand still (reward 0). Returns (reward, unit used, clamped, fallback, terminated,
        truncated), each (N,)."""
        n, e = self.num_envs, self.engine
        pending = self.pending
        pending[:] = True  # the kernel passes over the ended episodes
        reward = np.zeros(n)
        unit_used = np.zeros(n, dtype=np.int64)
        clamped, fallback = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        e.fit_tlp(self.max_tlp)
        while mk.step(actions, self.unit_mask, pending, e.req, e.srv, e.running, e.keys, e.decode_table,
                      e.prefill_table, e.fc_table, e.plan, e.out, e.lists, e.missing, self.mdp, self.reward_code,
                      self.shaping_code, self.max_steps, RATE_TAU_S, ACCEPT_EMA, reward, unit_used, clamped, fallback,
                      terminated, truncated):
            e.fill(np.flatnonzero(pending))
        return reward, unit_used, clamped, fallback, terminated, truncated

    def step(self, actions: Any, observe: bool = True
             ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One iteration in every environment (actions checked by ``check_actions``): (observations
        or None, rewards, terminated, truncated, infos)."""
        reward, unit_used, clamped, fallback, terminated, truncated = self.run(actions)
        o, srv = self.engine.out, self.engine.srv
        info: dict[str, np.ndarray] = {}
        queue = srv[:, sk.S_WAITING].astype(np.int64)
        for key, values in (("time", o[:, sk.O_END] - o[:, sk.O_START]), ("energy", o[:, sk.O_ENERGY].copy()),
                            ("tokens", o[:, sk.O_TOKENS].astype(np.int64)), ("rlp", o[:, sk.O_RLP].astype(np.int64)),
                            ("tlp", actions[:, 1] + 1), ("placement", UNIT_NAMES[unit_used]),
                            ("gpu_share", unit_used.astype(np.float64)),
                            ("admitted", o[:, sk.O_ADMITTED].astype(np.int64)), ("admit_clamped", clamped),
                            ("unit_fallback", fallback), ("queue", queue),
                            ("kv_occupancy", srv[:, sk.S_KV_USED] / srv[:, sk.S_KV_CAPACITY]),
                            ("finished", o[:, sk.O_FINISHED].astype(np.int64)),
                            ("preempted", o[:, sk.O_PREEMPTED].astype(np.int64)), ("rate", self.rate.copy())):
            put_all(info, key, values, fresh=True)
        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            episodes = [self.episode_info(int(i)) for i in ended]
            summaries = [ep.pop("summary") for ep in episodes]
            put_rows(info, {key: [ep[key] for ep in episodes] for key in episodes[0]}, ended, self.num_envs)
            complete = [k for k, summary in enumerate(summaries) if summary]  # {} for a truncated episode
            nested: dict[str, np.ndarray] = {}
            if complete:
                put_rows(nested, {key: [summaries[k][key] for k in complete] for key in summaries[complete[0]]},
                         ended[complete], self.num_envs)
            put_rows(info, {"summary": np.zeros(len(ended))}, ended, self.num_envs)
            info["summary"] = nested  # a dict per environment nests, as SyncVectorEnv nests it
        obs = self.end_observations(terminated) if observe else None
        return obs, reward, terminated, truncated, info

    def step_one(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """The scalar environment's step (N = 1): the same kernel, its info as Python values."""
        reward, unit_used, clamped, fallback, terminated, truncated = self.run(action[None])
        o, srv = self.engine.out[0], self.engine.srv[0]
        unit = int(unit_used[0])
        info: dict[str, Any] = {
            "time": float(o[sk.O_END] - o[sk.O_START]), "energy": float(o[sk.O_ENERGY]),
            "tokens": int(o[sk.O_TOKENS]), "rlp": int(o[sk.O_RLP]), "tlp": int(action[1]) + 1,
            "placement": UNITS[unit], "gpu_share": float(unit), "admitted": int(o[sk.O_ADMITTED]),
            "admit_clamped": bool(clamped[0]), "unit_fallback": bool(fallback[0]),
            "queue": int(srv[sk.S_WAITING]),
            "kv_occupancy": float(srv[sk.S_KV_USED] / srv[sk.S_KV_CAPACITY]), "finished": int(o[sk.O_FINISHED]),
            "preempted": int(o[sk.O_PREEMPTED]), "rate": float(self.rate[0]),
        }
        term, trunc = bool(terminated[0]), bool(truncated[0])
        if term or trunc:
            info.update(self.episode_info(0))
        return self.observe()[0], float(reward[0]), term, trunc, info

    def episode_info(self, i: int) -> dict[str, Any]:
        """Environment i's episode results: score, totals, the latency summary (summarise)."""
        s, m, warm = self.server(i), self.mdp[i], self.warmup
        done = s.finish_s[warm:]
        finished = ~np.isnan(done)
        summary = summarise(s, warm, s.ttft_target_s, s.tpot_target_s) if finished.all() else {}
        latency = float((done - s.w.arrival_s[warm:])[finished].mean()) if finished.any() else math.inf
        energy = float(s.energy_j[warm:].sum())
        scored_tokens = float(s.generated[warm:].sum())
        t, e, tokens = float(m[mk.M_TIME]), float(m[mk.M_ENERGY]), int(m[mk.M_TOKENS])
        score = {"latency": 1.0 / latency if latency > 0 else 0.0,
                 "energy": scored_tokens / energy if energy > 0 else 0.0,
                 "goodput": float(m[mk.M_GOOD]) / float(m[mk.M_WINDOW_S])}[self.reward_kind]
        return {"score": score, "episode_time": t, "episode_energy": e, "episode_tokens": tokens,
                "tokens_per_s": tokens / t if t else 0.0, "joules_per_token": e / tokens if tokens else 0.0,
                "episode_misses": int(m[mk.M_MISSES]), "summary": summary, "mean_latency_s": latency}

    def end_observations(self, terminated: np.ndarray) -> np.ndarray:
        """Observations after a step (a served episode's last state is observed as it is)."""
        return self.observe()

    # ------------------------------------------------------------------------------ actions
    def check_actions(self, actions: Any, live: np.ndarray) -> np.ndarray:
        """(N, 3) int64 actions; ValueError naming what is allowed otherwise (rows not ``live``
        are not judged)."""
        a = np.asarray(actions)
        if a.shape != (self.num_envs, 3) or not (a.dtype.kind in "iu" or np.all(a == np.floor(a))):
            raise ValueError(f"actions must be {self.num_envs} rows of 3 integers [unit 0..1, tlp index "
                             f"0..{self.max_tlp - 1}, admit 0..{self.max_admit}], got shape {a.shape}")
        a = a.astype(np.int64)
        if a.min() < 0 or (a > self._high).any():  # judge the rows that step
            bad = live & ((a < 0) | (a > self._high)).any(axis=1)
            if bad.any():
                raise ValueError(f"action {a[np.flatnonzero(bad)[0]].tolist()} is outside [0..1, "
                                 f"0..{self.max_tlp - 1}, 0..{self.max_admit}]")
        return a if live.all() else np.where(live[:, None], a, 0)

    def action_masks(self) -> np.ndarray:
        """(N, 2 + max_tlp + max_admit + 1) valid choices, per action dimension (MaskablePPO's layout)."""
        n, e = self.num_envs, self.engine
        possible = np.empty(n, dtype=np.int64)
        sk.admissible_all(e.req, e.srv, e.lists, self.max_batch, possible)
        np.minimum(possible, self.max_admit, out=possible)
        admit = np.arange(self.max_admit + 1)[None] <= possible[:, None]
        idle = e.srv[:, sk.S_RUNNING] == 0  # the server admits one anyway (the next arrival if none waits)
        admit[idle, 0] = False
        admit[idle, 1] = True
        unit = np.where(self.unit_mask.any(axis=1, keepdims=True), self.unit_mask, True)
        return np.concatenate([unit, np.ones((n, self.max_tlp), dtype=bool), admit], axis=1)

    # ------------------------------------------------------------------------------ views
    def server(self, i: int) -> OnlineServer:
        """Environment i's server (sim.online.OnlineServer's view): what rules and planners read."""
        return OnlineServer.view(self.engine, i, self.workloads[i])


class PapiServeEnv(gym.Env):
    """Continuous-batching serving of one model on one system: the serving core with N = 1. See the
    module docstring."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    variant = "serve"  # what rules in agents/ dispatch on (papi_env.base.PapiBaseEnv.variant)

    def __init__(self, env_config: Mapping[str, Any] | None = None, *, render_mode: str | None = None,
                 **kwargs: Any) -> None:
        """Keyword arguments (see the module docstring and ServeCore), or one dict of them
        positionally, as RLlib passes its ``env_config``."""
        render_mode, kwargs = merge_env_config(env_config, render_mode, kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        self.render_mode = render_mode
        self.core = ServeCore(1, **kwargs)
        self.action_space, self.observation_space = self.core.single_spaces()
        self.server: OnlineServer | None = None

    # ------------------------------------------------------------------------------ settings
    cost_model = property(lambda self: self.core.cost_model)
    dataset = property(lambda self: self.core.dataset)
    rates = property(lambda self: self.core.rates)
    trace = property(lambda self: self.core.trace)
    requests = property(lambda self: self.core.requests)
    warmup = property(lambda self: self.core.warmup)
    max_batch = property(lambda self: self.core.max_batch)
    max_admit = property(lambda self: self.core.max_admit)
    max_tlp = property(lambda self: self.core.max_tlp)
    max_steps = property(lambda self: self.core.max_steps)
    acceptance_rate = property(lambda self: self.core.acceptance_rate)
    reward_kind = property(lambda self: self.core.reward_kind)
    shaping = property(lambda self: self.core.shaping)
    ttft_target_s = property(lambda self: self.core.ttft_target_s)
    tpot_target_s = property(lambda self: self.core.tpot_target_s)
    hardware_features = property(lambda self: self.core.hardware_features)
    unit_mask = property(lambda self: self.core.unit_mask[0])
    rate = property(lambda self: float(self.core.rate[0]), doc="This episode's arrival rate, requests/s.")
    steps = property(lambda self: int(self.core.mdp[0, mk.M_STEPS]), doc="Iterations run this episode.")
    accept_ema = property(lambda self: float(self.core.mdp[0, mk.M_ACCEPT_EMA]),
                          doc="The runtime's estimate of the share of verified tokens kept.")

    def alpha(self) -> float:
        """PAPI's offline crossover for this objective (latency's for goodput); inf without FC-PIM."""
        return self.core.alpha()

    # ------------------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.rngs[0] = self.np_random
        obs, info = self.core.reset_envs([0])
        self.server = self.core.server(0)
        return obs[0], scalar_info(info)

    def step(self, action: Any):
        if self.server is None or self.core.ended()[0]:
            raise RuntimeError("call reset() before step() (the episode has ended: terminated or truncated)")
        obs, reward, terminated, truncated, info = self.core.step_one(self._check_action(action))
        if self.render_mode == "ansi":
            self._last = info
        return obs, reward, terminated, truncated, info

    def episode_info(self) -> dict[str, Any]:
        """The episode's infos as its last step gives them (score, totals, latency summary), for the
        episode so far: what papi_env.wrappers.EpisodeEndInfo adds when gymnasium's TimeLimit ends
        an episode."""
        return self.core.episode_info(0)

    def _check_action(self, action: Any) -> np.ndarray:
        a = np.asarray(action)
        if a.shape != (3,) or not np.issubdtype(a.dtype, np.integer) and not np.all(a == np.floor(a)):
            raise ValueError(f"action must be 3 integers [unit 0..1, tlp index 0..{self.max_tlp - 1}, admit "
                             f"0..{self.max_admit}], got {action!r}")
        unit, tlp_index, admit = (int(x) for x in a)
        if not (0 <= unit <= 1 and 0 <= tlp_index < self.max_tlp and 0 <= admit <= self.max_admit):
            raise ValueError(f"action {list(a)} is outside [0..1, 0..{self.max_tlp - 1}, 0..{self.max_admit}]")
        return np.array([unit, tlp_index, admit], dtype=np.int64)

    def action_masks(self) -> np.ndarray:
        """Valid choices, concatenated per action dimension (MaskablePPO's layout)."""
        if self.server is None:
            unit = self.unit_mask if self.unit_mask.any() else np.ones(2, dtype=bool)
            return np.concatenate([unit, np.ones(self.max_tlp + self.max_admit + 1, dtype=bool)])
        return self.core.action_masks()[0]

    def render(self):
        if self.render_mode == "ansi" and self.server is not None:
            s = self.server
            return (f"t={s.t:.3f}s running={len(s.running)} queue={len(s.queue)} "
                    f"kv={s.kv_used / s.kv_capacity:.1%} done={s.finished_count}/{s.w.size}")
        return None
