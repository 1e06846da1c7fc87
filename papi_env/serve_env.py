"""PapiServe-v0: online serving with continuous batching, arrivals, KV capacity and latency targets.

One step is one iteration of sim.online.OnlineServer (read its docstring for the serving
loop and its assumptions). Requests arrive over time; the scheduler decides, at every iteration
boundary:

- **action** ``MultiDiscrete([2, max_tlp, max_admit + 1])``: where the FC kernels run (0 FC-PIM,
  1 GPU; on a system without FC-PIM the GPU is used whatever is asked, ``info["unit_fallback"]``),
  the speculation length TLP (index + 1), and how many queued requests to admit (FCFS; clamped to
  what fits the KV capacity and ``max_batch``, ``info["admit_clamped"]``; when nothing runs at
  least one is admitted). ``action_masks()`` gives the valid choices (MaskablePPO).
- **observation** (11 values in [0, 1]): running RLP / max_batch; log queue length; age of the
  oldest waiting request / TTFT target; KV occupancy (reserved / capacity); log recent arrival
  rate (EMA over ~1 s); last TLP / max_tlp; recent acceptance (EMA of kept / verified tokens);
  RLP x last TLP / PAPI's crossover alpha; admissible requests / max_admit; log total context;
  share of the episode's requests that have arrived.
- **rewards** (per-step terms that sum to the episode's objective; the first ``warmup`` requests
  are not scored):
  ``latency``: -(request-seconds the scored requests spend in the system during the step) / their
  number, summing to minus their mean end-to-end latency; score = 1 / mean latency (1/s).
  ``energy``: -(joules attributed to scored requests) / their output tokens, summing to minus J per
  token; score = tokens/J.
  ``goodput``: +1 / window for each scored request that finishes within both its TTFT and TPOT
  targets, window = the scored requests' arrival span; the sum is the goodput (requests/s) and
  the score.
- **episode**: ``requests`` arrivals (Poisson at ``rate`` requests/s, drawn per episode from a
  list; ``arrival="gamma"`` with ``cv`` for bursts; or a ``trace`` CSV ``arrival_s,lin,lout``),
  ends when every request has finished (truncated at ``max_steps``).

``info["score"]`` and the episode's latency summary (p50/p99 TTFT and TPOT, goodput, SLO
attainment, J/token) come with the last step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hardware.calibrate import CALIBRATION_MAX_TOKENS, calibrate_alpha, calibration_objective
from hardware.cost_tables import UNITS
from hardware.systems import CostModel
from hardware.workloads import get_dataset
from papi_env.base import merge_env_config
from sim.online import (
    DEFAULT_MAX_BATCH,
    SLO_SCALE,
    OnlineServer,
    Workload,
    load_trace,
    sample_workload,
    summarise,
    unloaded_targets,
)

SERVE_REWARDS = ("latency", "energy", "goodput")
SHAPINGS = ("none", "remaining")
OBS_SIZE = 11
RATE_TAU_S = 1.0  # [D] time constant of the arrival-rate estimate, s
ACCEPT_EMA = 0.1  # [D] weight of the newest iteration in the acceptance estimate


MAX_REQUESTS = 1_000_000
"""[D] Requests per episode at most: an episode keeps about a hundred bytes of arrays per request
(arrival, lengths, progress, timings), so this bound keeps one under ~100 MB."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class PapiServeEnv(gym.Env):
    """Continuous-batching serving of one model on one system. See the module docstring."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    variant = "serve"  # what rules in agents/ dispatch on (papi_env.base.PapiBaseEnv.variant)

    def __init__(self, env_config: Mapping[str, Any] | None = None, *, render_mode: str | None = None,
                 **kwargs: Any) -> None:
        """Keyword arguments (see the module docstring and :meth:`_configure`), or one dict of them
        positionally, as RLlib passes its ``env_config``."""
        render_mode, kwargs = merge_env_config(env_config, render_mode, kwargs)
        self._configure(render_mode, **kwargs)

    def _configure(self, render_mode: str | None = None, model: str = "llama-65b", system: Any = "papi",
                   dataset: Any = "creative-writing", rate: float | list[float] = (4.0, 8.0, 16.0, 24.0),
                   arrival: str = "poisson", cv: float = 1.0, trace: str | Path | None = None, requests: int = 256,
                   warmup: int = 32, max_batch: int = DEFAULT_MAX_BATCH, max_admit: int = 16, max_tlp: int = 4,
                   acceptance_rate: float | None = None, reward: str = "latency",
                   ttft_target_s: float | None = None, tpot_target_s: float | None = None,
                   max_steps: int = 100_000, shaping: str = "none") -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        if reward not in SERVE_REWARDS:
            raise ValueError(f"reward must be one of {SERVE_REWARDS}, got {reward!r}")
        rates = list(rate) if isinstance(rate, (list, tuple)) else [rate]
        if not rates or any(isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0
                            for r in rates):
            raise ValueError(f"rate must be a positive number of requests/s or a list of them, got {rate!r}")
        self.render_mode = render_mode
        self.cost_model = CostModel(system, model)
        self.dataset = get_dataset(dataset)
        self.rates = [float(r) for r in rates]
        self.arrival, self.cv = arrival, float(cv)
        self.trace = None if trace is None else load_trace(trace)
        self.requests = _positive_int("requests", requests)
        if self.requests > MAX_REQUESTS:
            raise ValueError(f"requests must be at most {MAX_REQUESTS:,} per episode (an episode holds every "
                             f"request's arrays), got {self.requests:,}")
        if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or not 0 <= warmup < self.requests:
            raise ValueError(f"warmup must be an integer in [0, requests), got {warmup!r}")
        if self.trace is not None and not warmup < self.trace.size:
            raise ValueError(f"warmup ({warmup}) must be below the trace's {self.trace.size} requests")
        self.warmup = int(warmup)
        self.max_batch = _positive_int("max_batch", max_batch)
        self.max_admit = _positive_int("max_admit", max_admit)
        self.max_tlp = _positive_int("max_tlp", max_tlp)
        self.max_steps = _positive_int("max_steps", max_steps)
        if acceptance_rate is not None and not (isinstance(acceptance_rate, (int, float))
                                                and 0.0 < acceptance_rate <= 1.0):
            raise ValueError(f"acceptance_rate must be in (0, 1] or None, got {acceptance_rate!r}")
        self.acceptance_rate = acceptance_rate
        self.reward_kind = reward
        if shaping not in SHAPINGS:
            raise ValueError(f"shaping must be one of {SHAPINGS}, got {shaping!r}")
        self.shaping = shaping
        ttft0, tpot0 = unloaded_targets(CostModel("papi", self.cost_model.model), self.dataset, SLO_SCALE)
        self.ttft_target_s = float(ttft_target_s) if ttft_target_s is not None else ttft0
        self.tpot_target_s = float(tpot_target_s) if tpot_target_s is not None else tpot0
        if not (self.ttft_target_s > 0 and self.tpot_target_s > 0):
            raise ValueError("ttft_target_s and tpot_target_s must be > 0 seconds")
        self.token_time_s = self.tpot_target_s / SLO_SCALE  # the unloaded TPOT: the shaping's time per token
        self.unit_mask = np.array([u in self.cost_model.fc_units for u in UNITS])
        self._alpha = (calibrate_alpha(self.cost_model, CALIBRATION_MAX_TOKENS, calibration_objective(reward))
                       if self.unit_mask.all() else math.inf)
        self.action_space = spaces.MultiDiscrete([2, self.max_tlp, self.max_admit + 1])
        self.observation_space = spaces.Box(0.0, 1.0, shape=(OBS_SIZE,), dtype=np.float32)
        self.server: OnlineServer | None = None

    # ------------------------------------------------------------------------------ episode
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        self.rate = self.rates[int(rng.integers(len(self.rates)))]
        if self.trace is not None:
            workload = self.trace
        else:
            workload = sample_workload(self.rate, self.requests, self.dataset, rng, self.arrival, self.cv)
        self._start(workload, rng)
        return self._obs(), {"rate": self.rate, "requests": workload.size}

    def _start(self, workload: Workload, rng: np.random.Generator) -> None:
        self.server = OnlineServer(self.cost_model, workload, self.max_batch, self.acceptance_rate, rng,
                                   scored_from=self.warmup)
        w = workload
        self.scored = w.size - self.warmup
        self.scored_tokens = float(w.lout[self.warmup:].sum())
        self.window_s = float(w.arrival_s[-1] - w.arrival_s[self.warmup]) if self.scored > 1 else 1.0
        self.window_s = self.window_s if self.window_s > 0 else 1.0
        self.steps = 0
        self.last_tlp = 1
        self.rate_ema = 0.0
        self.accept_ema = 1.0
        self.totals = {"time": 0.0, "energy": 0.0, "tokens": 0, "misses": 0, "good": 0}
        self._potential = self._phi()

    def _phi(self) -> float:
        """The shaping potential (latency, ``shaping='remaining'``): minus the request-seconds the
        scored requests in the system would still spend if each took the unloaded TPOT per remaining
        token, over their number. 0 when none is in the system (so the shaping terms sum to 0 over
        an episode)."""
        if self.shaping == "none" or self.reward_kind != "latency":
            return 0.0
        return -self.server.scored_remaining_tokens * self.token_time_s / self.scored

    def _check_action(self, action: Any) -> tuple[int, int, int]:
        a = np.asarray(action)
        if a.shape != (3,) or not np.issubdtype(a.dtype, np.integer) and not np.all(a == np.floor(a)):
            raise ValueError(f"action must be 3 integers [unit 0..1, tlp index 0..{self.max_tlp - 1}, admit "
                             f"0..{self.max_admit}], got {action!r}")
        unit, tlp_index, admit = (int(x) for x in a)
        if not (0 <= unit <= 1 and 0 <= tlp_index < self.max_tlp and 0 <= admit <= self.max_admit):
            raise ValueError(f"action {list(a)} is outside [0..1, 0..{self.max_tlp - 1}, 0..{self.max_admit}]")
        return unit, tlp_index + 1, admit

    def step(self, action: Any):
        if self.server is None or self.server.done or self.steps >= self.max_steps:
            raise RuntimeError("call reset() before step() (the episode has ended: terminated or truncated)")
        unit, tlp, admit = self._check_action(action)
        s, w = self.server, self.server.w
        fallback = not self.unit_mask[unit]
        unit_name = UNITS[1 - unit] if fallback else UNITS[unit]
        possible = s.admissible()
        clamped = admit > possible
        warm, n0 = self.warmup, s.arrived
        rec = s.iteration(unit_name, tlp, admit)
        dt = rec.end_s - rec.start_s
        arrivals = s.arrived - n0
        good = 0
        if rec.finished.size:
            f = rec.finished
            ttft = s.first_token_s[f] - w.arrival_s[f]
            tpot = np.where(w.lout[f] > 1, (s.finish_s[f] - s.first_token_s[f]) / np.maximum(w.lout[f] - 1, 1), 0.0)
            ok = (ttft <= self.ttft_target_s) & (tpot <= self.tpot_target_s)
            good = int((ok & (f >= warm)).sum())
            self.totals["misses"] += int((~ok).sum())
        self.totals["good"] += good
        if self.reward_kind == "latency":
            reward = -rec.scored_area / self.scored
            if self.shaping != "none":  # potential-based: credits tokens when they are made, same episode sum
                potential = self._phi()
                reward += potential - self._potential
                self._potential = potential
        elif self.reward_kind == "energy":
            reward = -rec.scored_energy_j / self.scored_tokens
        else:
            reward = good / self.window_s
        # runtime estimates
        self.steps += 1
        self.last_tlp = tlp
        if dt > 0:
            k = 1.0 - math.exp(-dt / RATE_TAU_S)
            self.rate_ema += k * (arrivals / dt - self.rate_ema)
        if rec.rlp and tlp > 1:
            self.accept_ema += ACCEPT_EMA * (rec.accepted_share - self.accept_ema)
        t = self.totals
        t["time"] += dt
        t["energy"] += rec.energy_j
        t["tokens"] += rec.tokens
        terminated = s.done
        truncated = not terminated and self.steps >= self.max_steps
        info: dict[str, Any] = {
            "time": dt, "energy": rec.energy_j, "tokens": rec.tokens, "rlp": rec.rlp, "tlp": tlp,
            "placement": unit_name, "gpu_share": float(unit_name == "gpu"), "admitted": int(rec.admitted.size),
            "admit_clamped": bool(clamped), "unit_fallback": bool(fallback), "queue": len(s.queue),
            "kv_occupancy": s.kv_used / s.kv_capacity, "finished": int(rec.finished.size), "rate": self.rate,
        }
        if terminated or truncated:
            info.update(self._episode_info())
        if self.render_mode == "ansi":
            self._last = info
        return self._obs(), float(reward), terminated, truncated, info

    def _episode_info(self) -> dict[str, Any]:
        s, t = self.server, self.totals
        done = s.finish_s[self.warmup:]
        finished = ~np.isnan(done)
        summary = summarise(s, self.warmup, self.ttft_target_s, self.tpot_target_s) if finished.all() else {}
        latency = float((done - s.w.arrival_s[self.warmup:])[finished].mean()) if finished.any() else math.inf
        energy = float(s.energy_j[self.warmup:].sum())
        scored_tokens = float(s.generated[self.warmup:].sum())
        score = {"latency": 1.0 / latency if latency > 0 else 0.0,
                 "energy": scored_tokens / energy if energy > 0 else 0.0,
                 "goodput": t["good"] / self.window_s}[self.reward_kind]
        return {"score": score, "episode_time": t["time"], "episode_energy": t["energy"],
                "episode_tokens": t["tokens"], "tokens_per_s": t["tokens"] / t["time"] if t["time"] else 0.0,
                "joules_per_token": t["energy"] / t["tokens"] if t["tokens"] else 0.0,
                "episode_misses": t["misses"], "summary": summary, "mean_latency_s": latency}

    # ------------------------------------------------------------------------------ observation
    def _obs(self) -> np.ndarray:
        s = self.server
        rlp = len(s.running)
        possible = s.admissible()
        obs = np.array([
            rlp / self.max_batch,
            math.log1p(len(s.queue)) / math.log1p(4 * self.max_batch),
            min(s.oldest_wait_s() / self.ttft_target_s, 10.0) / 10.0,
            s.kv_used / s.kv_capacity,
            math.log1p(self.rate_ema) / math.log1p(1000.0),
            self.last_tlp / self.max_tlp,
            self.accept_ema,
            min(rlp * self.last_tlp / self._alpha, 4.0) / 4.0 if self._alpha > 0 else 1.0,
            min(possible, self.max_admit) / self.max_admit,
            math.log1p(s.sum_context()) / math.log1p(self.max_batch * 65536.0),
            s.arrived / s.w.size,
        ], dtype=np.float32)
        return np.clip(obs, 0.0, 1.0)

    def action_masks(self) -> np.ndarray:
        """Valid choices, concatenated per action dimension (MaskablePPO's layout)."""
        s = self.server
        possible = min(s.admissible(), self.max_admit) if s is not None else self.max_admit
        admit = np.arange(self.max_admit + 1) <= possible
        if s is not None and not len(s.running):  # the server admits one anyway (the next arrival if none waits)
            admit[0], admit[1] = False, True
        unit = self.unit_mask if self.unit_mask.any() else np.ones(2, dtype=bool)
        return np.concatenate([unit, np.ones(self.max_tlp, dtype=bool), admit])

    # ------------------------------------------------------------------------------ for agents/
    def alpha(self) -> float:
        """PAPI's offline crossover for this objective (latency's for goodput); inf without FC-PIM."""
        return self._alpha

    def render(self):
        if self.render_mode == "ansi" and self.server is not None:
            s = self.server
            return (f"t={s.t:.3f}s running={len(s.running)} queue={len(s.queue)} "
                    f"kv={s.kv_used / s.kv_capacity:.1%} done={s.finished_count}/{s.w.size}")
        return None
