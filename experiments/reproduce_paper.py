"""Reproduce the PAPI paper's headline results with the analytical simulator.

    python -m experiments.reproduce_paper --out results/paper

Writes ``paper_table.json`` ({"rows": [{"name", "paper", "ours"}, ...]}), ``paper_table.md`` and
``speedups.png`` (speedups per model, batch and TLP, like the paper's Fig. 8).

Method: for every configuration (model, dataset, batch size, TLP) we draw ``--batches`` static
batches of Dolly requests with fixed seeds; every system decodes the same batches. A
configuration's speedup is the ratio of total decoding times (prefill excluded, as the paper
reports decoding); a headline figure is the arithmetic mean of the configurations' ratios. PAPI
uses its characterizer with alpha calibrated offline per model (hardware.calibrate).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from experiments.io import markdown_table, save_figure, write_json, write_text
from hardware.calibrate import calibrate_alpha
from hardware.serving import BatchResult, run_batch, static_rule, threshold_rule
from hardware.systems import CostModel
from hardware.workloads import get_dataset

MODELS = ("llama-65b", "gpt3-66b", "gpt3-175b")
BATCHES = (4, 16, 64)
TLPS = (1, 2, 4)
SYSTEMS = ("papi", "a100_attacc", "a100_hbmpim", "attacc_only", "pimonly_papi")

PAPER = {  # [P] the brief, section 5
    "speedup_vs_a100_attacc_creative": 1.8,
    "speedup_vs_a100_hbmpim_creative": 1.9,
    "speedup_vs_attacc_only_creative": 11.1,
    "speedup_vs_a100_attacc_generalqa": 1.7,
    "speedup_vs_attacc_only_generalqa": 8.1,
    "energy_eff_vs_a100_attacc_creative": 3.4,
    "energy_eff_vs_attacc_only_creative": 1.15,
    "tlp_sweep_vs_a100_attacc": 1.5,
    "tlp_sweep_vs_attacc_only": 3.0,
    "pimonly_papi_vs_attacc_only": 2.3,
    "fc_pim_vs_attacc_fc_speedup": 2.9,
    "attn_pim_vs_attacc_attn_slowdown": 1.7,
    "comm_share_pimonly_b4s4": 0.282,
}


class Runner:
    """Runs (system, model, dataset, batch, tlp) configurations once each, with shared batches."""

    def __init__(self, batches_per_config: int, seed: int) -> None:
        self.batches_per_config = batches_per_config
        self.seed = seed
        self._models: dict[tuple[str, str], CostModel] = {}
        self._alpha: dict[str, int] = {}
        self._results: dict[tuple, BatchResult] = {}

    def cost_model(self, system: str, model: str) -> CostModel:
        key = (system, model)
        if key not in self._models:
            self._models[key] = CostModel(system, model)
        return self._models[key]

    def alpha(self, model: str) -> int:
        if model not in self._alpha:
            self._alpha[model] = calibrate_alpha(self.cost_model("papi", model), max_tokens=512)
        return self._alpha[model]

    def requests(self, dataset: str, batch: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        # The same requests for every system, model and TLP: paired comparisons.
        rng = np.random.default_rng([self.seed, batch, k, sum(map(ord, dataset))])
        return get_dataset(dataset).sample(batch, rng)

    def run(self, system: str, model: str, dataset: str, batch: int, tlp: int) -> BatchResult:
        key = (system, model, dataset, batch, tlp)
        if key in self._results:
            return self._results[key]
        cm = self.cost_model(system, model)
        if len(cm.fc_units) == 2:
            rule = threshold_rule(self.alpha(model))
        else:
            rule = static_rule(cm.fc_units[0])
        total = BatchResult()
        for k in range(self.batches_per_config):
            lin, lout = self.requests(dataset, batch, k)
            total.merge(run_batch(cm, lin, lout, tlp, rule, include_prefill=False))
        self._results[key] = total
        return total

    def ratio(self, base: str, target: str, model: str, dataset: str, batch: int, tlp: int,
              metric: str = "time") -> float:
        b, t = self.run(base, model, dataset, batch, tlp), self.run(target, model, dataset, batch, tlp)
        return getattr(b, metric) / getattr(t, metric)

    def mean_ratio(self, base: str, target: str, models, dataset: str, batches, tlps,
                   metric: str = "time") -> float:
        vals = [self.ratio(base, target, m, dataset, b, s, metric) for m in models for b in batches for s in tlps]
        return float(np.mean(vals))


def compute_rows(runner: Runner) -> list[dict]:
    creative, gqa = "creative-writing", "general-qa"
    grid = dict(models=MODELS, dataset=creative, batches=BATCHES, tlps=TLPS)
    gqa_grid = dict(models=("gpt3-175b",), dataset=gqa, batches=BATCHES, tlps=TLPS)
    sweep = dict(models=("llama-65b",), dataset=creative, batches=(4,), tlps=tuple(range(1, 9)))
    ours = {
        "speedup_vs_a100_attacc_creative": runner.mean_ratio("a100_attacc", "papi", **grid),
        "speedup_vs_a100_hbmpim_creative": runner.mean_ratio("a100_hbmpim", "papi", **grid),
        "speedup_vs_attacc_only_creative": runner.mean_ratio("attacc_only", "papi", **grid),
        "speedup_vs_a100_attacc_generalqa": runner.mean_ratio("a100_attacc", "papi", **gqa_grid),
        "speedup_vs_attacc_only_generalqa": runner.mean_ratio("attacc_only", "papi", **gqa_grid),
        "energy_eff_vs_a100_attacc_creative": runner.mean_ratio("a100_attacc", "papi", **grid, metric="energy"),
        "energy_eff_vs_attacc_only_creative": runner.mean_ratio("attacc_only", "papi", **grid, metric="energy"),
        "tlp_sweep_vs_a100_attacc": runner.mean_ratio("a100_attacc", "papi", **sweep),
        "tlp_sweep_vs_attacc_only": runner.mean_ratio("attacc_only", "papi", **sweep),
        "pimonly_papi_vs_attacc_only": runner.mean_ratio("attacc_only", "pimonly_papi", **grid),
    }
    pim_only = runner.run("pimonly_papi", "llama-65b", creative, 4, 4)
    attacc = runner.run("attacc_only", "llama-65b", creative, 4, 4)
    ours["fc_pim_vs_attacc_fc_speedup"] = attacc.breakdown_time["fc"] / pim_only.breakdown_time["fc"]
    ours["attn_pim_vs_attacc_attn_slowdown"] = (
        pim_only.breakdown_time["attention"] / attacc.breakdown_time["attention"]
    )
    ours["comm_share_pimonly_b4s4"] = pim_only.breakdown_time["communication"] / pim_only.time
    return [{"name": k, "paper": PAPER[k], "ours": round(float(ours[k]), 4)} for k in PAPER]


def speedup_figure(runner: Runner, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = [(b, s) for b in BATCHES for s in TLPS]
    baselines = ("a100_attacc", "a100_hbmpim", "attacc_only")
    fig, axes = plt.subplots(1, len(MODELS), figsize=(5 * len(MODELS), 3.6), sharey=True)
    x = np.arange(len(configs))
    width = 0.8 / len(baselines)
    for ax, model in zip(axes, MODELS, strict=True):
        for i, base in enumerate(baselines):
            vals = [runner.ratio(base, "papi", model, "creative-writing", b, s) for b, s in configs]
            ax.bar(x + (i - 1) * width, vals, width, label=f"PAPI vs {base}")
        ax.set_xticks(x, [f"b{b}\ns{s}" for b, s in configs], fontsize=8)
        ax.set_yscale("log")
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set_title(f"{model}, creative-writing")
    axes[0].set_ylabel("speedup of PAPI (x)")
    axes[0].legend(fontsize=8)
    fig.suptitle("PAPI speedup per batch size (b) and speculation length (s)")
    save_figure(fig, path)
    plt.close(fig)


def to_markdown(rows: list[dict], seconds: float, runner: Runner) -> str:
    table = [
        [r["name"], r["paper"], r["ours"], r["ours"] / r["paper"],
         "yes" if 0.75 <= r["ours"] / r["paper"] <= 1.25 else "no"]
        for r in rows
    ]
    alphas = ", ".join(f"{m}: {runner.alpha(m)}" for m in MODELS)
    return (
        "# PAPI paper reproduction\n\n"
        + markdown_table(["result", "paper", "ours", "ours/paper", "within 0.75..1.25"], table)
        + f"\nCalibrated alpha (RLP x TLP crossover): {alphas}. "
        f"{runner.batches_per_config} batches per configuration, seed {runner.seed}; {seconds:.1f} s.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Reproduce the PAPI paper's headline table.")
    parser.add_argument("--out", type=Path, default=Path("results/paper"))
    parser.add_argument("--batches", type=int, default=8, help="batches per configuration")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.batches < 1:
        parser.error("--batches must be >= 1")
    start = time.perf_counter()
    runner = Runner(args.batches, args.seed)
    rows = compute_rows(runner)
    speedup_figure(runner, args.out / "speedups.png")
    seconds = time.perf_counter() - start
    write_json(args.out / "paper_table.json", {"rows": rows})
    md = to_markdown(rows, seconds, runner)
    write_text(args.out / "paper_table.md", md)
    print(md)
    print(f"wrote {args.out}/paper_table.json, paper_table.md, speedups.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
