"""Check the PIM attention model against AttAcc's cycle-level simulation.

    python -m experiments.validate_attention --log path/to/attacc_simulator/ramulator.out

AttAcc's simulator (github.com/scale-snu/attacc_simulator) logs every Ramulator2 run of its PIM
attention in ``ramulator.out``: context L, (request, head) ops per HBM stack, head dimension, bytes
per value, PIM type, power constraint and the cycles one layer took on one stack. This script
evaluates :func:`hardware.costs.pim_attention` on the same inputs for the bank-level (1P1B, 'BA')
rows and prints the distribution of ours / theirs. Nothing of AttAcc ships with papi-gym: point
``--log`` at your own copy.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from hardware import costs
from hardware.specs import PIM_PRESETS, EnergySpec

REQUIRED = {"L", "nhead", "dhead", "dbyte", "pim_type", "power_constraint", "cycle"}


def ratios(log: Path) -> np.ndarray:
    """ours / AttAcc's time for every bank-level row of ``log``."""
    with log.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = REQUIRED - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{log}: not an AttAcc ramulator.out log; missing columns {sorted(missing)}")
        out = []
        energy = EnergySpec()
        pims = {pc: replace(PIM_PRESETS["attacc"], power_budget=pc) for pc in (True, False)}
        for row in reader:
            if row["pim_type"] != "BA":
                continue
            pim = pims[row["power_constraint"] == "True"]
            ours = costs.pim_attention(int(row["nhead"]), int(row["L"]), int(row["dhead"]) * int(row["dbyte"]),
                                       1, 1, pim, energy).time
            out.append(ours / (int(row["cycle"]) * pim.stack.tck_s))
    if not out:
        raise ValueError(f"{log}: no bank-level ('BA') rows")
    return np.asarray(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PIM attention model vs AttAcc's cycle-level log.")
    parser.add_argument("--log", type=Path, required=True, help="AttAcc's ramulator.out (CSV)")
    args = parser.parse_args(argv)
    if not args.log.is_file():
        parser.error(f"--log: file not found: {args.log}")
    try:
        r = ratios(args.log)
    except (ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    p = np.percentile(r, [1, 5, 50, 95, 99])
    print(f"{len(r)} bank-level runs; ours / AttAcc cycle-level time: mean {r.mean():.3f}, "
          f"min {r.min():.3f}, p1 {p[0]:.3f}, p5 {p[1]:.3f}, median {p[2]:.3f}, p95 {p[3]:.3f}, "
          f"p99 {p[4]:.3f}, max {r.max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
