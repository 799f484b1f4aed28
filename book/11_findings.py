# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Findings: the paper's claims at this scale, part by part
#
# One row per *part* of each claim of the paper: a compound claim such as NFT < RT < FFT is
# judged as NFT < RT, RT < FFT and NFT < FFT, each with its own interval and verdict. Each row
# gives the paper's number as read off its released figure, our effect at the same relative point
# of training with its interval over independent units (task splits, unless the row says
# otherwise), and a verdict. Every row was computed by the rule of `zsg_core.rules` that the
# chapter named in it states above its result, from its stored runs; this chapter refuses rows
# computed with other parameters than its own.
#
# One vocabulary (`zsg_core.findings.VERDICTS`): **reproduced** when the interval lies wholly on the
# side the paper claims, **contradicted** when it lies wholly on the other side, **inconclusive**
# when it straddles the boundary or there are too few units for an interval (fewer than three, or
# units that all agree exactly: a single run or a single split never makes a verdict). Effects are differences in held-out loss (negative = the
# first order is ahead) unless the row says otherwise.
#
# **One family of the paper's claims.** The rows of the paper's own claims (E1-E8) are one
# confirmatory family, declared in `zsg_core.findings.CONFIRMATORY` before the runs: each is judged
# on its Bonferroni interval over the whole family, so that all its verdicts together are wrong
# with chance at most 5%, and its p-values are also given Holm-adjusted over the family (every
# declared part: one whose chapter was not built counts as rejecting nothing). The other
# rows, this book's own questions, are exploratory: judged on their own 95% interval, with no
# adjusted p, and marked so. They are:
#
# - **E4+** (chapter 4): E4's three orders on *family-blocked* splits, where no held-out task has a
#   sibling task of the same family in training;
# - **E5+** (chapter 5): each granularity against random order on E5's schedule, which tells
#   whether a part of E5 is carried by granularity or by nearest-first's own gap to random order;
# - **E9** (chapter 4): the optimal-transport order of the paper's code against random order;
# - **S1** (chapter 8): which representation of "similar" (MiniLM, the model's hidden states, its
#   gradients) predicts the held-out loss change, with and without the held-out answers;
# - **S2** (chapter 8): nearest-first orders built from those representations against random order
#   and against MiniLM's;
# - **A** (chapter 9): orders decided while training, from a validation set of the held-out tasks,
#   against random order and against a static order fixed in advance.
#
# **What it takes to run**: seconds; it reads the findings the chapters recorded (listed below).
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | must equal those the chapters ran with |

# %% tags=["parameters"]
model = "smollm2-135m"
test_tasks = 36
train_per_task = 20
test_per_task = 5
max_len = 512
lr = 3.0e-4
batch_size = 8
max_steps = 60
frozen_layers = 26

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from zsg_core import findings, plots, stats, toc
from zsg_core.config import run_params

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())
table, curves = findings.collect(params, toc.recording_chapters())  # in _toc.yml order

# %% [markdown]
# ## The table
#
# Each part with the paper's reading of its figure beside ours; where each was read (the relative
# point of training) is in the claims table below.

# %% tags=["nbval-check-output", "full-width"]
display(
    Markdown(
        "Recorded by: "
        + ", ".join(f"`{c}`" for c in toc.recording_chapters())
        + "."
    )
)
shown = table[["experiment", "part", "verdict", "family", "paper", "measured", "p", "p_holm"]].rename(
    columns={"p_holm": "p (Holm, family)", "paper": "the paper's figure"}
)  # verdict first: a wide table scrolls
# an experiment's parts share the paper's figure: written once, "as above" after
repeated = shown["the paper's figure"].eq(shown["the paper's figure"].shift()) & shown.experiment.eq(
    shown.experiment.shift())
shown["the paper's figure"] = shown["the paper's figure"].mask(repeated, "as above")
display(plots.table(shown, formats={"p": findings.p_cell, "p (Holm, family)": findings.p_cell}).set_properties(
    **{"text-align": "left", "vertical-align": "top", "padding-right": "1em"}))
display(Markdown(f"{len(table)} parts: " + ", ".join(f"{n} {v}" for v, n in table.verdict.value_counts().items()) + "."))

# %% [markdown]
# The claims behind the parts, and what the paper's figures show:

# %% tags=["full-width"]
claims = table.drop_duplicates(["claim", "point"])[["experiment", "claim", "point"]].rename(columns={"point": "read at"})
display(claims.style.hide(axis="index").set_properties(**{"text-align": "left", "vertical-align": "top"}))
display(Markdown(f"{len(claims)} claims from {claims.experiment.nunique()} experiments."))

