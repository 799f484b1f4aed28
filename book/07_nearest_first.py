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
# # Nearest-first against random, taken apart
#
# Chapter 4 compared nearest-first by WSD (NFT) with random order (RT) on several task splits;
# the gap between them at its reading point is computed below. This chapter asks what in NFT's
# order contributes to that gap. Each control below is a permutation of the same training list that keeps
# one thing of NFT's order and drops the rest, so NFT - RT splits into parts that add up to it,
# each the effect of one thing, in the same unit:
#
# 1. **The nearest instances, one task's template, or the family mix.** NFT's sequence of tasks
#    with a random instance of each task (*task-matched*), and NFT's sequence of task families with
#    a random instance of each family (*family-matched*): NFT - task is what being the nearest
#    instances adds, task - family what one task's template adds over its family's mix of tasks,
#    family - RT what the families NFT puts first add.
# 2. **Format and stopping.** An instance's loss is the mean over its answer tokens and its
#    end-of-sequence token (EOS), so in a short answer the EOS weighs much (one over the answer's
#    tokens), and any concentrated prefix teaches one family's answer length and where to stop. NFT's sequence of answer lengths with any task's instance of
#    each length (*length-matched*) splits NFT - RT into length - RT (format and stopping alone)
#    and NFT - length (the rest). The gap is also read on the answer tokens and on the EOS apart,
#    and regressed, task by task, on how far each held-out task's answers are from those NFT
#    trained on first.
# 3. **Concentration vs nearness.** A *coverage-balanced* nearest-first order, TMA's nearest rounds
#    over the same list (every held-out point gets its nearest remaining instance in turn): NFT -
#    balanced is what the concentration adds, balanced - RT what nearness itself adds (SIFT,
#    Hübotter et al. 2024: nearest neighbours are redundant).
# 4. **Regime.** The same NFT / FFT / RT under other set-ups (`regimes`): a 10x lower lr in the
#    default profile; every layer trained, and a base (not instruction-tuned) model, in the
#    `cpu-full` profile, whose runs stop at the reading point (computed below; a run's first steps
#    under the epoch's schedule are those of a longer run).
# 5. **From the stored runs** (no training): does the gap follow how concentrated NFT's first steps
#    are, is it carried by held-out tasks with or without a training sibling, and does the paper's
#    average over answer tokens tell another story?
#
# **What it takes to run**: the cpu profile trains 4 orders per task split besides chapter 4's
# NFT and RT, and 3 per split for each regime, on chapter 4's splits; "What it took" at the end
# gives the measured time. Minutes once the runs are stored.
#
# Rerun with other parameters, for example the slow regimes:
# `make book PROFILE=cpu-full`, or
# `papermill _build/cpu/book/07_nearest_first.ipynb out.ipynb -p regimes '{"lr / 3": {"lr": 1.0e-4}}'`.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2 |
# | `split_seeds` | task splits every experiment runs on (chapter 4's): a regime's verdict is over the same splits as the others' |
# | `arrangement_seeds` | the seeded orders' shuffle (RT and the matched orders): the first of them |
# | `sibling_steps` | the early window (steps) over which what each order received is counted |
# | `regimes` | name -> run parameters that differ from the profile's (lr, frozen_layers, model, ...) |

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
arrangement_seeds = [0, 1, 2]
split_seeds = [0, 1, 2, 3, 4, 5, 6, 7]
sibling_steps = 20
regimes = {"lr / 10": {"lr": 3.0e-5}}

# %% tags=["hide-cell"]
import math

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, rules, stats
from zsg_core.config import run_params

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())
orders, setups = experiments.chapter_runs("07_nearest_first", globals())
tasks = compare.task_curves(orders)
curves = compare.loss_curves(orders)
epoch = compare.epoch_steps(orders[("NFT", split_seeds[0])])
point = findings.relative_step(findings.paper_fraction("E4"), epoch, sorted(tasks.step.unique()))
LABELS = list(experiments.NEAREST_FIRST_ORDERS)
ONE_SIDED = rules.EVIDENCE_LEVEL  # explanations are judged on one-sided 95% bounds: two-sided 90% intervals


