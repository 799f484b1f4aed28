"""Figures for the book: one look everywhere, and every figure also saved as a PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .util import atomic_file, build_dir

# the paper's draw scripts' colours, in their order (paper.md section 7)
PAPER_COLORS = ["#82B0D2", "#FFBE7A", "#FA7F6F", "#8ECFC9", "#BEB8DC"]


def use_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette=PAPER_COLORS)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "figure.constrained_layout.use": True})


def save(fig: plt.Figure, name: str) -> Path:
    """Save `fig` as <build folder>/figures/<name>.png (`util.build_dir`: per profile) and return the path."""
    path = build_dir() / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def band_plot(data: pd.DataFrame, ax: plt.Axes, y: str = "loss", hue: str = "label", title: str = "",
              ylabel: str | None = None, order: list[str] | None = None) -> None:
    """The paper's look: steps on x, one colour per arrangement (`hue`); the line is the mean over
    seeds and the band spans their minimum to maximum (no band for a single run)."""
    sns.lineplot(data, x="step", y=y, hue=hue, hue_order=order, estimator="mean", errorbar=("pi", 100),
                 marker="o", markersize=4, markeredgewidth=0, ax=ax)
    ax.set(title=title, xlabel="step", ylabel=ylabel or ("held-out loss" if y == "loss" else y))
    ax.legend(fontsize=8, title=None)


def generation_panels(scores: pd.DataFrame) -> plt.Figure:
    """Generation metrics over steps, one panel per protocol (greedy on fixed prompts; the paper's
    sampling on a fresh subset per checkpoint)."""
    titles = {"greedy": "greedy, fixed prompts", "paper": "paper: sampled, fresh subset"}
    protocols = [p for p in titles if p in set(scores.protocol)]
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.5 * len(protocols), 3.4), sharey=True, squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        band_plot(scores[scores.protocol == protocol], ax, y="score", hue="metric", title=titles[protocol])
    fig.suptitle("Generation metrics on held-out tasks")
    return fig


def decline_panels(task_mean: pd.DataFrame, kinds: pd.DataFrame, per_panel: int = 5) -> plt.Figure:
    """Rapid and gradual per-task declines (rows) per group (columns): each task's loss over its
    step-0 loss, the `per_panel` tasks with the largest fall."""
    groups = sorted(kinds.group.unique())
    fig, axes = plt.subplots(2, len(groups), figsize=(5.5 * len(groups), 6.5), sharex=True, squeeze=False)
    for i, group in enumerate(groups):
        for j, kind in enumerate(["rapid", "gradual"]):
            ax = axes[j, i]
            chosen = kinds[(kinds.group == group) & (kinds.kind == kind)].nlargest(per_panel, "fall").task
            for task in chosen:
                t = task_mean[task_mean.task == task].sort_values("step")
                ax.plot(t.step, t.loss / t.loss.iloc[0], marker=".", label=task[:38])
            ax.set(title=f"{kind.capitalize()} decline, {group}", xlabel="step", ylabel="loss / step-0 loss")
            if len(chosen):
                ax.legend(fontsize=6)
            else:
                ax.text(0.5, 0.5, f"no {kind} task", transform=ax.transAxes, ha="center", color="grey")
    return fig


def sudden_panels(task_curves: pd.DataFrame, drops: pd.DataFrame, order: list[str]) -> plt.Figure:
    """One panel per row of `drops` (task, start, step): the task's loss under every order, the
    window of its sudden drop shaded."""
    fig, axes = plt.subplots(1, len(drops), figsize=(4.2 * len(drops), 3.4), squeeze=False)
    for ax, row in zip(axes[0], drops.itertuples()):
        band_plot(task_curves[task_curves.task == row.task], ax, order=order, title=row.task[:40], ylabel="task loss")
        ax.axvspan(row.start, row.step, color=PAPER_COLORS[2], alpha=0.15)
    return fig


def measure_grid(task_curves: pd.DataFrame, measures: pd.DataFrame, task: str, order: list[str],
                 names: list[str]) -> plt.Figure:
    """E3's figure: one task's loss, then each prefix measure in `names`, under every order."""
    cols = 4
    rows = -(-(len(names) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.2 * rows), squeeze=False)
    band_plot(task_curves[task_curves.task == task], axes.flat[0], order=order, title="task loss")
    for ax, name in zip(axes.flat[1:], names):
        data = measures[(measures.measure == name) & (measures.task == task)]
        band_plot(data, ax, y="value", order=order, title=name, ylabel="distance")
        ax.get_legend().remove()
    for ax in axes.flat[len(names) + 1:]:
        ax.axis("off")
    fig.suptitle(f"{task}: loss and the prefix measures under each order")
    return fig


def task_grid(task_curves: pd.DataFrame, measures: pd.DataFrame, order: list[str], measure: str,
              measured: str, cols: int = 6) -> plt.Figure:
    """Every task in small: its loss under each order (mean over seeds), and on a second axis
    `measure` of the `measured` order's prefix (dashed grey steps)."""
    tasks = sorted(task_curves.task.unique())
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(16, 2.1 * rows), sharex=True, squeeze=False)
    colours = dict(zip(order, PAPER_COLORS))
    for ax, task in zip(axes.flat, tasks):
        mean = task_curves[task_curves.task == task].groupby(["label", "step"]).loss.mean()
        for label in order:
            ax.plot(mean[label].index, mean[label].values, color=colours[label], lw=1.2, label=label)
        m = measures[(measures.task == task) & (measures.label == measured) & (measures.measure == measure)]
        m = m.groupby("step").value.mean()
        twin = ax.twinx()
        twin.step(m.index, m.values, where="post", color="grey", ls="--", lw=1)
        twin.tick_params(labelsize=6)
        ax.set_title(task.split("/", 1)[-1][:30], fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"Per held-out task: loss under each order; dashed: {measure} of the {measured}-order prefix")
    return fig


def rho_forest(power: pd.DataFrame) -> plt.Figure:
    """Spearman rho with its interval per measure, within-window and pooled (zsg_core.predict)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(power) + 1.5), sharey=True)
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
    ax.set(title=title, xlabel="step", ylabel="difference in held-out loss")
    ax.legend(fontsize=8, title=None)


def split_and_blocked(gap_split: pd.DataFrame, gap_blocked: pd.DataFrame | None, mark: int | None = None) -> plt.Figure:
    """`gap_plot`s side by side: over random task splits and, if given, over family-blocked ones
    (`stats.split_gaps` tables: the band is the 95% interval over their splits); `mark` draws a
    dotted vertical line at that step (the reading point)."""
    panels = [("Random task splits", gap_split)] + ([("Family-blocked splits", gap_blocked)] if gap_blocked is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.8), sharey=True, squeeze=False)
    for ax, (title, gaps) in zip(axes[0], panels):
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
    ax.legend(fontsize=7, markerscale=2, loc="best")
    return fig
