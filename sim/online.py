"""Online serving: continuous batching with request arrivals, KV-cache capacity and latency.

Requests arrive over time (Poisson, bursty gamma, or a trace). At every iteration boundary the
scheduler decides where the FC kernels run, the speculation length (TLP), and how many queued
requests to admit, first come first served. One iteration is:

1. the prefill of the newly admitted requests on the GPUs, as PAPI does (CostModel.prefill, all
   new prompts as one batch); it produces each new request's first token (its TTFT ends here);
2. one decoding iteration over the requests that were already running (CostModel.iteration with
   RLP = their number and the chosen TLP and FC unit); each produces 1 + its accepted drafts
   tokens, at most its remaining ones;
3. requests whose last token came out leave and free their KV cache; requests that arrived
   during the iteration join the queue at its end.

With chunked prefill (``token_budget``, Sarathi-Serve) step 1 is spread over iterations: an
admitted request computes its prompt in chunks, each iteration at most ``token_budget`` tokens
(the decoded requests' RLP x TLP first, prompt chunks in admission order in the rest, fused with
the decoding step); its first token comes at the end of the iteration that completes its prompt.
docs/MODEL.md has the pricing of a chunk and of the fused iteration.

Assumptions (docs/MODEL.md has the reasons):

- **KV cache** (``KVPolicy``), two policies. *Reserve* (default): a request is admitted only when
  its KV cache at its full length (prompt + output, as the static batches reserve) fits beside
  the reservations of the running requests; it holds that reservation until it finishes, so
  nothing is ever preempted. Reserving the maximum uses the true output length, as an oracle of
  lengths would; a server reserving a fixed max_tokens would admit fewer. *Paged* (vLLM): KV is
  held in blocks of ``block_tokens`` tokens as each context grows; admission needs the blocks of
  the prompt plus one token and keeps a ``watermark`` share of the cache free; before each
  iteration the running requests' contexts must be able to grow by TLP tokens, and when they
  cannot, the most recently admitted are preempted by recompute (their blocks freed; back at the
  head of the queue, readmitted first; their prefill then covers prompt + generated tokens, and
  it yields their next token; their first-token time is kept). Nothing is admitted in an
  iteration that preempts (as vLLM).
- Admission is FCFS (preempted requests first) and stops at the first request that does not fit
  (head-of-line blocking, as vLLM's default scheduler); at most ``max_batch`` requests run at
  once (vLLM's max_num_seqs). ``queue_order`` changes the queue's order: the shortest prompt
  first, or the requests still within their TTFT target first (FCFS among each group).
- The server never idles with work waiting: when nothing runs, at least one queued request is
  admitted. When nothing runs and nothing waits, the clock jumps to the next arrival; idle time
  costs no energy (the cost model counts dynamic energy only).
- Speculative decoding as in the static envs: TLP tokens per request per iteration are verified
  (the paper's cost); with ``acceptance_rate`` p a request keeps 1 + its leading accepted drafts
  (P(at least j) = p^j, capped at TLP - 1); without it every token is accepted (the paper).
- Energy is attributed to requests: a prefill by prompt tokens, a decoding iteration by the
  tokens each request produced in it.

Per request: TTFT (first token - arrival), TPOT ((finish - first token) / (output - 1)), end-to-end
latency (finish - arrival), energy. All times in seconds, energies in joules, sizes in bytes.
"""

from __future__ import annotations

import csv
import functools
import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hardware.cost_tables import UNITS
from hardware.systems import CostModel
from hardware.workloads import MAX_TOKENS, LengthDistribution, WorkloadError, get_dataset
from sim import serve_kernels as sk
from sim.serve_engine import KVPolicy, ServeEngine

ARRIVALS = ("poisson", "gamma")
DEFAULT_MAX_BATCH = 256  # [D] vLLM's default max_num_seqs
STEADY_GROWTH = 0.05  # [D] a load point is steady when the queueing delay grows by less than 5% of elapsed time
SLO_SCALE = 5.0  # [D] default latency targets: this many times the unloaded TTFT / TPOT on PAPI (as DistServe)