def gap(a: str, b: str, table: pd.DataFrame = tasks, step: int = point, level: float = 0.95) -> stats.Estimate:
    """a - b at `step`: per split the mean over its held-out tasks, the estimate over splits."""
    return stats.over_units(stats.split_means(table, a, b, step)["diff"], level=level)


# %% [markdown]
# ## The gap to explain
#
# Chapter 4's reading point (the paper's E4 step at the same fraction of our epoch):

# %%
to_explain = gap("NFT", "RT")
display(Markdown(f"The gap to explain: NFT - RT {findings.fmt(to_explain)} at step {point} "
                 f"(positive: nearest-first is worse; RT here is each split's first shuffle, where chapter 4 "
                 f"averages the first split's {len(arrangement_seeds)} shuffles)."))

# %% [markdown]
# ## Six orders of the same list
#
# Mean held-out loss over the task splits (the band spans them), and what each order received in
# its first `sibling_steps` steps: the share of the family and of the task that contributed most,
# and how many families contributed, averaged over splits.

# %%
fig, ax = plt.subplots(figsize=(7.5, 4.4))
plots.band_plot(curves, ax, order=LABELS, title=f"Six orders of the same list, {len(split_seeds)} task splits")
ax.axvline(point, ls=":", color="grey")
plots.legend_below(fig, ax, ncols=3)  # outside the panel: NFT, family and task run together inside it
plots.save(fig, "07_orders")
plt.show()
seen = pd.DataFrame([{"order": label, "split": seed, **compare.leading_family(r, sibling_steps)}
                     for (label, seed), r in orders.items()])
seen_mean = seen.groupby("order", sort=False)[["its share", "leading task's share", "families"]].mean().reindex(LABELS)
at_point = tasks[tasks.step == point].groupby("label").loss.mean()
display(Markdown(f"At step {point}, the mean held-out loss over splits is lowest under "
                 f"{at_point.idxmin()} ({at_point.min():.3f}) and highest under {at_point.idxmax()} "
                 f"({at_point.max():.3f})."))
shares = {"its share": "leading family's share", "families": "families (mean over splits)"}
display(plots.table(seen_mean.rename(columns=shares), precision=2, index=True,
                    formats={"leading family's share": "{:.0%}", "leading task's share": "{:.0%}"}))
display(Markdown(f"NFT's leading family made up {seen_mean.loc['NFT', 'its share']:.0%} of its "
                 f"first {sibling_steps} steps, the family-matched and task-matched orders' "
                 f"{seen_mean.loc['family', 'its share']:.0%} and {seen_mean.loc['task', 'its share']:.0%}, the "
                 f"length-matched order's {seen_mean.loc['length', 'its share']:.0%}, RT's "
                 f"{seen_mean.loc['RT', 'its share']:.0%}."))

# %% [markdown]
# ## NFT - RT in parts
#
# Three ways to split the gap, each through controls that keep one thing of NFT's order; every
# part predicts that the first order of its pair loses (its contrast > 0). The rule:

# %%
# each decomposition: its chain of orders, and per link the explanation it carries, what that
# explanation predicts, and the side of 0 the link's contrast must lie on
DECOMPOSITIONS = {
    "what NFT's prefix holds": (("NFT", "task", "family", "RT"), [
        ("The nearest instances within NFT's tasks", "NFT loses to random instances of its own tasks", ">"),
        ("One task's template", "NFT's tasks lose to NFT's families (any of their tasks)", ">"),
        ("The families NFT puts first", "NFT's family mix with random instances loses to RT", ">")]),
    "answer format": (("NFT", "length", "RT"), [
        ("What NFT puts first, beyond answer length", "NFT loses to its own answer lengths from any task", ">"),
        ("Format and stopping", "NFT's answer lengths alone lose to RT", ">")]),
    "coverage": (("NFT", "balanced", "RT"), [
        ("Concentration: one family first", "coverage-balanced nearest-first beats WSD-NFT", ">"),
        ("Nearness itself (redundant neighbours)", "coverage-balanced nearest-first loses to RT", ">")]),
}
shown = ["contrast", "explanation", "estimate", "lo", "hi", "share", "evidence"]  # the chains say the decomposition
chains = "; ".join(f"{name} ({' - '.join(chain)})" for name, (chain, _) in DECOMPOSITIONS.items())
above_parts = (f"Each part's mean over {to_explain.n} task splits, its one-sided 95% bounds and its share of "
               f"the gap, split by split in this order: {chains}.")

