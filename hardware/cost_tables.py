"""The cost model as arrays: one decoding iteration's cost for many (RLP, TLP, context, unit) at once.

:class:`CostModel` prices one iteration from Python numbers and caches per (RLP, TLP) and per
(tokens, unit). The vector environments step hundreds of batches at once, so they need the same
numbers for arrays of RLP, TLP and context. :class:`CostTables` keeps, for a list of cost models
(one per model x system an environment can draw), dense tables of what CostModel caches, filled
lazily from CostModel itself on first use (so every number is CostModel's own), and assembles an
iteration from them with the same floating-point operations in the same order as
``CostModel.iteration``: the results are bit-identical to calling it element by element.

Tables (seconds and joules, all layers), indexed by the cost model's position in the list:

- ``fc[cm, kernel, unit, tokens]``: kernel 0..2 = FC_KERNELS, 3 = all three (``CostModel.fc``);
- ``split[cm, kernel, step, tokens]``: ``CostModel.fc_split`` at GPU fraction step / SPLIT_STEPS;
- ``fixed[cm, attention unit, rlp, tlp]``: attention at zero context, attention per context
  token, communication, other (``CostModel._fixed_parts``).

For online serving (sim.serve_kernels), allocated on first use and grown as needed:

- ``serve_decode[cm, rlp, tlp, unit]``: a whole decoding iteration with every FC kernel on
  ``unit``, as (s at zero context, s per context token, J at zero context, J per context token)
  (``CostModel.iteration`` is affine in the context);
- ``prefill[cm, tokens]``: ``CostModel.prefill_terms`` of a prefill of that many prompt tokens;
- and ``fc`` above, for chunked prefill's fused iterations (``CostModel.fused_fc_saving``).

Units are indices into ``UNITS`` = ('pim', 'gpu'). Tokens run to MAX_RLP x MAX_TLP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hardware.specs import FC_UNITS
from hardware.systems import FC_KERNELS, PREFILL_TERMS, SPLIT_STEPS, CostModel, IterationCost

UNITS = FC_UNITS  # action index -> unit: 0 FC-PIM, 1 GPU (hardware.specs)
MAX_RLP, MAX_TLP = 256, 16
_FLAT_FROM = 256  # [measured] lookups of this many elements or more gather through a flat index (bench on 2 cores)
MAX_TOKENS = MAX_RLP * MAX_TLP
ALL_FC = len(FC_KERNELS)  # kernel index of "every FC kernel" in the fc table
SERVE_TLPS, PREFILL_TOKENS = 8, 8192  # [D] serving tables' first sizes (TLPs, prompt tokens); they double as needed
SHARED_TABLES = 32  # (system, model) lists whose tables a process keeps (~0.7 MB each, +12 MB with splits)
_SHARED: dict[tuple, CostTables] = {}


class CostTables:
    """Lazily filled cost tables of ``cost_models`` (see the module docstring). ``shared`` gives
    every environment of a process with the same (system, model) list the same tables, so what one
    has computed (a training env, its validation env, an evaluation env) the others reuse."""

    @classmethod
    def shared(cls, cost_models: Sequence[CostModel]) -> CostTables:
        """The process's tables for this list of (system, model) pairs (the SHARED_TABLES most
        recently used lists are kept)."""
        key = tuple((cm.system, cm.model) for cm in cost_models)
        tables = _SHARED.pop(key, None)
        if tables is None:
            tables = cls(cost_models)
        _SHARED[key] = tables  # most recently used last
        while len(_SHARED) > SHARED_TABLES:
            _SHARED.pop(next(iter(_SHARED)))
        return tables

    @staticmethod
    def clear_shared() -> None:
        """Forget the process's shared tables (the next environments start from empty ones)."""
        _SHARED.clear()

    def __init__(self, cost_models: Sequence[CostModel]) -> None:
        self.cost_models = list(cost_models)
        m = len(self.cost_models)
        self.fc = np.full((m, ALL_FC + 1, len(UNITS), MAX_TOKENS + 1, 2), np.nan)  # NaN: not computed yet
        self.fixed = np.full((m, len(UNITS), MAX_RLP + 1, MAX_TLP + 1, 8), np.nan)
        self._split: np.ndarray | None = None  # allocated on first use (12 MB per cost model)
        self.serve_decode = np.full((m, MAX_RLP + 1, SERVE_TLPS + 1, len(UNITS), 4), np.nan)
        self.prefill = np.full((m, PREFILL_TOKENS, PREFILL_TERMS), np.nan)

    def __reduce__(self):
        """Pickled as the list of cost models, unpickled as the process's shared tables of that
        list: what the tables hold is a cache that CostModel refills identically, and pickling it
        made every training checkpoint 1-13 MB heavier (envs.pkl)."""
        return _shared_tables, (self.cost_models,)

    # ---------------------------------------------------------------------------------- lookups
    @staticmethod
    def _lookup(table: np.ndarray, index: tuple, compute) -> np.ndarray:
        """``table[index]`` (a tuple of broadcastable index arrays), first filling the entries not
        computed yet (NaN: every cost is a finite number) with ``compute(*entry)`` (seconds,
        joules, ...), one call per distinct missing entry. The indices must lie inside the table
        (the callers' ranges: RLP <= MAX_RLP, TLP <= MAX_TLP, ...). Past a few hundred elements
        they are folded into one flat row index, which np.take gathers in about half the time of a
        4-D fancy index; below, the fancy index's fewer calls cost less. The size judged is the last
        index's (tokens or TLP: one per lookup row)."""
        if np.size(index[-1]) < _FLAT_FROM:
            values = table[index]
        else:
            flat = index[0]
            for i, size in zip(index[1:], table.shape[1:len(index)], strict=True):
                flat = flat * size + i
            values = np.take(table.reshape(-1, *table.shape[len(index):]), flat, axis=0)
        missing = np.isnan(values[..., 0])
        if missing.any():
            columns = np.broadcast_arrays(*index)
            for entry in set(zip(*(c[missing].tolist() for c in columns), strict=True)):
                table[entry] = compute(*entry)
            values = table[index]
        return values

    def _fc_entry(self, c: int, k: int, u: int, t: int):
        model = self.cost_models[c]
        return model.fc(t, UNITS[u]) if k == ALL_FC else model.fc_kernel(FC_KERNELS[k], t, UNITS[u])

    def _fixed_entry(self, c: int, u: int, r: int, t: int):
        a0, a1, comm, other = self.cost_models[c]._fixed_parts(r, t, UNITS[u])
        return (*a0, *a1, *comm, *other)

    def _split_entry(self, c: int, k: int, s: int, t: int):
        return self.cost_models[c].fc_split(FC_KERNELS[k], t, s / SPLIT_STEPS)

    # ----------------------------------------------------------------------- for compiled kernels
    @property
    def split(self) -> np.ndarray:
        """The split table (allocated on first use: 12 MB per cost model)."""
        if self._split is None:
            self._split = np.full((len(self.cost_models), len(FC_KERNELS), SPLIT_STEPS + 1, MAX_TOKENS + 1, 2), np.nan)
        return self._split

    def fill(self, entries: np.ndarray) -> None:
        """Compute the listed entries from the cost models: rows of (table, 4 indices), table 0 =
        ``fc``, 1 = ``fixed``, 2 = ``split`` (what sim.kernels.price_batches reports missing)."""
        for table, a, b, c, d in set(map(tuple, entries.tolist())):
            if table == 0:
                self.fc[a, b, c, d] = self._fc_entry(a, b, c, d)
            elif table == 1:
                self.fixed[a, b, c, d] = self._fixed_entry(a, b, c, d)
            else:
                self.split[a, b, c, d] = self._split_entry(a, b, c, d)

    # ----------------------------------------------------------------------------- serving
    def fit_serving(self, max_rlp: int, max_tlp: int, max_tokens: int) -> None:
        """Grow the serving tables to hold RLP ``max_rlp``, TLP ``max_tlp`` and prefills of
        ``max_tokens`` prompt tokens (at least doubling a dimension that grows)."""
        d = self.serve_decode
        if max_rlp >= d.shape[1] or max_tlp >= d.shape[2]:
            rlps = d.shape[1] if max_rlp < d.shape[1] else max(2 * d.shape[1], max_rlp + 1)
            tlps = d.shape[2] if max_tlp < d.shape[2] else max(2 * d.shape[2], max_tlp + 1)
            self.serve_decode = np.full((d.shape[0], rlps, tlps, *d.shape[3:]), np.nan)
            self.serve_decode[:, :d.shape[1], :d.shape[2]] = d
        p = self.prefill
        if max_tokens >= p.shape[1]:
            self.prefill = np.full((p.shape[0], max(2 * p.shape[1], max_tokens + 1), p.shape[2]), np.nan)
            self.prefill[:, :p.shape[1]] = p

    def fill_serve_decode(self, c: int, rlp: int, tlp: int, unit: int) -> None:
        """``serve_decode[c, rlp, tlp, unit]`` from the cost model (the table must hold it)."""
        c0 = self.cost_models[c].iteration(rlp, tlp, 0.0, UNITS[unit])
        c1 = self.cost_models[c].iteration(rlp, tlp, 1.0, UNITS[unit])
        self.serve_decode[c, rlp, tlp, unit] = (c0.time, c1.time - c0.time, c0.energy, c1.energy - c0.energy)

    def fill_prefill(self, c: int, tokens: int) -> None:
        """``prefill[c, tokens]`` from the cost model (grown to hold it)."""
        self.fit_serving(0, 0, tokens)
        self.prefill[c, tokens] = self.cost_models[c].prefill_terms(tokens)

    # ------------------------------------------------------------------------------- iteration
    def fixed_parts(self, cm: np.ndarray, rlp: np.ndarray, tlp: np.ndarray,
                    attention_unit: np.ndarray | int) -> np.ndarray:
        """(..., 8): attention at zero context (s, J), per context token (s, J), communication,
        other, for every element (CostModel._fixed_parts)."""
        return self._lookup(self.fixed, (cm, attention_unit, rlp, tlp), self._fixed_entry)

    def fc_cost(self, cm: np.ndarray, tokens: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """(..., 2): seconds and joules of the three FC kernels together on ``unit``."""
        return self._lookup(self.fc, (cm, ALL_FC, unit, tokens), self._fc_entry)

    def fc_per_kernel(self, cm: np.ndarray, tokens: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Seconds and joules of the three FC kernels, kernel k on ``units[..., k]``, summed in
        FC_KERNELS order from zero (as CostModel.iteration sums them)."""
        costs = self._lookup(self.fc, (cm[..., None], _KERNELS, units, tokens[..., None]), self._fc_entry)
        return _sum_kernels(costs)

    def fc_split(self, cm: np.ndarray, tokens: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Seconds and joules of the three FC kernels, kernel k with GPU fraction
        ``steps[..., k] / SPLIT_STEPS`` (CostModel.fc_split), summed from zero."""
        costs = self._lookup(self.split, (cm[..., None], _KERNELS, steps, tokens[..., None]), self._split_entry)
        return _sum_kernels(costs)

    def iteration(self, cm: np.ndarray, rlp: np.ndarray, tlp: np.ndarray, sum_ctx: np.ndarray,
                  fc_time: np.ndarray, fc_energy: np.ndarray, attention_unit: np.ndarray | int) -> IterationCost:
        """An iteration's cost from its FC part and the fixed tables (CostModel._assemble), as an
        IterationCost of arrays."""
        parts = self.fixed_parts(cm, rlp, tlp, attention_unit)
        return IterationCost(
            fc_time, parts[..., 0] + parts[..., 2] * sum_ctx, parts[..., 4], parts[..., 6],
            fc_energy, parts[..., 1] + parts[..., 3] * sum_ctx, parts[..., 5], parts[..., 7],
        )

    def iteration_on(self, cm: np.ndarray, rlp: np.ndarray, tlp: np.ndarray, sum_ctx: np.ndarray,
                     fc_unit: np.ndarray, attention_unit: np.ndarray | int) -> IterationCost:
        """CostModel.iteration with every FC kernel on ``fc_unit`` (index into UNITS)."""
        fc = self.fc_cost(cm, rlp * tlp, fc_unit)
        return self.iteration(cm, rlp, tlp, sum_ctx, fc[..., 0], fc[..., 1], attention_unit)


_KERNELS = np.arange(ALL_FC)  # the three FC kernels' indices, looked up together


def _sum_kernels(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seconds and joules of (..., 3 kernels, 2) costs summed in FC_KERNELS order from zero (the
    order CostModel.iteration adds them in)."""
    time = energy = 0.0
    for k in range(ALL_FC):
        time, energy = time + costs[..., k, 0], energy + costs[..., k, 1]
    return time, energy


def _shared_tables(cost_models: Sequence[CostModel]) -> CostTables:
    """CostTables.shared as a module function: what a pickled CostTables unpickles through
    (cloudpickle, which checkpoints use, pickles a bound classmethod by value, without _SHARED)."""
    return CostTables.shared(cost_models)
