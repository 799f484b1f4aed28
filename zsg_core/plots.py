"""Figures for the book: one look everywhere, and every figure also saved as a PNG.

Sized for the page: the book's text column is about 720 px wide and a wider figure is shrunk to
fit it, so a figure `PAGE_WIDTH` inches wide shows its text at about its point size in pixels. No
figure is wider, and no row holds more than three panels (each then at least ~230 px wide); a grid
too big for a page is saved whole as a PNG of its own, and the page shows a part of it."""
from __future__ import annotations

import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from .findings import MISSING, Finding, p_cell, signed
from .util import atomic_file, build_dir

# the paper's draw scripts' colours, in their order (paper.md section 7)
PAPER_COLORS = ["#82B0D2", "#FFBE7A", "#FA7F6F", "#8ECFC9", "#BEB8DC"]
PAGE_WIDTH = 10.0  # inches: a figure this wide shows ~720 px wide, 1 pt of text ~ 1 px


def use_style() -> None:
    # seaborn's notebook sizes, a fifth larger: a figure PAGE_WIDTH wide is shrunk to the column
    sns.set_theme(context="notebook", style="whitegrid", palette=PAPER_COLORS, font_scale=1.2)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "figure.constrained_layout.use": True, "axes.titlesize": 13, "legend.fontsize": 11})


def save(fig: plt.Figure, name: str) -> Path:
    """Save `fig` as <build folder>/figures/<name>.png (`util.build_dir`: per profile) and return the path."""
    path = build_dir() / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def page_link(path: Path) -> str:
    """A markdown link to the saved figure `path` (one too big to show on its page), relative to the
    chapter's notebook, the kernel's folder. Shown by a cell whose outputs are read as MyST (cell
    metadata `mystnb={"markdown_format": "myst"}`), it becomes a download: Jupyter Book copies the
    file into the HTML, so the link works wherever the book is served from."""
    return f"[{path.name}]({Path(os.path.relpath(path)).as_posix()})"


def wrap(name: str, width: int = 30) -> str:
    """`name` (a task's) on as many lines as it needs, broken after "/" or "_": a title names its
    task whole, never cut short."""
    lines = [""]
    for part in re.split(r"(?<=[/_])", name):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def panels(n: int, cols: int = 3, height: float = 2.9) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of `n` panels, `cols` to a row, each a third of the page wide (slots left over hidden)."""
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH / 3 * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def steps_axis(ax: plt.Axes) -> None:
    """Steps on x, whole numbers only (there is no step 2.5), in round multiples (1, 2, 5, 10 and
    their powers of ten): a run of 60 steps is read at 0, 10, ..., 60, not at 8, 16, ..., 56."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlabel("step")


def legend_below(fig: plt.Figure, ax: plt.Axes, ncols: int = 5) -> None:
    """`ax`'s legend as the only one of `fig` (a figure, or a subfigure for one panel of several),
    under its panels: outside every panel it hides no data, and under them, not above, it keeps
    clear of a title."""
    legend = ax.get_legend()
    handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
    for a in fig.axes:
        if a.get_legend():
            a.get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), ncols))


def band_plot(data: pd.DataFrame, ax: plt.Axes, y: str = "loss", hue: str = "label", title: str = "",
              ylabel: str | None = None, order: list[str] | None = None) -> None:
    """The paper's look: steps on x, one colour per arrangement (`hue`); the line is the mean over
    seeds and the band spans their minimum to maximum (no band for a single run). Each arrangement
    also has its own dashes, marker and width, the first solid and widest: a line drawn exactly on
    an earlier one (TMA's FFT under MAX until FFT reaches its near half) leaves the earlier showing
    on both sides of it and between its dashes."""
    levels = order or list(dict.fromkeys(data[hue]))  # seaborn's order: as they first appear
    widths = dict(zip(levels, np.linspace(2.8, 1.4, len(levels)) if len(levels) > 1 else [1.75]))
    sns.lineplot(data, x="step", y=y, hue=hue, hue_order=levels, style=hue, style_order=levels, markers=True,
                 size=hue, size_order=levels, sizes=widths, estimator="mean", errorbar=("pi", 100),
                 markersize=5, markeredgewidth=0, ax=ax)
    steps_axis(ax)
    ax.set(title=title, ylabel=("held-out loss" if y == "loss" else y) if ylabel is None else ylabel)
    ax.legend(title=None)