# %% tags=["verdict"]
display(Markdown(rules.stated("explanation")))
parts = pd.concat([rules.decomposition(tasks, point, chain, carries)
                   .assign(decomposition=name)
                   for name, (chain, carries) in DECOMPOSITIONS.items()],
                  ignore_index=True)
display(Markdown(above_parts))
named = parts.rename(columns={"share of the gap": "share"})
plots.evidence_table(named, shown, formats={"share": "{:.0%}"})

# %%
display(Markdown(
    f"Each decomposition's parts add up to NFT - RT ({findings.signed(to_explain.value)}); the largest part is "
    + "; ".join(f"{name}: {g.loc[g.estimate.abs().idxmax(), 'contrast']} "
                f"({g.loc[g.estimate.abs().idxmax(), 'share of the gap']:.0%} of the gap)"
                for name, g in parts.groupby("decomposition", sort=False)) + ". The three are alternative ways of "
    "splitting one gap, not three pieces of evidence; a share above 100% means the other part of its split is "
    "negative (that control beats RT). Each part is judged on one-sided 95% bounds (a 90% two-sided interval)."))

# %% [markdown]
# ## Format and stopping, read from the loss
#
# The held-out loss of an instance is the mean over its answer tokens and its EOS. Read apart:
# NFT - RT on the answer tokens alone and on the EOS alone, per step over the task splits. If
# format and stopping carry the gap, it sits in the EOS.

# %%
by_measure = {"whole": tasks, "answer tokens, EOS excluded": compare.task_curves(orders, measure="answer"),
              "EOS alone": compare.task_curves(orders, measure="eos")}
fig, axes = plt.subplots(1, 3, figsize=(plots.PAGE_WIDTH, 3.6), sharey=False)
for ax, (name, table) in zip(axes, by_measure.items()):
    plots.gap_plot(stats.split_gaps(table, [("NFT", "RT"), ("length", "RT")]), ax, title=name)
    ax.axvline(point, ls=":", color="grey")
for ax in axes[1:]:  # one y label for the row: three would crowd the panels at page width
    ax.set_ylabel("")
plots.save(fig, "07_eos")
plt.show()
measure_gaps = {name: gap("NFT", "RT", table) for name, table in by_measure.items()}
display(Markdown("NFT - RT at step " + f"{point}: " + "; ".join(f"{name} {findings.fmt(e)}" for name, e in measure_gaps.items())
                 + "."))

# %% [markdown]
# Task by task: per split, NFT - RT of each held-out task at the reading point regressed on the
# (log2) length of its answers and on how far that is from the answers NFT received in its first
# `sibling_steps` steps (`compare.answer_format`); each coefficient's interval is over splits.

# %%
at = tasks[tasks.step == point]
task_gap = (at[at.label == "NFT"].groupby(["split", "task"]).loss.mean()
            - at[at.label == "RT"].groupby(["split", "task"]).loss.mean()).rename("NFT - RT").reset_index()
form = pd.concat([compare.answer_format(orders[("NFT", s)], sibling_steps).assign(split=s) for s in split_seeds])
per_task = task_gap.merge(form, on=["split", "task"])
slopes = stats.split_slopes(per_task, "NFT - RT", ["mismatch", "held-out length"], level=ONE_SIDED)
fig, ax = plt.subplots(figsize=(4.8, 3.4))
ax.scatter(per_task["mismatch"], per_task["NFT - RT"], s=10, alpha=0.6)
ax.axhline(0, color="grey", lw=0.8)
ax.set(xlabel=f"|log2 answer length - NFT's first {sibling_steps} steps'|", ylabel=f"NFT - RT at step {point}")
plots.save(fig, "07_format")
plt.show()
display(Markdown(f"Over {len(per_task)} (split, held-out task) pairs, the coefficient of the mismatch is "
                 f"{findings.signed(slopes['mismatch'].value)} per factor of 2 and that of the held-out answers' length "
                 f"{findings.signed(slopes['held-out length'].value)} (their one-sided bounds are in the table below)."))

