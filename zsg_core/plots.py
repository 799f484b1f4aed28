"""Figures for the book: one look everywhere, and every figure also saved as a PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

FIGURES = Path(__file__).resolve().parents[1] / "book" / "figures"  # beside the chapters, not the cwd

# the paper's draw scripts' colours, in their order (paper.md section 7)
PAPER_COLORS = ["#82B0D2", "#FFBE7A", "#FA7F6F", "#8ECFC9", "#BEB8DC"]


def use_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette=PAPER_COLORS)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight"})


def save(fig: plt.Figure, name: str) -> Path:
    """Save `fig` as book/figures/<name>.png and return the path."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.png"
    fig.savefig(path)
    return path
