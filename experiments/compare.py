"""Compare the learned agents of two `beyond` runs cell by cell, on the same held-out episodes.

    python -m experiments.compare results/beyond results/beyond_new [--out results/compare]

For every variant x objective that both folders hold (``<variant>/<objective>/eval.json``, evaluated
on the same episodes), the learned agents' per-episode scores of the first run (A) and the second
(B) are compared: the ratio of their means, each one's IQM [95% CI] over seeds x episodes relative
to the cell's best rule, and P(B > A) on a random held-out episode with its 95% CI (rliable's
probability of improvement; 0.5 is no difference). "no worse" means the CI of P(B > A) reaches
0.5 or above. Writes ``compare.json`` and ``compare.md`` with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agents.policies import policy_kind
from experiments import stats
from experiments.io import markdown_table, write_results


def learned_scores(result: dict[str, Any]) -> np.ndarray:
    """(seeds, episodes) episode scores of the learned policies of an eval.json."""
    rows = [p["episode_scores"] for name, p in result["policies"].items() if policy_kind(name) == "learned"]
    if not rows:
        raise ValueError(f"no learned agents in the evaluation of {result['env']} / {result['objective']}")
    return np.asarray(rows, dtype=np.float64)


def compare_cell(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The comparison of one cell's two evaluations (see the module docstring)."""
    if a["eval_seeds"] != b["eval_seeds"] or a["episodes"] != b["episodes"]:
        raise ValueError(f"{a['env']} / {a['objective']}: the runs were evaluated on different episodes "
                         f"({a['eval_seeds']} x {a['episodes']} vs {b['eval_seeds']} x {b['episodes']})")
    sa, sb = learned_scores(a), learned_scores(b)
    best_a = np.asarray(a["policies"][a["best_rule"]]["episode_scores"])
    best_b = np.asarray(b["policies"][b["best_rule"]]["episode_scores"])
    poi = stats.probability_of_improvement(sb, sa)
    return {
        "variant": a["env"].split("/")[-1], "objective": a["objective"], "episodes": a["episodes"],
        "seeds": [len(sa), len(sb)], "best_rule": [a["best_rule"], b["best_rule"]],
        "mean_ratio_b_over_a": float(sb.mean() / sa.mean()),
        "a_vs_best_rule": stats.iqm_ci(sa / best_a), "b_vs_best_rule": stats.iqm_ci(sb / best_b),
        "p_b_better": poi, "no_worse": poi["ci_high"] >= 0.5,
    }


def compare(first: Path, second: Path) -> list[dict[str, Any]]:
    cells = sorted(p.relative_to(first).parent for p in first.glob("*/*/eval.json"))
    rows = []
    for cell in cells:
        other = second / cell / "eval.json"
        if other.is_file():
            rows.append(compare_cell(json.loads((first / cell / "eval.json").read_text()),
                                     json.loads(other.read_text())))
    if not rows:
        raise ValueError(f"{first} and {second} have no variant/objective/eval.json in common")
    return rows


def to_markdown(rows: list[dict[str, Any]], first: Path, second: Path) -> str:
    headers = ["variant", "objective", "episodes", "seeds A, B", "mean B / mean A", "A / best rule, IQM [CI]",
               "B / best rule, IQM [CI]", "P(B > A) [CI]", "no worse"]
    body = [[r["variant"], r["objective"], r["episodes"], f"{r['seeds'][0]}, {r['seeds'][1]}",
             f"{r['mean_ratio_b_over_a']:.3f}", stats.fmt_ci(r["a_vs_best_rule"]), stats.fmt_ci(r["b_vs_best_rule"]),
             stats.fmt_ci(r["p_b_better"], "p", 2), "yes" if r["no_worse"] else "**no**"] for r in rows]
    return f"A: `{first}`, B: `{second}`\n\n" + markdown_table(headers, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="a `beyond` output folder (A)")
    parser.add_argument("second", type=Path, help="another, evaluated on the same episodes (B)")
    parser.add_argument("--out", type=Path, help="folder for compare.json and compare.md")
    args = parser.parse_args(argv)
    for folder in (args.first, args.second):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder (a `beyond` --out)", file=sys.stderr)
            return 2
    try:
        rows = compare(args.first, args.second)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = to_markdown(rows, args.first, args.second)
    print(text)
    if args.out:
        write_results(args.out, {"compare.json": rows, "compare.md": text})
    return 0


if __name__ == "__main__":
    sys.exit(main())