# %% [markdown]
# ## Other regimes
#
# NFT - RT and FFT - RT per step under each set-up, with the 95% interval over the task splits. If
# a gentler set-up moves every loss less, it shrinks every gap; so the test of the regime is the
# sign of NFT - RT under it (the paper's order, NFT below RT, coming back), not a smaller gap.

# %%
setup_tasks = {name: compare.task_curves(runs) for name, runs in setups.items() if runs}
columns = min(len(setup_tasks), 2)  # two to a row: four side by side are too small to read on a page
panel_rows = math.ceil(len(setup_tasks) / columns)
fig, axes = plt.subplots(panel_rows, columns, figsize=(4.6 * columns, 3.4 * panel_rows), sharey=True, squeeze=False)
for ax, (name, table) in zip(axes.flat, setup_tasks.items()):
    plots.gap_plot(stats.split_gaps(table, [("NFT", "RT"), ("FFT", "RT")]), ax, title=name)
    ax.axvline(point, ls=":", color="grey")
for ax in axes.flat[len(setup_tasks):]:
    ax.set_visible(False)
plots.save(fig, "07_regimes")
plt.show()
regime_gaps = pd.DataFrame({name: {f"{a} - {b}": findings.fmt(gap(a, b, table)) for a, b in (("NFT", "RT"), ("FFT", "RT"))}
                            for name, table in setup_tasks.items()}).T
last_step = {name: int(table.step.max()) for name, table in setup_tasks.items()}
display(Markdown("NFT - RT at each set-up's last step: " + "; ".join(
    f"under {name} (step {last_step[name]}) {findings.fmt(gap('NFT', 'RT', table, step=last_step[name]))}"
    for name, table in setup_tasks.items()) + f" (the regime's part below is judged at step {point})."))
display(plots.table(regime_gaps.rename_axis("set-up"), index=True))
display(Markdown(f"At step {point}, NFT - RT is " + "; ".join(f"{regime_gaps.loc[name, 'NFT - RT']} under {name}"
                                                              for name in regime_gaps.index) + "."))

# %% [markdown]
# ## Concentration and siblings, from the stored runs
#
# Per split, the share of NFT's first `sibling_steps` steps that its leading family made up,
# against NFT - RT at the reading point:

# %%
by_split = pd.DataFrame([{"split": s, "leading share": compare.leading_family(orders[("NFT", s)], sibling_steps)["its share"],
                          "NFT - RT": stats.split_means(tasks, "NFT", "RT", point).set_index("split")["diff"][s]}
                         for s in split_seeds])
fig, ax = plt.subplots(figsize=(4.5, 3.4))
ax.scatter(by_split["leading share"], by_split["NFT - RT"])
for _, row in by_split.iterrows():
    ax.annotate(f"split {int(row.split)}", (row["leading share"], row["NFT - RT"]), fontsize=8)
ax.set(xlabel=f"leading family's share of NFT's first {sibling_steps} steps", ylabel=f"NFT - RT at step {point}")
plots.save(fig, "07_concentration")
plt.show()
concentration = stats.correlation(by_split["leading share"], by_split["NFT - RT"], level=ONE_SIDED)
with_sibling = {s: compare.held_out_with_sibling(orders[("NFT", s)]) for s in split_seeds}
has_sibling = pd.Series([t in with_sibling[s] for s, t in zip(tasks.split, tasks.task)], index=tasks.index)
display(Markdown(f"Across {len(by_split)} splits, Pearson r between the leading family's share and NFT - RT is "
                 f"{findings.signed(concentration.value, 2)}; {sum(len(v) for v in with_sibling.values())} of the "
                 f"{tasks.groupby('split').task.nunique().sum()} held-out tasks have a training sibling."))

# %% [markdown]
# ## The other evidence
#
# What is not a part of NFT - RT, judged by the same one-sided rule: a correlation, a difference
# between groups of held-out tasks, the gap under other averages of the loss, the regression's
# coefficients, and the gap under other regimes.