# ------------------------------------------------------------------------------ workloads
@dataclass(frozen=True)
class Workload:
    """One episode's requests, in arrival order: seconds and token counts (int64, >= 1)."""

    arrival_s: np.ndarray
    lin: np.ndarray
    lout: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if n < 1 or len(self.lin) != n or len(self.lout) != n:
            raise WorkloadError(f"a workload needs >= 1 request and one lin and lout per arrival, got "
                                f"{n}, {len(self.lin)}, {len(self.lout)}")
        if not np.all(np.isfinite(self.arrival_s)) or np.any(self.arrival_s < 0) or np.any(np.diff(self.arrival_s) < 0):
            raise WorkloadError("arrival times must be finite, >= 0 s and in non-decreasing order")
        if np.any(self.lin < 1) or np.any(self.lout < 1):
            raise WorkloadError("request lengths must be >= 1 token")

    @property
    def size(self) -> int:
        return len(self.arrival_s)


def inter_arrival_times(rate: float, n: int, rng: np.random.Generator, arrival: str = "poisson",
                        cv: float = 1.0) -> np.ndarray:
    """``n`` gaps between arrivals, s: exponential (Poisson process) at ``rate`` requests/s, or
    gamma with the same mean and coefficient of variation ``cv`` (cv > 1: bursty; cv = 1: Poisson)."""
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise WorkloadError(f"arrival rate must be a positive number of requests/s, got {rate!r}")
    if arrival not in ARRIVALS:
        raise WorkloadError(f"arrival must be one of {ARRIVALS} (or give a trace CSV), got {arrival!r}")
    if arrival == "poisson":
        return rng.exponential(1.0 / rate, size=n)
    if not (isinstance(cv, (int, float)) and math.isfinite(cv) and cv > 0):
        raise WorkloadError(f"cv (coefficient of variation of the gaps) must be > 0, got {cv!r}")
    shape = 1.0 / cv**2
    return rng.gamma(shape, 1.0 / (rate * shape), size=n)


