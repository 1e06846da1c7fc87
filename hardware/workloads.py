"""Request lengths: the embedded Dolly tables or any user CSV of (input, output) token counts.

Datasets (names accepted everywhere a dataset is asked for):

- ``creative-writing``: Dolly creative_writing (709 requests; output mean 222, median 144).
- ``general-qa``: the paper's second category is not in our lengths file; we use Dolly
  ``open_qa`` (3742 requests, output mean 64) in its place: like general_qa it is open-domain
  question answering without a context passage, the closest category we have lengths for.
- ``open-qa``: the same table under its own name.
- a path to a CSV with a header containing ``lin`` and ``lout`` (or ``input`` and ``output``);
  every row must hold positive integers. Rows are resampled with replacement.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardware.dolly_tables import GRID, TABLES

DATASET_ALIASES = {
    "creative-writing": "creative_writing",
    "creative_writing": "creative_writing",
    "general-qa": "open_qa",
    "general_qa": "open_qa",
    "open-qa": "open_qa",
    "open_qa": "open_qa",
}


_GRID = np.asarray(GRID, dtype=float)  # the quantile tables' percentiles


class WorkloadError(ValueError):
    """A dataset name or a lengths CSV is unusable."""


@dataclass(frozen=True)
class LengthDistribution:
    """Where request lengths come from: quantile tables or empirical rows."""

    name: str
    input_quantiles: np.ndarray | None = None
    output_quantiles: np.ndarray | None = None
    rows: np.ndarray | None = None  # shape (n, 2): input, output tokens

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` requests: (input lengths, output lengths), int64 tokens, each >= 1."""
        return self.lengths_of(self.draw(n, rng))

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The random numbers behind ``n`` requests (what ``sample`` draws from ``rng``): row
        indices (n,) for empirical rows, percentiles (2, n) in [0, 100) for quantile tables. Draws
        of several batches concatenated along the last axis turn into lengths in one
        ``lengths_of`` call."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise WorkloadError(f"batch size must be a positive integer, got {n!r}")
        if self.rows is not None:
            return rng.integers(0, len(self.rows), size=n)
        return rng.uniform(0.0, 100.0, size=(2, n))

    def lengths_of(self, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(input lengths, output lengths), int64 tokens >= 1, of the requests behind ``draws``."""
        if self.rows is not None:
            return self.rows[draws, 0].copy(), self.rows[draws, 1].copy()
        lin = np.interp(draws[0], _GRID, self.input_quantiles)
        lout = np.interp(draws[1], _GRID, self.output_quantiles)
        return (
            np.maximum(1, np.rint(lin)).astype(np.int64),
            np.maximum(1, np.rint(lout)).astype(np.int64),
        )


MAX_TOKENS = 10_000_000  # [D] longer than any model's context; keeps every count inside int64


def load_lengths_csv(path: str | Path) -> LengthDistribution:
    """Read a CSV of request lengths; fail with the offending line on malformed input."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"lengths CSV not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: accept Excel's byte-order mark
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        for cin, cout in (("lin", "lout"), ("input", "output")):
            if cin in header and cout in header:
                break
        else:
            raise WorkloadError(
                f"{path}: header {header} must contain columns 'lin' and 'lout' "
                "(or 'input' and 'output') with token counts"
            )
        rows = []
        for line, rec in enumerate(reader, start=2):
            rec = {k.strip(): v for k, v in rec.items() if k is not None}
            try:
                a, b = int(rec[cin]), int(rec[cout])
            except (TypeError, ValueError):
                raise WorkloadError(
                    f"{path}:{line}: {cin}={rec.get(cin)!r}, {cout}={rec.get(cout)!r} are not integers"
                ) from None
            if a < 1 or b < 1:
                raise WorkloadError(f"{path}:{line}: lengths must be >= 1 token, got {a}, {b}")
            if a > MAX_TOKENS or b > MAX_TOKENS:
                raise WorkloadError(f"{path}:{line}: lengths must be <= {MAX_TOKENS:,} tokens, got {a}, {b}")
            rows.append((a, b))
    if not rows:
        raise WorkloadError(f"{path}: no requests in the file")
    return LengthDistribution(name=path.stem, rows=np.asarray(rows, dtype=np.int64))


def get_dataset(name: str | Path | LengthDistribution) -> LengthDistribution:
    """A dataset by name (see the module docstring) or a path to a lengths CSV."""
    if isinstance(name, LengthDistribution):
        return name
    key = DATASET_ALIASES.get(str(name).lower())
    if key is not None:
        table = TABLES[key]
        return LengthDistribution(
            name=str(name),
            input_quantiles=np.asarray(table["input_quantiles"], dtype=float),
            output_quantiles=np.asarray(table["output_quantiles"], dtype=float),
        )
    if str(name).lower().endswith(".csv"):
        return load_lengths_csv(name)
    raise WorkloadError(
        f"unknown dataset {name!r}; allowed: {sorted(set(DATASET_ALIASES))} or a path to a .csv"
    )