# %%
over_tokens = gap("NFT", "RT", compare.loss_curves(orders, weight="tokens"), level=ONE_SIDED)
other = [
    rules.explanation("Concentration predicts the gap", "splits where one family leads more have a larger gap",
                      concentration, ">", contrast="Pearson r (leading share, NFT - RT)"),
    rules.explanation("Tasks far from NFT's head suffer", "NFT - RT is larger on held-out tasks without a training sibling",
                      stats.gap_difference(tasks[~has_sibling], tasks[has_sibling], "NFT", "RT", point, level=ONE_SIDED),
                      ">", contrast="(NFT - RT, no sibling) - (NFT - RT, sibling)"),
    # Every held-out task has the same number of instances, so an instance average equals the
    # per-task one; the paper's Trainer averages over answer tokens, which can differ: what would
    # make the loss an artefact is NFT winning under that average.
    rules.explanation("An averaging artefact", "NFT beats RT under the paper's token-weighted average",
                      over_tokens, "<", contrast="NFT - RT, token-weighted (every answer token and EOS weighs the same)"),
    rules.explanation("Stopping carries the gap", "NFT - RT is larger on the EOS than on the answer's own tokens",
                      stats.gap_difference(by_measure["EOS alone"], by_measure["answer tokens, EOS excluded"], "NFT", "RT", point,
                                           level=ONE_SIDED),
                      ">", contrast="(NFT - RT, EOS) - (NFT - RT, answer tokens)"),
    rules.explanation("Answer-length mismatch", "held-out tasks whose answers differ more from NFT's first answers lose more",
                      slopes["mismatch"], ">", contrast="coefficient of the mismatch (per factor of 2)"),
    rules.explanation("Shorter-answer tasks lose more", "held-out tasks with shorter answers lose more",
                      slopes["held-out length"], "<", contrast="coefficient of log2 answer length"),
    # A gentler regime can move every loss less and so shrink every gap: the test is the sign of
    # NFT - RT under it (does the paper's order come back?), not a smaller gap.
] + [rules.explanation(f"The regime: {name}", f"NFT beats RT under {name}", gap("NFT", "RT", table, level=ONE_SIDED), "<",
                       contrast=f"NFT - RT under {name}")
     for name, table in setup_tasks.items() if name != "profile"]
other_table = pd.DataFrame(other)
display(Markdown("What each explanation predicts: " + "; ".join(f"*{row['explanation']}*: {row['prediction']}"
                                                               for row in other) + ". Each contrast over the task "
                 "splits (its unit in the contrast column), with its one-sided 95% bounds and the one-sided p in "
                 "the predicted direction:"))
display(plots.evidence_table(other_table, ["explanation", "contrast", "predicted", "estimate", "lo", "hi",
                                           "p (one-sided)", "evidence"]))
display(Markdown(f"Of these {len(other_table)} explanations: " + ", ".join(
    f"{n} {word}" for word, n in other_table.evidence.value_counts().items()) + " (not adjusted for multiplicity)."))

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (chapter 4's NFT and RT runs included; a rerun reads them back):

# %%
display(Markdown(compare.run_costs(orders, *setups.values())))

# %% [markdown]
# ## What we saw

# %%
lines = [
    f"The gap to explain, NFT - RT at step {point}: {findings.fmt(to_explain)}.",
    "Against RT at the same step: " + "; ".join(f"{o} - RT {findings.fmt(gap(o, 'RT'))}"
                                                               for o in LABELS if o not in ("RT", "NFT")) + ".",
    f"On the answer tokens alone (EOS excluded) NFT - RT is {findings.fmt(measure_gaps['answer tokens, EOS excluded'])}; "
    f"on the EOS alone {findings.fmt(measure_gaps['EOS alone'])}.",
]
for name, g in parts.groupby("decomposition", sort=False):
    lines.append(f"Split by {name}: " + "; ".join(f"{r.contrast} {r.measured} ({r.evidence})" for r in g.itertuples())
                 + ".")
# the three splits are alternatives over the same gap, not separate evidence: counted apart
for what, table in (("Of the parts of the three splits", parts), ("Of the other evidence", other_table)):
    counts = table.evidence.value_counts()
    lines.append(f"{what} ({len(table)}): " + "; ".join(
        f"{evidence} {counts[evidence]} ({'; '.join(table[table.evidence == evidence].explanation)})"
        for evidence in rules.EVIDENCE if evidence in counts) + ".")
display(Markdown("\n".join("- " + line for line in lines)))