def sample_workload(rate: float, n: int, dataset: str | Path | LengthDistribution, rng: np.random.Generator,
                    arrival: str = "poisson", cv: float = 1.0) -> Workload:
    """``n`` requests arriving at ``rate`` requests/s from t = 0 (the first after one gap), with
    lengths drawn from ``dataset``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise WorkloadError(f"number of requests must be a positive integer, got {n!r}")
    gaps = inter_arrival_times(rate, int(n), rng, arrival, cv)
    lin, lout = get_dataset(dataset).sample(int(n), rng)
    return Workload(np.cumsum(gaps), lin, lout)


TRACE_DIR = Path(__file__).resolve().parent / "traces"
TRACES = {"azure-conv": TRACE_DIR / "AzureLLMInferenceTrace_conv.csv.gz"}
"""Shipped traces by name (sim/traces/NOTICE.md: source, license, attribution)."""
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")  # the Azure LLM inference traces' header


def load_trace(path: str | Path) -> Workload:
    """A trace: a shipped one by name (TRACES) or a CSV file (``.csv`` or ``.csv.gz``), one request
    per row in arrival order, with the header ``arrival_s,lin,lout`` (seconds, prompt and output
    tokens) or the Azure LLM inference traces' ``TIMESTAMP,ContextTokens,GeneratedTokens``
    (timestamps; arrivals become seconds since the first). Lengths must be 1..MAX_TOKENS; errors
    name the file and line."""
    if str(path) in TRACES:
        path = TRACES[str(path)]
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"trace file not found: {path} (shipped traces: {sorted(TRACES)})")
    return _read_trace(path.resolve(), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_trace(path: Path, mtime_ns: int) -> Workload:
    """A trace file's Workload (read-only arrays), read once per process and file version."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[tuple[float, int, int]] = []
    with opener(path, "rt", newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: accept a byte-order mark
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        if {"arrival_s", "lin", "lout"} <= fields:
            columns, azure = ("arrival_s", "lin", "lout"), False
        elif set(AZURE_COLUMNS) <= fields:
            columns, azure = AZURE_COLUMNS, True
        else:
            raise WorkloadError(f"{path}: the header must hold ['arrival_s', 'lin', 'lout'] or "
                                f"{list(AZURE_COLUMNS)}, got {reader.fieldnames}")
        first = None
        for line, row in enumerate(reader, start=2):
            when, a, b = (row[c] for c in columns)
            try:
                if azure:
                    stamp = np.datetime64(when.strip().replace(" ", "T"), "ns")
                    first = stamp if first is None else first
                    t = float((stamp - first) / np.timedelta64(1, "ns")) / 1e9
                else:
                    t = float(when)
                a, b = int(a), int(b)
            except (TypeError, ValueError):
                raise WorkloadError(f"{path}:{line}: need a {'timestamp' if azure else 'number of seconds'} and two "
                                    f"integers, got {when!r}, {a!r}, {b!r}") from None
            if not math.isfinite(t) or t < 0 or (rows and t < rows[-1][0]):
                raise WorkloadError(f"{path}:{line}: arrivals must be finite, >= 0 and not before the row above, "
                                    f"got {when}")
            if not (1 <= a <= MAX_TOKENS and 1 <= b <= MAX_TOKENS):
                raise WorkloadError(f"{path}:{line}: lengths must be 1..{MAX_TOKENS:,} tokens, got {a}, {b}")
            rows.append((t, a, b))
    if not rows:
        raise WorkloadError(f"{path}: no requests in the file")
    data = np.asarray(rows, dtype=np.float64)
    arrays = data[:, 0].copy(), data[:, 1].astype(np.int64), data[:, 2].astype(np.int64)
    for array in arrays:
        array.flags.writeable = False  # shared by every environment of the process
    return Workload(*arrays)


TRACE_SPLITS = {"all": (0.0, 1.0), "train": (0.0, 0.6), "validation": (0.6, 0.8), "test": (0.8, 1.0)}
"""[D] Parts of a trace by position (fractions of its requests): train on the first 60%, choose
settings on the next 20%, test on the last 20%, so that no window of one part overlaps another's."""


def split_rows(trace: Workload, split: str) -> tuple[int, int]:
    """The request indices [lo, hi) of a trace's ``split`` (TRACE_SPLITS)."""
    if split not in TRACE_SPLITS:
        raise WorkloadError(f"trace_split must be one of {list(TRACE_SPLITS)}, got {split!r}")
    lo, hi = (round(f * trace.size) for f in TRACE_SPLITS[split])
    return lo, hi


def trace_rate(w: Workload) -> float:
    """A workload's mean arrival rate, requests/s (requests after the first over their span; 0 for
    one request or one instant)."""
    span = float(w.arrival_s[-1] - w.arrival_s[0])
    return (w.size - 1) / span if span > 0 else 0.0


def trace_window(trace: Workload, start: int, size: int, rate_scale: float = 1.0) -> Workload:
    """``size`` consecutive requests of ``trace`` from index ``start``, arrivals shifted to start at
    0 s and divided by ``rate_scale`` (the load times ``rate_scale``: the field's way of sweeping
    load on a trace)."""
    if not (isinstance(rate_scale, (int, float)) and math.isfinite(rate_scale) and rate_scale > 0):
        raise WorkloadError(f"rate_scale must be a positive number, got {rate_scale!r}")
    stop = start + size
    if not (0 <= start and 1 <= size and stop <= trace.size):
        raise WorkloadError(f"a window of {size} requests from {start} does not fit a trace of {trace.size}")
    arrivals = (trace.arrival_s[start:stop] - trace.arrival_s[start]) / rate_scale
    return Workload(arrivals, trace.lin[start:stop], trace.lout[start:stop])


def unloaded_targets(cost_model: CostModel, dataset: str | Path | LengthDistribution | Workload,
                     scale: float = SLO_SCALE) -> tuple[float, float]:
    """Default (TTFT, TPOT) targets, s: ``scale`` times one median request's own TTFT (its prefill)
    and TPOT (a decoding iteration alone at its median context, the FC on its fastest unit). The
    median request of a dataset (4,001 draws) or of a trace's requests."""
    if isinstance(dataset, Workload):
        lin, lout = dataset.lin, dataset.lout
    else:
        lin, lout = get_dataset(dataset).sample(4001, np.random.default_rng(0))
    a, b = int(np.median(lin)), int(np.median(lout))
    ttft = cost_model.prefill([a]).time
    tpot = min(cost_model.iteration(1, 1, a + b / 2, u).time for u in cost_model.fc_units)
    return scale * ttft, scale * tpot


# ------------------------------------------------------------------------------ the server
@dataclass
class IterationRecord:
    """What one iteration did. Times in s, energies in J."""

    start_s: float
    end_s: float
    prefill_s: float
    decode_s: float
    energy_j: float
    rlp: int  # requests decoded (not counting the ones admitted this iteration)
    tlp: int
    fc_unit: str
    admitted: np.ndarray  # indices of the requests admitted (prefilled) this iteration
    finished: np.ndarray  # indices of the requests that finished this iteration
    tokens: int  # tokens produced (first tokens of the admitted + decoded tokens)
    accepted_share: float  # tokens kept / tokens verified by the decoding iteration (1 without speculation)
    in_system_area: float  # integral over the iteration of the number of requests in the system, request-s
    scored_area: float  # the same for the scored requests (index >= the server's scored_from)
    scored_energy_j: float  # joules of the iteration attributed to scored requests
    prefill_tokens: int  # prompt tokens computed (whole prompts, or chunks)


class PlannedIteration(NamedTuple):
    """What an iteration would do (OnlineServer.plan). Times in s, energies in J."""

    rlp: int  # requests it decodes
    admitted: int  # requests it admits
    prefill_tokens: int  # prompt tokens it computes (whole prompts, or chunks)
    prefill_s: float
    prefill_j: float
    decode_s: float  # the decoding step (less the FC weight read it shares with a prompt chunk)
    decode_j: float


class OnlineServer:
    """One serving run over a Workload on one CostModel; step it with :meth:`iteration`.

    A face of server ``i`` of a sim.serve_engine.ServeEngine (the compiled iteration of
    sim.serve_kernels): built from a cost model and a workload it owns an engine of one server;
    :meth:`view` shows server i of an engine someone else steps (an environment's).

    Requests from index ``scored_from`` on are *scored* (those before are a warm-up): the server
    keeps their time in the system, energy and remaining tokens as running totals, so an
    environment's per-step rewards cost O(1). Speculative drafts are accepted with probability
    ``acceptance_rate`` from draws keyed by one number from ``rng``."""

    def __init__(self, cost_model: CostModel, workload: Workload, max_batch: int = DEFAULT_MAX_BATCH,
                 acceptance_rate: float | None = None, rng: np.random.Generator | None = None,
                 scored_from: int = 0, kv: KVPolicy | None = None, token_budget: int | None = None,
                 queue_order: str = "fcfs") -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if acceptance_rate is not None and not 0.0 < acceptance_rate <= 1.0:
            raise ValueError(f"acceptance_rate must be in (0, 1] or None, got {acceptance_rate!r}")
        rng = rng if rng is not None else np.random.default_rng(0)
        engine = ServeEngine(1, [cost_model], int(max_batch), workload.size)
        engine.load(0, workload.arrival_s, workload.lin, workload.lout, 0, draw_key(rng, acceptance_rate),
                    acceptance_rate, int(scored_from), kv=kv, token_budget=token_budget, queue_order=queue_order)
        self._bind(engine, 0, workload)

    @classmethod
    def view(cls, engine: ServeEngine, i: int, workload: Workload) -> OnlineServer:
        """Server ``i`` of ``engine`` (loaded with ``workload``)."""
        server = cls.__new__(cls)
        server._bind(engine, i, workload)
        return server

    def _bind(self, engine: ServeEngine, i: int, workload: Workload) -> None:
        self.engine, self.i, self.w = engine, i, workload
        self.cm = engine.cost_models[int(engine.srv[i, sk.S_MODEL])]
        self.max_batch = engine.max_batch
        p = engine.srv[i, sk.S_ACCEPT_P]
        self.acceptance_rate = None if p >= 1.0 else float(p)
        self.kv_capacity = float(engine.srv[i, sk.S_KV_CAPACITY])
        self.scored_from = int(engine.srv[i, sk.S_SCORED_FROM])
        budget = int(engine.srv[i, sk.S_TOKEN_BUDGET])
        self.token_budget = budget or None  # chunked prefill's tokens per iteration (None: whole prompts)

    # -------------------------------------------------------------------------- state
    def _state(self, name: int) -> float:
        return float(self.engine.srv[self.i, name])

    def _count(self, name: int) -> int:
        return int(self.engine.srv[self.i, name])

    t = property(lambda self: self._state(sk.S_TIME), doc="The clock, s.")
    ttft_target_s = property(lambda self: self._state(sk.S_TTFT_TARGET), doc="The TTFT target, s (inf: none).")
    tpot_target_s = property(lambda self: self._state(sk.S_TPOT_TARGET), doc="The TPOT target, s (inf: none).")
    arrived = property(lambda self: self._count(sk.S_ARRIVED), doc="Requests 0..arrived-1 have arrived.")
    kv_used = property(lambda self: self._state(sk.S_KV_USED), doc="KV bytes reserved by the running requests.")
    finished_count = property(lambda self: self._count(sk.S_FINISHED))
    iterations = property(lambda self: self._count(sk.S_ITERATIONS))
    scored_finished = property(lambda self: self._count(sk.S_SCORED_FINISHED))
    kv_bytes = property(lambda self: self.engine.field(self.i, sk.R_KV_BYTES), doc="Per request, B.")
    admitted_s = property(lambda self: self.engine.field(self.i, sk.R_ADMITTED_S))
    first_token_s = property(lambda self: self.engine.field(self.i, sk.R_FIRST_TOKEN_S))
    finish_s = property(lambda self: self.engine.field(self.i, sk.R_FINISH_S))
    energy_j = property(lambda self: self.engine.field(self.i, sk.R_ENERGY_J))

    @property
    def generated(self) -> np.ndarray:
        """Tokens each request has produced (int64, a copy)."""
        return self.engine.field(self.i, sk.R_GENERATED).astype(np.int64)

    @property
    def running(self) -> np.ndarray:
        """Indices of the running requests, in admission order (a copy): the decoding ones, then
        (chunked prefill) those whose prompts are not complete yet."""
        return self.engine.running[self.i, :self._count(sk.S_RUNNING)].copy()

    prefilling = property(lambda self: self._count(sk.S_PREFILLING),
                          doc="Running requests whose prompts are not complete yet (chunked prefill).")
    prefill_backlog = property(lambda self: self._count(sk.S_PREFILL_BACKLOG),
                               doc="Prompt tokens the running requests have still to compute (chunked prefill).")

    @property
    def queue(self) -> list[int]:
        """Indices of the waiting requests: the preempted ones (paged KV) in their readmission order,
        then the arrived ones not admitted yet, by arrival."""
        n_pre = self._count(sk.S_PREEMPTED)
        nxt = self._count(sk.S_NEXT)
        queued = nxt + np.flatnonzero(np.isnan(self.admitted_s[nxt:self.arrived]))
        return [int(j) for j in self.engine.lists[self.i, sk.L_PREEMPTED, :n_pre][::-1]] + queued.tolist()

    preemptions = property(lambda self: self._count(sk.S_PREEMPTIONS), doc="Requests preempted so far (paged KV).")
    recomputed_tokens = property(lambda self: self._count(sk.S_RECOMPUTED),
                                 doc="Generated tokens recomputed by readmitted preempted requests.")

    @property
    def done(self) -> bool:
        return self.finished_count == self.w.size

    @property
    def in_system(self) -> int:
        """Requests arrived and not finished (queued or running)."""
        return self.arrived - self.finished_count

    def oldest_wait_s(self) -> float:
        """Seconds the longest-waiting request has waited since its arrival (0 when none waits)."""
        queue = self.queue
        return self.t - float(self.w.arrival_s[min(queue)]) if queue else 0.0

    @property
    def scored_in_system(self) -> int:
        """Scored requests arrived and not finished."""
        return max(0, self.arrived - self.scored_from) - self.scored_finished

    @property
    def scored_remaining_tokens(self) -> int:
        """Output tokens the scored requests in the system have still to produce."""
        return int(self._state(sk.S_SCORED_DUE) - self._state(sk.S_SCORED_MADE))

    def admissible(self) -> int:
        """How many queued requests, FCFS, fit the KV capacity and the batch limit now."""
        return self.engine.admissible(self.i)

    def sum_context(self) -> float:
        """Total context (prompt + generated tokens) of the running requests, tokens."""
        return self._state(sk.S_SUM_CONTEXT)

    def plan(self, fc_unit: str, tlp: int, admit: int) -> PlannedIteration:
        """What the next iteration would do with this decision, priced as it would run (nothing
        changes): the requests it decodes, the prompt tokens it computes, and its costs."""
        p = self.engine.plan_next(self.i, UNITS.index(fc_unit), int(tlp), int(admit))
        return PlannedIteration(int(p[sk.P_DECODED]), int(p[sk.P_ADMIT]), int(p[sk.P_PREFILL_TOKENS]),
                                float(p[sk.P_PREFILL_S]), float(p[sk.P_PREFILL_J]), float(p[sk.P_DECODE_S]),
                                float(p[sk.P_DECODE_J]))

    def plan_all(self, fc_units: list[str], max_tlp: int, admit: int) -> PlannedIteration:
        """:meth:`plan` of every unit in ``fc_units`` and TLP 1..``max_tlp`` in one call (what a
        planner that compares them needs): the same fields, each an array indexed [unit, TLP - 1]."""
        g = self.engine.plan_grid(self.i, [UNITS.index(u) for u in fc_units], int(max_tlp), int(admit))
        return PlannedIteration(g[..., sk.P_DECODED].astype(np.int64), g[..., sk.P_ADMIT].astype(np.int64),
                                g[..., sk.P_PREFILL_TOKENS].astype(np.int64), g[..., sk.P_PREFILL_S],
                                g[..., sk.P_PREFILL_J], g[..., sk.P_DECODE_S], g[..., sk.P_DECODE_J])

    # -------------------------------------------------------------------------- one iteration
    def iteration(self, fc_unit: str, tlp: int, admit: int) -> IterationRecord:
        """Admit up to ``admit`` queued requests (FCFS, as many as fit; at least one when nothing
        runs), prefill them, decode the running ones once; return what happened."""
        if self.done:
            raise RuntimeError("every request has finished; start a new server")
        if fc_unit not in self.cm.fc_units:
            raise ValueError(f"system '{self.cm.system.name}' runs FC on {self.cm.fc_units}, not {fc_unit!r}")
        if isinstance(tlp, bool) or not isinstance(tlp, (int, np.integer)) or tlp < 1:
            raise ValueError(f"tlp must be a positive integer, got {tlp!r}")
        if isinstance(admit, bool) or not isinstance(admit, (int, np.integer)) or admit < 0:
            raise ValueError(f"admit must be an integer >= 0, got {admit!r}")
        e, i, n = self.engine, self.i, self.engine.num_envs
        units, tlps, admits = np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        units[i], tlps[i], admits[i] = UNITS.index(fc_unit), int(tlp), min(int(admit), self.w.size)
        pending = np.zeros(n, dtype=bool)
        pending[i] = True
        e.iterate(units, tlps, admits, pending)
        return self.record(fc_unit, int(tlp))

    def record(self, fc_unit: str, tlp: int) -> IterationRecord:
        """The IterationRecord of the iteration just run."""
        o, lists = self.engine.out[self.i], self.engine.lists[self.i]
        return IterationRecord(
            float(o[sk.O_START]), float(o[sk.O_END]), float(o[sk.O_PREFILL_S]), float(o[sk.O_DECODE_S]),
            float(o[sk.O_ENERGY]), int(o[sk.O_RLP]), tlp, fc_unit, lists[sk.L_ADMITTED, :int(o[sk.O_ADMITTED])].copy(),
            lists[sk.L_FINISHED, :int(o[sk.O_FINISHED])].copy(), int(o[sk.O_TOKENS]),
            float(o[sk.O_ACCEPTED_SHARE]), float(o[sk.O_AREA]), float(o[sk.O_SCORED_AREA]),
            float(o[sk.O_SCORED_ENERGY]), int(o[sk.O_PREFILL_TOKENS]))

    # -------------------------------------------------------------------------- results
    def request_metrics(self) -> dict[str, np.ndarray]:
        """Per request: ttft_s, tpot_s (NaN for one-token outputs), latency_s, energy_j, tokens."""
        return request_metrics(self.w, self.first_token_s, self.finish_s, self.admitted_s, self.energy_j,
                               self.generated)


def draw_key(rng: np.random.Generator, acceptance_rate: float | None) -> int:
    """A server's key for its acceptance draws (sim.random_streams), from ``rng``; 0, drawing
    nothing, when every draft is accepted (so ``rng``'s later draws do not depend on it)."""
    if acceptance_rate is None or acceptance_rate >= 1.0:
        return 0
    return int(rng.integers(0, 2**63))


def request_metrics(w: Workload, first_token_s: np.ndarray, finish_s: np.ndarray, admitted_s: np.ndarray,
                    energy_j: np.ndarray, generated: np.ndarray) -> dict[str, np.ndarray]:
    """Per request: ttft_s, tpot_s (NaN for one-token outputs), latency_s, queue_s, energy_j, tokens."""
    tpot = np.where(w.lout > 1, (finish_s - first_token_s) / np.maximum(w.lout - 1, 1), np.nan)
    return {"ttft_s": first_token_s - w.arrival_s, "tpot_s": tpot, "latency_s": finish_s - w.arrival_s,
            "queue_s": admitted_s - w.arrival_s, "energy_j": energy_j.copy(), "tokens": np.asarray(generated).copy()}


def serve(server: OnlineServer, decide, max_iterations: int = 10_000_000) -> list[IterationRecord]:
    """Run ``decide(server) -> (fc_unit, tlp, admit)`` every iteration until every request is done
    (agents.rules.fcfs_rule makes one)."""
    records = []
    while not server.done:
        if len(records) >= max_iterations:
            raise RuntimeError(f"not done after {max_iterations} iterations")
        records.append(server.iteration(*decide(server)))
    return records


def queue_growth(arrival_s: np.ndarray, queue_s: np.ndarray) -> float:
    """How fast the queueing delay grows over an episode, s per s of arrival time: the difference
    of the mean queueing delay (admission - arrival) of the last and the first quarter of the
    requests over the difference of their mean arrival times. About 0 in a steady state; past
    saturation about (arrival rate / service rate - 1). NaN for fewer than 8 requests."""
    n = len(arrival_s)
    if n < 8:
        return math.nan
    q = n // 4
    dt = float(arrival_s[-q:].mean() - arrival_s[:q].mean())
    return float(queue_s[-q:].mean() - queue_s[:q].mean()) / dt if dt > 0 else math.nan


def summarise(server: OnlineServer, warmup: int = 0, ttft_target_s: float = math.inf,
              tpot_target_s: float = math.inf) -> dict[str, float]:
    """Latency percentiles, throughput, energy and goodput of the requests after the first ``warmup``.

    Goodput: requests meeting both targets per second of the scored requests' arrival window.
    ``offered_rps``: their arrival rate; ``queue_growth`` (:func:`queue_growth`) and ``steady``
    (it is below STEADY_GROWTH): whether the server kept up with the arrivals; past saturation the
    queue grows for the whole episode and its numbers are a transient."""
    m = server.request_metrics()
    s = slice(warmup, None)
    ttft, tpot, lat = m["ttft_s"][s], m["tpot_s"][s], m["latency_s"][s]
    arrivals = server.w.arrival_s[s]
    good = (ttft <= ttft_target_s) & ((tpot <= tpot_target_s) | np.isnan(tpot))
    window = float(arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else math.nan
    finish = server.finish_s[s]
    span = float(np.nanmax(finish) - arrivals[0])
    tokens = float(m["tokens"][s].sum())
    offered = (len(lat) - 1) / window if window > 0 else math.nan  # the scored requests' arrival rate
    growth = queue_growth(arrivals, m["queue_s"][s])
    tp = tpot[~np.isnan(tpot)]
    return {
        "requests": int(len(lat)), "ttft_p50_s": float(np.median(ttft)), "ttft_p99_s": float(np.quantile(ttft, 0.99)),
        "tpot_p50_s": float(np.median(tp)) if tp.size else math.nan,
        "tpot_p99_s": float(np.quantile(tp, 0.99)) if tp.size else math.nan,
        "latency_mean_s": float(lat.mean()), "latency_p99_s": float(np.quantile(lat, 0.99)),
        "throughput_rps": len(lat) / span if span > 0 else math.nan,
        "tokens_per_s": tokens / span if span > 0 else math.nan,
        "joules_per_token": float(m["energy_j"][s].sum()) / tokens,
        "slo_attainment": float(good.mean()), "goodput_rps": float(good.sum()) / window if window > 0 else math.nan,
        "offered_rps": offered, "queue_growth": growth, "steady": bool(growth < STEADY_GROWTH),
    }
