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
# # Why nearest-first loses here
#
# Chapter 4 found the paper's central ordering reversed at this scale: nearest-first by WSD (NFT)
# ends *above* random order (RT) in held-out loss, on every task split. This chapter asks why. Each
# experiment below separates two explanations, on the same training list and task splits as
# chapter 4, and each explanation predicts the sign of one contrast; the chapter ends with one
# table that ranks the explanations by the evidence.
#
# 1. **Concentration vs similarity.** WSD's single global score can put one task family first
#    (chapter 4: NFT's first steps are mostly one family). A *coverage-balanced* nearest-first
#    order, TMA's nearest rounds over the same list (every held-out point gets its nearest
#    remaining instance in turn, embedded as WSD embeds), keeps similarity and drops the
#    concentration. If it recovers the gain, the failure is concentration; if it loses to RT too,
#    nearness itself hurts (SIFT, Hübotter et al. 2024: nearest neighbours are redundant).
# 2. **Nearest instances vs their family.** NFT's own sequence of task families, each position
#    filled with a *random* instance of that family: the same family mix at every step, without
#    the nearest instances. Does being the nearest matter, or only being from that family?
# 3. **Regime.** The profile trains the top 4 of 30 layers at lr 3e-4, and held-out loss flattens
#    within ~20 steps. The same NFT / FFT / RT under other set-ups (`regimes`): a 10x lower lr in
#    the default profile; every layer trained, and a base (not instruction-tuned) model, in the
#    `cpu-full` profile, whose runs cost several times more and so stop at the reading point
#    (step 30; the first 30 steps of the epoch's schedule are those of a longer run).
# 4. **From the stored runs** (no training): does the gap follow how concentrated NFT's first
#    steps are; is it carried by held-out tasks with or without a training sibling; does the
#    paper's average over answer tokens tell another story than the per-task average? (Every
#    held-out task has the same number of instances here, so an average over instances is the
#    per-task one; over tokens, tasks with longer answers weigh more.)
#
# **What it takes to run**: see "What it took" at the end; on the cpu profile 2 new runs per task
# split for experiments 1-2 (chapter 4's NFT and RT runs are read back) and 3 per task split for
# each regime, on the same splits: 25 runs of 1-3 minutes each. Minutes once the runs are stored.
# `cpu-full`'s two slow regimes add 15 runs each
# (measured on 2 AVX512 cores, bf16, 2026-11-30 and 2026-12-01: every layer trained, 30 steps,
# 3.0-6.2 minutes a run alone, about half of it the six whole-model evaluations; Gemma-3-270m base,
# 30 steps, top 4 of 18 layers trained: 1.6-2.3 minutes a run, its frozen layers cached by the
# first run on a split). This chapter alone on `cpu-full` from a store holding only those slow
# runs of three splits: 106 minutes (2026-12-01, its 52 new runs, in two sittings).
#
# Rerun with other parameters, for example the slow regimes:
# `make book PROFILE=cpu-full`, or
# `papermill _build/cpu/book/07_nearest_first.ipynb out.ipynb -p regimes '{"lr / 3": {"lr": 1.0e-4}}'`.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2 (`split_seed` is unused here: `split_seeds` says which splits) |
# | `split_seeds` | task splits every experiment runs on (chapter 4's): a regime's verdict is over the same splits as the others' |
# | `arrangement_seeds` | the seeded orders' shuffle (RT, the family-matched order): the first of them |
# | `sibling_steps` | the early window (steps) over which what each order received is counted |
# | `regimes` | name -> run parameters that differ from the profile's (lr, frozen_layers, model, ...) |

# %% tags=["parameters"]
model = "smollm2-135m"
split_seed = 0
test_tasks = 36
train_per_task = 20
test_per_task = 5
max_len = 512
lr = 3.0e-4
batch_size = 8
max_steps = 60
frozen_layers = 26
arrangement_seeds = [0, 1, 2]
split_seeds = [0, 1, 2, 3, 4]
sibling_steps = 20
regimes = {"lr / 10": {"lr": 3.0e-5}}

# %% tags=["hide-cell"]
import math

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, rules, stats
from zsg_core.runs import run_params

plots.use_style()

# %% tags=["hide-output"]
params = run_params(globals())
orders, setups = experiments.chapter_runs("07_nearest_first", globals())
tasks = compare.task_curves(orders)
curves = compare.loss_curves(orders)
epoch = compare.epoch_steps(orders[("NFT", split_seeds[0])])
point = findings.relative_step(findings.paper_fraction("E4"), epoch, sorted(tasks.step.unique()))
LABELS = list(experiments.NEAREST_FIRST_ORDERS)


def gap(a: str, b: str, table: pd.DataFrame = tasks, step: int = point) -> stats.Estimate:
    """a - b at `step`: per split the mean over its held-out tasks, the estimate over splits."""
    return stats.over_units(stats.split_means(table, a, b, step)["diff"])


# %% [markdown]
# ## The gap to explain
#
# Chapter 4's reading point (the paper's step 100 of 1,797 at the same fraction of our epoch):

# %% tags=["hide-input"]
to_explain = gap("NFT", "RT")
display(Markdown(f"The gap to explain: NFT - RT {findings.fmt(to_explain)} at step {point} "
                 f"(positive: nearest-first is worse; RT here is each split's first shuffle, where chapter 4 "
                 f"averages the first split's {len(arrangement_seeds)} shuffles)."))

