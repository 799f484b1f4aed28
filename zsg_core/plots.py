"""Figures for the book: one look everywhere, and every figure also saved as a PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

FIGURES = Path(__file__).resolve().parents[1] / "book" / "figures"  # beside the chapters, not the cwd

# the paper's draw scripts' colours, in their order (paper.md section 7)
PAPER_COLORS = ["#82B0D2", "#FFBE7A", "#FA7F6F", "#8ECFC9", "#BEB8DC"]


def use_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette=PAPER_COLORS)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "figure.constrained_layout.use": True})


def save(fig: plt.Figure, name: str) -> Path:
    """Save `fig` as book/figures/<name>.png and return the path."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.png"
    fig.savefig(path)
    return path


def band_plot(data: pd.DataFrame, ax: plt.Axes, y: str = "loss", hue: str = "label", title: str = "",
              ylabel: str | None = None, order: list[str] | None = None) -> None:
    """The paper's look: steps on x, one colour per arrangement (`hue`); the line is the mean over
    seeds and the band spans their minimum to maximum (no band for a single run)."""
    sns.lineplot(data, x="step", y=y, hue=hue, hue_order=order, estimator="mean", errorbar=("pi", 100),
                 marker="o", markersize=4, markeredgewidth=0, ax=ax)
    ax.set(title=title, xlabel="step", ylabel=ylabel or ("held-out loss" if y == "loss" else y))
    ax.legend(fontsize=8, title=None)