def generation_panels(scores: pd.DataFrame) -> plt.Figure:
    """Generation metrics over steps, one panel per protocol (greedy on fixed prompts; the paper's
    sampling on a fresh subset per checkpoint)."""
    titles = {"greedy": "greedy, fixed prompts", "paper": "paper: sampled, fresh subset"}
    protocols = [p for p in titles if p in set(scores.protocol)]
    fig, axes = plt.subplots(1, len(protocols), figsize=(PAGE_WIDTH / 2 * len(protocols), 3.6), sharey=True, squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        band_plot(scores[scores.protocol == protocol], ax, y="score", hue="metric", title=titles[protocol])
    legend_below(fig, axes[0, 0])
    fig.suptitle("Generation metrics on held-out tasks")
    return fig


def decline_panels(task_mean: pd.DataFrame, kinds: pd.DataFrame, per_panel: int = 5) -> plt.Figure:
    """Rapid and gradual per-task declines (rows) per group (columns): each task's loss over its
    step-0 loss, the `per_panel` tasks with the largest fall, named in full under their panel."""
    groups = sorted(kinds.group.unique())
    fig, axes = plt.subplots(4, len(groups), figsize=(PAGE_WIDTH, 10), height_ratios=[3, 1, 3, 1], squeeze=False)
    for i, group in enumerate(groups):
        for j, kind in enumerate(["rapid", "gradual"]):
            ax, key = axes[2 * j, i], axes[2 * j + 1, i]  # key: the row under the panel, for its legend
            chosen = kinds[(kinds.group == group) & (kinds.kind == kind)].nlargest(per_panel, "fall").task
            for task in chosen:
                t = task_mean[task_mean.task == task].sort_values("step")
                ax.plot(t.step, t.loss / t.loss.iloc[0], marker=".", label=task)
            steps_axis(ax)
            ax.set(title=f"{kind.capitalize()} decline, {group}", ylabel="loss / step-0 loss")
            key.axis("off")
            if len(chosen):
                key.legend(*ax.get_legend_handles_labels(), loc="upper center", frameon=False)
            else:
                ax.text(0.5, 0.5, f"no {kind} task", transform=ax.transAxes, ha="center", color="grey")
    return fig


def sudden_panels(task_curves: pd.DataFrame, drops: pd.DataFrame, order: list[str]) -> plt.Figure:
    """One panel per row of `drops` (task, start, step): the task's loss under every order, the
    window of its sudden drop shaded."""
    fig, axes = panels(len(drops), height=3.3)
    for ax, row in zip(axes, drops.itertuples()):
        band_plot(task_curves[task_curves.task == row.task], ax, order=order, title=wrap(row.task), ylabel="task loss")
        ax.axvspan(row.start, row.step, color=PAPER_COLORS[2], alpha=0.15)
    legend_below(fig, axes[0])
    return fig


def measure_grid(task_curves: pd.DataFrame, measures: pd.DataFrame, task: str, order: list[str],
                 names: list[str], loss: bool = False) -> plt.Figure:
    """E3's figure: one task's prefix measures `names` under every order, three to a row, after
    the task's loss if `loss`."""
    shown = [(task_curves[task_curves.task == task], "loss", "task loss", "task loss")] if loss else []
    shown += [(measures[(measures.measure == name) & (measures.task == task)], "value", name, "distance") for name in names]
    fig, axes = panels(len(shown))
    for ax, (data, y, title, ylabel) in zip(axes, shown):
        band_plot(data, ax, y=y, order=order, title=title, ylabel=ylabel)
    legend_below(fig, axes[0])
    fig.suptitle(task)
    return fig


def task_grid(task_curves: pd.DataFrame, measures: pd.DataFrame, order: list[str], measure: str,
              measured: str, tasks: list[str], cols: int = 3) -> plt.Figure:
    """`tasks` in small, `cols` to a row: each one's loss under every order (`band_plot`), and on
    a second axis (right) `measure` of the `measured` order's prefix (dashed grey steps)."""
    fig, axes = panels(len(tasks), cols, height=2.8)
    for i, (ax, task) in enumerate(zip(axes, tasks)):
        band_plot(task_curves[task_curves.task == task], ax, order=order, title=wrap(task),
                  ylabel="" if i % cols else "task loss")
        m = measures[(measures.task == task) & (measures.label == measured) & (measures.measure == measure)]
        m = m.groupby("step").value.mean()
        twin = ax.twinx()
        twin.step(m.index, m.values, where="post", color="grey", ls="--", lw=1)
        twin.grid(False)  # the loss axis's grid is enough
    legend_below(fig, axes[0])
    fig.suptitle(f"Loss under each order; dashed grey (right axis): {measure} of the {measured}-order prefix")
    return fig


def rho_forest(power: pd.DataFrame) -> plt.Figure:
    """Spearman rho with its interval per measure, within-window and pooled (zsg_core.predict)."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 0.35 * len(power) + 1.5), sharey=True)
    y = range(len(power))
    for ax, kind in zip(axes, ["within", "pooled"]):
        rho = power[f"rho_{kind}"]
        ax.errorbar(rho, y, xerr=[rho - power[f"{kind}_lo"], power[f"{kind}_hi"] - rho], fmt="o",
                    color=PAPER_COLORS[0], ecolor="#555555", capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set(yticks=list(y), yticklabels=power.measure, xlabel="Spearman rho (d measure vs d loss)",
               title="within each window" if kind == "within" else "pooled over all windows")
    axes[0].invert_yaxis()
    return fig


def gap_plot(gaps: pd.DataFrame, ax: plt.Axes, title: str = "", hue: str = "comparison", skip_colours: int = 0) -> None:
    """Differences of held-out loss per step (columns step, diff, lo, hi, and `hue`), each with
    its 95% interval shaded (none for a single run); below 0 = the first order is ahead.
    `skip_colours`: start that far into the palette, so that "X - RT" takes X's colour in a
    `band_plot` beside it whose first order is RT."""
    for colour, (name, g) in zip(PAPER_COLORS[skip_colours:], gaps.groupby(hue, sort=False)):
        g = g.sort_values("step")
        ax.plot(g.step, g["diff"], marker="o", markersize=3, color=colour, label=name)
        ax.fill_between(g.step, g.lo, g.hi, color=colour, alpha=0.25, lw=0)
    ax.axhline(0, color="black", lw=0.8)
    steps_axis(ax)
    ax.set(title=title, ylabel="difference in held-out loss")
    ax.legend(title=None)


def split_and_blocked(gap_split: pd.DataFrame, gap_blocked: pd.DataFrame | None, mark: int | None = None) -> plt.Figure:
    """`gap_plot`s side by side: over random task splits and, if given, over family-blocked ones
    (`stats.split_gaps` tables: the band is the 95% interval over their splits); `mark` draws a
    dotted vertical line at that step (the reading point)."""
    shown = [("Random task splits", gap_split)] + ([("Family-blocked splits", gap_blocked)] if gap_blocked is not None else [])
    fig, axes = plt.subplots(1, len(shown), figsize=(min(PAGE_WIDTH, 6 * len(shown)), 3.8), sharey=True, squeeze=False)
    for ax, (title, gaps) in zip(axes[0], shown):
        gap_plot(gaps, ax, title=f"{title} ({int(gaps.n.max())})")
        if mark is not None:
            ax.axvline(mark, ls=":", color="grey")
    return fig


def rounds_map(points: pd.DataFrame, groups: list[str]) -> plt.Figure:
    """A 2-d (UMAP) picture of the pool around the held-out points (columns x, y, kind): held-out
    instances as black crosses, training instances coloured by the group of rounds that picked
    them (`groups`, earliest first), the rest of the pool in light grey."""
    fig, ax = plt.subplots(figsize=(7.5, 6))
    rest = points[points.kind == "not picked"]
    ax.scatter(rest.x, rest.y, s=3, color="#dddddd", label="not picked", rasterized=True)
    cmap = plt.get_cmap("viridis", max(len(groups), 2))
    for i, kind in enumerate(groups):
        g = points[points.kind == kind]
        ax.scatter(g.x, g.y, s=6, color=cmap(i), label=kind, rasterized=True, zorder=2 + len(groups) - i)  # earliest on top
    test = points[points.kind == "held-out"]
    ax.scatter(test.x, test.y, s=22, marker="x", color="black", label="held-out", linewidths=1, zorder=3 + len(groups))
    ax.set(xticks=[], yticks=[], title="Which training instances each group of TMA rounds picked (UMAP of MiniLM)")
    ax.legend(markerscale=2, loc="best")
    return fig


def table(frame: pd.DataFrame, precision: int = 3, formats: Mapping[str, Any] | None = None,
          index: bool = False) -> "pd.io.formats.style.Styler":
    """A table as a page shows it: one header row of column names in words ("step_80" shows as
    "step 80"; a pivot's columns that are values, not names, prefixed with their axis, "split 0"), no index column unless
    `index` (then as the first column), numbers to `precision` decimals and never as "-0.000",
    whole numbers without decimals, a missing number as `findings.MISSING`. `formats` maps a
    column (by its name in `frame`) to a format string or function, as `Styler.format` takes."""
    shown = frame.copy()
    if shown.columns.name is not None and not isinstance(shown.columns, pd.MultiIndex):
        # a pivot's values as columns (split 0, step 5) carry their axis's name; names keep their own
        named = all(isinstance(c, str) for c in shown.columns)
        shown.columns = [str(c) if named else f"{shown.columns.name} {c}" for c in shown.columns]
    if index:  # an unnamed index heads its column with nothing, not "index"
        shown = shown.rename_axis([n if n is not None else "" for n in shown.index.names]).reset_index()
    names = {c: str(c).replace("_", " ") for c in shown.columns}
    wanted = {names.get(c, str(c).replace("_", " ")): f for c, f in (formats or {}).items()}
    shown = shown.rename(columns=names)

    def rounded(v: float) -> str:
        return f"{round(float(v), precision) + 0.0:.{precision}f}"  # + 0.0: -0.0 shows as 0

    chosen: dict[str, Any] = {}
    for name in shown.columns:
        column = shown[name]
        if name in wanted:
            chosen[name] = wanted[name]
        elif pd.api.types.is_float_dtype(column):
            finite = column[np.isfinite(column)]
            whole = len(finite) > 0 and bool((finite == finite.round()).all())
            chosen[name] = (lambda v: f"{v:.0f}") if whole else rounded
    return shown.style.hide(axis="index").format(chosen, na_rep=MISSING)


EVIDENCE_BOUNDS = {"estimate": "measured", "lo": "lower bound", "hi": "upper bound"}


def evidence_table(rows: pd.DataFrame, columns: Sequence[str],
                   formats: Mapping[str, Any] | None = None) -> "pd.io.formats.style.Styler":
    """An explanations table (`rules.explanation` rows) as a page shows it: `columns`, where
    "estimate", "lo" and "hi" show as the measured contrast and its one-sided bounds, signed, in
    columns of their own (other columns' `formats` as `table` takes them). The rule's `measured`
    sentence repeats the level and unit in every row and wraps to six lines in the text column;
    the sentence above a table says them once."""
    shown = rows[list(columns)].rename(columns=EVIDENCE_BOUNDS)
    chosen = {name: signed for name in EVIDENCE_BOUNDS.values() if name in shown} | {"p (one-sided)": p_cell}
    return table(shown, formats={name: f for name, f in (chosen | dict(formats or {})).items() if name in shown})


def verdict_table(findings: Sequence[Finding], columns: Sequence[str] = ("part", "measured", "p", "verdict"),
                  extra: Mapping[str, Sequence[Any]] | None = None) -> "pd.io.formats.style.Styler":
    """The verdicts as a chapter shows them: `columns` of each Finding (and `extra` columns, one
    value per finding) as `table` shows any table, a p below 0.001 as "<0.001" (never "0.000")."""
    frame = pd.DataFrame([asdict(f) for f in findings])[list(columns)]
    for name, values in (extra or {}).items():
        frame[name] = list(values)
    return table(frame, formats={"p": p_cell} if "p" in frame else None)
