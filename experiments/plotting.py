"""One style for every figure, so that they read as if from one paper.

``figure(...)`` returns a matplotlib figure in that style; ``experiments.io.save_figure`` writes it
as PNG (150 dpi) and as a vector PDF beside it. Conventions: ratio axes start at 0 unless the
axis says otherwise; every bar or curve that summarises runs or episodes carries its interval and
the caption or legend says which; titles name the variant, model, objective and algorithm.
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