# %% [markdown]
# ## How many units each part would need
#
# The splits of a build are fixed before it runs, and a part on few of them can only be decided
# by a large effect (the sentence below gives how large). So for each part with an interval, the fewest units (of its own kind, at its own
# level) that would decide an effect as large as the one seen here with 80% chance, at the spread
# between units behind its interval (`zsg_core.findings.units_to_decide`). It plans the next
# build's splits (a profile's `split_seeds`, `side_split_seeds`); it is never a reason to add
# splits to this one because an interval happens to exclude the boundary.

# %% tags=["full-width"]
level = findings.interval_level("E4")
reach = {n: stats.decidable_ratio(n, level) for n in sorted(set(table.n[table.n >= stats.MIN_UNITS]))}
display(Markdown(f"At the family's level ({level:.2%}), an interval over n units excludes 0 only where the mean exceeds "
                 + ", ".join(f"{r:.1f} times the spread between units for n = {n}" for n, r in reach.items()) + "."
                 if reach else "No part has the three units an interval takes."))
needed = findings.units_to_decide(table)
planning = table.assign(needed=needed)[needed.notna()][["experiment", "part", "family", "unit", "n", "needed"]]
planning = planning.rename(columns={"n": "units run", "needed": "units to decide"})
display(planning.style.hide(axis="index").format({"units to decide": lambda v: "more than 200" if np.isinf(v) else f"{v:.0f}"}))
display(Markdown(
    f"{len(planning)} of {len(table)} parts have an interval to plan from; "
    f"{int((planning['units to decide'] <= planning['units run']).sum())} of them had as many units as they need, "
    f"{int(np.isinf(planning['units to decide']).sum())} would need more than 200 (an effect too small beside its spread)."))

# %% [markdown]
# ## The headline comparisons side by side
#
# Each panel is one comparison from its chapter: the difference in averaged held-out loss per
# step with its 95% interval over task splits (instance draws for the task-free analog). Below
# zero: the first-named order is ahead.

# %%
panels = curves.groupby(["experiment", "setting"], sort=False)
cols = 3
rows = -(-panels.ngroups // cols)
fig, axes = plt.subplots(rows, cols, figsize=(plots.PAGE_WIDTH, 3.2 * rows), sharey=True, squeeze=False)
for ax, ((experiment, setting), g) in zip(axes.flat, panels):
    plots.gap_plot(g, ax, title=f"{experiment}, {setting}")
for ax in axes.flat[panels.ngroups:]:
    ax.axis("off")
plots.save(fig, "11_headline")
plt.show()
last = curves[curves.step == curves.groupby(["experiment", "setting"]).step.transform("max")]
display(Markdown(f"At each panel's last step, {int((last.hi < 0).sum())} of the {len(last)} comparisons lie wholly below 0 "
                 f"(the first-named order ahead) and {int((last.lo > 0).sum())} wholly above it."))

# %% [markdown]
# ## Nearest-first against random, taken apart
#
# Whatever E4's verdict on NFT < RT above, chapter 7 splits
# NFT - RT into additive parts through controls that each keep one thing of NFT's order (its
# tasks, its families, its answer lengths, its nearness without concentration), reads the gap on
# the answer tokens and on the end-of-sequence token apart, and tries other regimes (a lower lr;
# in the `cpu-full` profile every layer trained and a base model). Its explanations are judged
# there, not in this table: they are questions about this book's runs, not claims of the paper.

# %% [markdown]
# ## What we saw

# %%
confirmatory = table[table.family == "confirmatory"]
lines = [f"{len(table)} parts of {table.claim.nunique()} claims. The paper's claims, {len(confirmatory)} parts of the "
         f"declared family of {findings.FAMILY_SIZE}: " + ", ".join(f"{n} {v}" for v, n in confirmatory.verdict.value_counts().items())
         + f"; {int(confirmatory.p.notna().sum())} have a p-value, {int((confirmatory.p_holm < 0.05).sum())} of them below "
         "0.05 after Holm's adjustment over the family. This book's own questions, "
         f"{len(table) - len(confirmatory)} exploratory parts: "
         + ", ".join(f"{n} {v}" for v, n in table[table.family == "exploratory"].verdict.value_counts().items()) + "."]
for verdict in ("contradicted", "reproduced"):
    decided = table[table.verdict == verdict]
    if len(decided):
        lines.append(f"{verdict.capitalize()}: " + "; ".join(f"{row.experiment} {row.part}" for row in decided.itertuples())
                     + ".")
display(Markdown("\n".join("- " + line for line in lines)))