# %% [markdown]
# ## Experiments 1 and 2: the same list in four orders
#
# Mean held-out loss over the task splits (the band spans them), and what each order received in
# its first `sibling_steps` steps: the family that contributed most and its share, averaged over
# splits.

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.8))
plots.band_plot(curves, ax, order=LABELS, title=f"Four orders of the same list, {len(split_seeds)} task splits")
ax.axvline(point, ls=":", color="grey")
plots.save(fig, "07_orders")
plt.show()
seen = pd.DataFrame([{"order": label, "split": seed, **compare.leading_family(r, sibling_steps)}
                     for (label, seed), r in orders.items()])
seen.groupby("order", sort=False)[["its share", "families"]].mean().reindex(LABELS).round(2)

# %% [markdown]
# ## Experiment 3: other regimes
#
# NFT - RT and FFT - RT per step under each set-up, with the 95% interval over the task splits. A
# gentler set-up moves every loss less and so shrinks every gap; what would show that the regime
# is to blame is the paper's order coming back, NFT below RT, under it.

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
fig.tight_layout()
plots.save(fig, "07_regimes")
plt.show()
pd.DataFrame({name: {f"{a} - {b}": findings.fmt(gap(a, b, table)) for a, b in (("NFT", "RT"), ("FFT", "RT"))}
              for name, table in setup_tasks.items()}).T

# %% [markdown]
# ## Experiment 4: from the stored runs
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
with_sibling = {s: compare.held_out_with_sibling(orders[("NFT", s)]) for s in split_seeds}
has_sibling = pd.Series([t in with_sibling[s] for s, t in zip(tasks.split, tasks.task)], index=tasks.index)
by_split.set_index("split").assign(**{"held-out tasks with a training sibling": pd.Series(
    {s: len(with_sibling[s]) for s in split_seeds})}).round(3)

# %% [markdown]
# ## The explanations, ranked

# %% tags=["hide-input"]
display(Markdown(rules.RULES["explanation"]))
over_tokens = gap("NFT", "RT", compare.loss_curves(orders, weight="tokens"))
rows = [
    rules.explanation("Concentration: one family first", "coverage-balanced nearest-first beats WSD-NFT",
                      gap("balanced", "NFT"), "<", contrast="balanced - NFT"),
    rules.explanation("Nearness itself (redundant neighbours)", "coverage-balanced nearest-first still loses to RT",
                      gap("balanced", "RT"), ">", contrast="balanced - RT"),
    rules.explanation("The nearest instances within the families", "NFT loses to random instances of its own families",
                      gap("NFT", "family"), ">", contrast="NFT - family"),
    rules.explanation("The families NFT puts first", "NFT's family mix with random instances loses to RT",
                      gap("family", "RT"), ">", contrast="family - RT"),
    rules.explanation("Concentration predicts the gap", "splits where one family leads more have a larger gap",
                      stats.correlation(by_split["leading share"], by_split["NFT - RT"]), ">",
                      contrast="Pearson r (leading share, NFT - RT)"),
    rules.explanation("Tasks far from NFT's head suffer", "NFT - RT is larger on held-out tasks without a training sibling",
                      stats.gap_difference(tasks[~has_sibling], tasks[has_sibling], "NFT", "RT", point), ">",
                      contrast="(NFT - RT, no sibling) - (NFT - RT, sibling)"),
    # Every held-out task has the same number of instances, so an instance average equals the
    # per-task one; the paper's Trainer averages over answer tokens, which can differ. As with a
    # regime, what would make the loss an artefact is NFT winning under that average.
    rules.explanation("An averaging artefact", "NFT beats RT under the paper's average over answer tokens",
                      over_tokens, "<", contrast="NFT - RT over answer tokens"),
    # A gentler regime moves every loss less, so it shrinks every gap: the test is the sign of
    # NFT - RT under it (does the paper's order come back?), not a smaller gap.
] + [rules.explanation(f"The regime: {name}", f"NFT beats RT under {name}", gap("NFT", "RT", table), "<",
                       contrast=f"NFT - RT under {name}")
     for name, table in setup_tasks.items() if name != "profile"]
ranked = rules.rank_explanations(rows)
ranked[["explanation", "prediction", "measured", "p", "evidence"]].style.hide(axis="index").format(precision=3)

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (chapter 4's NFT and RT runs included; a rerun reads them back):

# %% tags=["hide-input"]
display(Markdown(compare.run_costs(orders, *setups.values())))

# %% [markdown]
# ## What we saw

# %% tags=["hide-input"]
share = seen.groupby("order").mean(numeric_only=True)["its share"]
lines = [
    f"The gap to explain, NFT - RT at step {point}: {findings.fmt(to_explain)}.",
    "The leading family's share of the first " + f"{sibling_steps} steps: "
    + ", ".join(f"{o} {share[o]:.0%}" for o in LABELS) + ".",
    f"Averaged over answer tokens, as the paper's Trainer reports held-out loss, NFT - RT is "
    f"{findings.fmt(over_tokens)}: longer answers weigh more there.",
    "Against RT at the same step: " + "; ".join(f"{o} - RT {findings.fmt(gap(o, 'RT'))}" for o in LABELS if o != "RT") + ".",
]
for evidence in rules.EVIDENCE:
    names = ranked[ranked.evidence == evidence].explanation.tolist()
    if names:
        lines.append(f"{evidence.capitalize()} ({len(names)}): " + "; ".join(names) + ".")
display(Markdown("\n".join("- " + line for line in lines)))
