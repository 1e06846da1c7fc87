"""N online servers stepped at once: the arrays of sim.serve_kernels, their cost tables, and the
fill-and-retry loop around the compiled iteration.

A server is loaded with one episode's Workload (:meth:`ServeEngine.load`) and stepped with
:meth:`ServeEngine.iterate`; sim.online.OnlineServer is one server's face (N = 1, or a view of
server i of a bigger engine), papi_env.serve_env's core the environments' one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hardware.cost_tables import MAX_TOKENS, CostTables
from hardware.specs import SpecError
from hardware.systems import CapacityError, CostModel
from sim import serve_kernels as sk

KV_POLICIES = ("reserve", "paged")
QUEUE_ORDERS = ("fcfs", "shortest", "deadline")  # sim.serve_kernels' ORDER_* codes, in order
BLOCK_TOKENS = 16  # [D] vLLM's default block size, tokens
WATERMARK = 0.01  # [D] vLLM's default watermark: the share of the KV cache admission keeps free


@dataclass(frozen=True)
class KVPolicy:
    """How a server manages its KV cache (sim.online's docstring): ``reserve`` each request's full
    length at admission (never preempts), or ``paged`` as vLLM: blocks of ``block_tokens`` tokens
    allocated as contexts grow, admission keeping a ``watermark`` share free, and preemption by
    recompute (the most recently admitted first) when running requests cannot grow."""

    policy: str = "reserve"
    block_tokens: int = BLOCK_TOKENS
    watermark: float = WATERMARK

    def __post_init__(self) -> None:
        if self.policy not in KV_POLICIES:
            raise ValueError(f"kv_policy must be one of {KV_POLICIES}, got {self.policy!r}")
        if isinstance(self.block_tokens, bool) or not isinstance(self.block_tokens, (int, np.integer)) or (
                self.block_tokens < 1):
            raise ValueError(f"block_tokens must be a positive integer, got {self.block_tokens!r}")
        if not (isinstance(self.watermark, (int, float)) and 0.0 <= self.watermark < 1.0):
            raise ValueError(f"watermark must be a share of the KV cache in [0, 1), got {self.watermark!r}")


def check_token_budget(token_budget: int | None) -> None:
    """ValueError unless ``token_budget`` is None (whole prompts) or a token count in [1, MAX_TOKENS]
    (hardware.cost_tables' FC table, which prices the fused iterations, holds that many tokens)."""
    if token_budget is None:
        return
    if isinstance(token_budget, bool) or not isinstance(token_budget, (int, np.integer)) or not (
            1 <= token_budget <= MAX_TOKENS):
        raise ValueError(f"token_budget must be None (whole prompts) or an integer in [1, {MAX_TOKENS}] "
                         f"(tokens per iteration), got {token_budget!r}")


def check_queue_order(queue_order: str) -> None:
    """ValueError unless ``queue_order`` is one of QUEUE_ORDERS."""
    if queue_order not in QUEUE_ORDERS:
        raise ValueError(f"queue_order must be one of {list(QUEUE_ORDERS)}, got {queue_order!r}")


class ServeEngine:
    """``num_envs`` servers of ``max_batch`` running requests at most, each on one of
    ``cost_models`` (a server's model index is set at load). Arrays as sim.serve_kernels
    describes; ``requests`` is the initial per-server request capacity (it grows at load)."""

    def __init__(self, num_envs: int, cost_models: list[CostModel], max_batch: int, requests: int = 1) -> None:
        for cm in cost_models:
            if cm.system.prefill_unit != "gpu":
                raise SpecError(f"online serving prefills on GPUs (as PAPI does); system '{cm.system.name}' "
                                f"prefills in PIM (prefill_unit={cm.system.prefill_unit!r})")
        self.num_envs, self.cost_models, self.max_batch = int(num_envs), list(cost_models), int(max_batch)
        n = self.num_envs
        self.req = np.zeros((n, sk.REQUEST_FIELDS, max(int(requests), 1)))
        self.srv = np.zeros((n, sk.SERVER_FIELDS))
        self.running = np.zeros((n, self.max_batch), dtype=np.int64)
        self.keys = np.zeros(n, dtype=np.uint64)
        self.out = np.zeros((n, sk.OUT_FIELDS))
        self.lists = np.zeros((n, sk.LISTS, self.max_batch), dtype=np.int64)  # finished, admitted, preempted
        self.missing = np.zeros((n, 4), dtype=np.int64)
        self.plan = np.zeros((n, sk.PLAN_FIELDS))  # the next iteration's plan (sim.serve_kernels.price)
        self.tables = CostTables.shared(self.cost_models)  # the process's, shared with every engine on these
        self.tables.fit_serving(self.max_batch, 1, 0)

    @property
    def decode_table(self) -> np.ndarray:
        """The decoding costs per (model, RLP, TLP, unit): hardware.cost_tables' serve_decode."""
        return self.tables.serve_decode

    @property
    def prefill_table(self) -> np.ndarray:
        """The prefill terms per (model, prompt tokens): hardware.cost_tables' prefill."""
        return self.tables.prefill

    @property
    def fc_table(self) -> np.ndarray:
        """FC costs per (model, kernel, unit, tokens): hardware.cost_tables' fc (fused chunks)."""
        return self.tables.fc

    # ------------------------------------------------------------------------------ episodes
    def load(self, i: int, arrival_s: np.ndarray, lin: np.ndarray, lout: np.ndarray, model: int, key: int,
             acceptance_rate: float | None = None, scored_from: int = 0, ttft_target_s: float = math.inf,
             tpot_target_s: float = math.inf, kv: KVPolicy | None = None, token_budget: int | None = None,
             queue_order: str = "fcfs") -> None:
        """Start server i on a workload (arrival s, prompt and output tokens per request, in
        arrival order) on cost model ``model``, its acceptance draws keyed by ``key``; requests from
        ``scored_from`` on are scored, and count as good when they meet both latency targets (s);
        KV memory managed as ``kv`` says (default: reserve each request's full length); prompts
        prefilled whole when they are admitted, or with ``token_budget`` in chunks (Sarathi-Serve:
        at most that many tokens per iteration, decoded tokens first; check_token_budget); queued
        requests admitted in ``queue_order`` (QUEUE_ORDERS: first come first served, the shortest
        prompt first, or those still within their TTFT target first; preempted ones always first).
        CapacityError when one request's KV cache alone exceeds the system's capacity."""
        cm = self.cost_models[model]
        policy = kv if kv is not None else KVPolicy()
        check_token_budget(token_budget)
        check_queue_order(queue_order)
        size = len(arrival_s)
        kv = (np.asarray(lin) + np.asarray(lout)).astype(np.float64) * cm.model.kv_bytes_per_token
        capacity = cm.kv_capacity_bytes
        too_big = np.flatnonzero(kv > capacity)
        if too_big.size:
            j = int(too_big[0])
            raise CapacityError(f"request {j} ({lin[j]} + {lout[j]} tokens) needs {kv[j] / 1e9:.1f} GB of KV "
                                f"cache; system '{cm.system.name}' holds {capacity / 1e9:.1f} GB")
        if size > self.req.shape[2]:
            grown = np.zeros((self.num_envs, sk.REQUEST_FIELDS, size))
            grown[:, :, :self.req.shape[2]] = self.req
            self.req = grown
        r = self.req[i]
        r[:] = 0.0
        r[sk.R_ARRIVAL, :size], r[sk.R_LIN, :size], r[sk.R_LOUT, :size] = arrival_s, lin, lout
        r[sk.R_ADMITTED_S:sk.R_FINISH_S + 1, :size] = np.nan
        r[sk.R_KV_BYTES, :size] = kv
        s = self.srv[i]
        s[:] = 0.0
        s[sk.S_SIZE], s[sk.S_SCORED_FROM], s[sk.S_KV_CAPACITY], s[sk.S_MODEL] = size, scored_from, capacity, model
        s[sk.S_ACCEPT_P] = 1.0 if acceptance_rate is None else float(acceptance_rate)
        s[sk.S_TTFT_TARGET], s[sk.S_TPOT_TARGET] = ttft_target_s, tpot_target_s
        s[sk.S_PAGED] = policy.policy == "paged"
        s[sk.S_BLOCK_TOKENS] = policy.block_tokens
        s[sk.S_BLOCK_BYTES] = policy.block_tokens * cm.model.kv_bytes_per_token
        s[sk.S_WATERMARK] = policy.watermark * capacity
        s[sk.S_TOKEN_BUDGET] = token_budget or 0
        s[sk.S_ORDER] = QUEUE_ORDERS.index(queue_order)
        self.keys[i] = np.uint64(key)
        self.running[i] = 0
        s[sk.S_ARRIVED] = 0
        arrived = sk.arrived_by(self.req, self.srv, i, 0.0)
        scored = np.arange(arrived) >= scored_from
        s[sk.S_SCORED_DUE] = float(np.asarray(lout[:arrived])[scored].sum())
        s[sk.S_ARRIVED] = arrived
        s[sk.S_WAITING] = sk.waiting(self.srv, i)

    # ------------------------------------------------------------------------------ stepping
    def iterate(self, units: np.ndarray, tlps: np.ndarray, admits: np.ndarray, pending: np.ndarray) -> None:
        """One iteration of every server with ``pending`` (cleared as they run): FC unit index, TLP
        and admissions per server (checked by the caller); results in ``out`` and ``lists``."""
        self.fit_tlp(int(tlps[pending].max()) if pending.any() else 1)
        while sk.iterate_all(units, tlps, admits, pending, self.req, self.srv, self.running, self.keys,
                             self.decode_table, self.prefill_table, self.fc_table, self.out, self.lists, self.missing,
                             self.plan):
            self.fill(np.flatnonzero(pending))

    def fit_tlp(self, tlp: int) -> None:
        """Grow the decode table to hold TLP ``tlp``."""
        self.tables.fit_serving(self.max_batch, tlp, 0)

    def fill(self, servers: np.ndarray) -> None:
        """Compute the cost-table entries that ``servers`` reported missing."""
        for kind, model, a, b in self.missing[servers]:
            if kind == sk.MISSING_PREFILL:
                self.tables.fill_prefill(int(model), int(a))
            elif kind == sk.MISSING_DECODE:
                tlp, unit = divmod(int(b), 2)
                self.tables.fill_serve_decode(int(model), int(a), tlp, unit)
            elif kind == sk.MISSING_FC:
                self.tables.fill(np.array([[0, model, sk.FC_ALL, sk.FC_GPU, a]]))

    def plan_next(self, i: int, unit: int, tlp: int, admit: int) -> np.ndarray:
        """What server i's next iteration would do with this action, as the kernel plans and prices
        it (sim.serve_kernels.price; nothing changes): a copy of its P_* fields (for planners)."""
        self.fit_tlp(tlp)
        while not sk.price(i, unit, tlp, admit, self.req, self.srv, self.running, self.lists, self.decode_table,
                           self.prefill_table, self.fc_table, self.missing, self.plan):
            self.fill(np.array([i]))
        return self.plan[i].copy()

    def plan_grid(self, i: int, units: list[int], max_tlp: int, admit: int) -> np.ndarray:
        """plan_next for every FC unit in ``units`` and TLP 1..``max_tlp`` at once: an array
        (len(units), max_tlp, P fields), [k, t - 1] the plan of (units[k], t)."""
        self.fit_tlp(max_tlp)
        grid = np.empty((len(units), max_tlp, self.plan.shape[1]))
        while not sk.price_grid(i, np.asarray(units, dtype=np.int64), max_tlp, admit, self.req, self.srv, self.running,
                                self.lists, self.decode_table, self.prefill_table, self.fc_table, self.missing,
                                self.plan, grid):
            self.fill(np.array([i]))
        return grid

    def fork(self, i: int, copies: int, hindsight: bool = True, acceptance_rate: float | None = None,
             key: int = 0) -> ServeEngine:
        """An engine of ``copies`` servers, each a copy of server i now, sharing this engine's cost
        tables: what-if rollouts. With ``hindsight`` the copies are exact (its future arrivals and
        acceptance draws included, which no runtime knows); without, they see only the requests
        arrived so far and accept drafts with probability ``acceptance_rate`` (a runtime's
        estimate; None: every draft) from draws keyed by ``key`` instead of the server's own."""
        forked = ServeEngine.__new__(ServeEngine)
        forked.num_envs, forked.cost_models, forked.max_batch = int(copies), self.cost_models, self.max_batch
        size = self.size(i) if hindsight else int(self.srv[i, sk.S_ARRIVED])
        forked.req = np.repeat(self.req[i:i + 1, :, :size], copies, axis=0)
        for name in ("srv", "running", "keys", "out", "lists", "missing", "plan"):
            setattr(forked, name, np.repeat(getattr(self, name)[i:i + 1], copies, axis=0))
        if not hindsight:
            forked.srv[:, sk.S_SIZE] = size
            forked.srv[:, sk.S_ACCEPT_P] = 1.0 if acceptance_rate is None else float(acceptance_rate)
            forked.keys[:] = np.uint64(key)
        forked.tables = self.tables
        return forked

    # ------------------------------------------------------------------------------ views
    def admissible(self, i: int) -> int:
        return int(sk.admissible(self.req, self.srv, self.lists, i, self.max_batch))

    def size(self, i: int) -> int:
        return int(self.srv[i, sk.S_SIZE])

    def field(self, i: int, name: int) -> np.ndarray:
        """Server i's per-request field ``name`` (an R_* index), a view over its requests."""
        return self.req[i, name, :self.size(i)]
