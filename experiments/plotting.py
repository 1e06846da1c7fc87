"""One style for every figure, so that they read as if from one paper.

``figure(...)`` returns a matplotlib figure in that style; ``experiments.io.save_figure`` writes it
as PNG (150 dpi) and as a vector PDF beside it. Conventions: ratio axes show the data's range and
the ratio 1 (``ratio_axis``); every bar or curve that summarises runs or episodes carries its
interval and the caption or legend says which (``learning_curve``: IQM over seeds with its 95%
bootstrap CI); titles name the variant, model, objective and algorithm.
"""

from __future__ import annotations

from typing import Any

# Okabe-Ito, readable in colour-blind vision and in greyscale print.
COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.4,
    "pdf.fonttype": 42,  # TrueType in PDFs (editable text, accepted by publishers)
}


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend and the project style applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler

    plt.rcParams.update(STYLE)
    plt.rcParams["axes.prop_cycle"] = cycler(color=COLORS)
    return plt


def learning_curve(ax: Any, steps: Any, values: Any, label: str, color: str | None = None) -> Any:
    """A learning curve over seeds: the interquartile mean across seeds at every validation, with
    its 95% stratified-bootstrap interval as a band (experiments.stats.iqm_ci: rliable); ``values``
    (seeds, points). Returns the line."""
    import numpy as np

    from experiments import stats

    values = np.asarray(values, dtype=float)
    cis = [stats.iqm_ci(values[:, j][:, None]) for j in range(values.shape[1])]
    line = ax.plot(steps, [c["iqm"] for c in cis], marker=".", label=label, color=color)[0]
    ax.fill_between(steps, [c["ci_low"] for c in cis], [c["ci_high"] for c in cis], alpha=0.2,
                    color=line.get_color())
    return line


def ratio_axis(ax: Any, low: float, high: float, label: str) -> None:
    """A ratio axis that shows the effect: the data's range and 1 (drawn dashed), padded by 10% of
    that span, not 0..max (a 1% effect on a 0..1.1 axis is invisible)."""
    low, high = min(low, 1.0), max(high, 1.0)
    pad = max(0.1 * (high - low), 0.002)
    ax.set_ylim(low - pad, high + pad)
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    ax.set_ylabel(label)
