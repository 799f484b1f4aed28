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
# # Test-centric Multi-turn Arrangement and its rounds (E6, E8)
#
# TMA builds the training list around the held-out points instead of scoring each instance once:
# in **round** k, every held-out instance picks its nearest training instance not yet taken
# (cosine over MiniLM embeddings of the first turn), so each round brings one more layer of
# neighbours of *every* test point. The paper's five arrangements:
#
# - **MIN**: the nearest rounds; **MAX**: the same with the farthest instance per test point;
# - **NFT** (its `min-max` file): the nearest rounds for half the budget, then the farthest rounds
#   *reversed* (moderately far to farthest); **FFT** (`max-min`): the farthest rounds for half the
#   budget, then the nearest rounds reversed; **RT**: NFT's list shuffled. NFT, FFT and RT hold the
#   same instances.
#
# The paper reports NFT < RT < FFT inside the near half (its plot stops at step ~890 of the ~940
# that half lasts), NFT's loss still falling while RT's flattens, and FFT's loss dropping once it
# reaches the near half. Then (E8) it trains from scratch on the instances of rounds [0, 5),
# [5, 10), ... separately: earlier rounds, lower loss.
#
# **Run as the paper ran it.** TMA draws from a pool larger than the other chapters' training list
# (`tma_pool_per_task` instances of every training task; the paper drew from all of them); the
# budget is sized so that NFT's near half spans at least `tma_near_rounds` rounds on every split;
# each run makes one pass over the whole selection, so NFT, FFT and RT train on exactly the same
# instances under the same schedule (checked below from the batches each model received); the
# pool is shuffled once before TMA indexes it, so inside a round the picks do not come sorted by
# task name. NFT / FFT / RT run on every split of `split_seeds` (RT one shuffle per split); on the
# first, they and MIN and MAX train the whole pass (the picture of the five orders below); on the
# others, NFT / FFT / RT stop at the step where NFT leaves its near half, still under the whole
# pass's schedule: this chapter reads them there and before (the verdict says where its reading
# point lies against the near half), and what a run does up to a step does not depend on where it
# stops (tested). The round
# groups run on every split of `side_split_seeds`.
#
# **What it takes to run**: see the table at the end of the chapter ("What it took"); minutes once
# the runs are stored.
#
# Rerun with other parameters, for example:
# `papermill _build/cpu/book/06_tma.ipynb out.ipynb -p tma_near_rounds 4 -p round_starts "[0,5,10,15]"`.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2 (`max_steps` for chapter 4's runs read back here; every TMA run makes one pass over its selection) |
# | `split_seeds` | task splits NFT / FFT / RT are repeated on |
# | `side_split_seeds` | task splits the round groups run on |
# | `arrangement_seeds` | RT's shuffle: the first of them on every split |
# | `tma_pool_per_task` | instances of each training task TMA may pick (the split's `pool_per_task`: the first `train_per_task` of them are the other chapters' list, and the held-out set is theirs whatever the pool) |
# | `tma_near_rounds` | NFT's near half spans at least this many rounds on every split; the budget follows |
# | `round_width`, `round_starts` | E8: one run on the instances of TMA rounds [s, s + round_width) for each start s |

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
side_split_seeds = [0, 1, 2]
tma_pool_per_task = 100
tma_near_rounds = 8
round_width = 5
round_starts = [0, 10, 20]

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, rules, stats
from zsg_core.arrange import TMA_POOL_SEED
from zsg_core.embed import Encoder, embed_records, map_2d
from zsg_core.config import run_params
from zsg_core.runs import run_split
from zsg_core.similarity import min_avg_distance

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())
plan, runs, groups, e4 = experiments.chapter_runs("06_tma", globals())  # sized on every split either part uses; e4: chapter 4's
first = split_seeds[0]
ORDERS = ["NFT", "RT", "FFT", "MIN", "MAX"]


def layout_facts(seed: int) -> dict:
    """Where NFT's near half ends and FFT's begins, from the plan's layouts (the ones the runs train on)."""
    return {"split": seed, "pool": plan.pool[seed], "near rounds": plan.near_rounds[seed],
            "selected": plan.selected[seed]["tma-nft"], "steps": -(-plan.selected[seed]["tma-nft"] // batch_size),
            "near half ends at step": plan.near_end[seed] // batch_size,
            "FFT reaches it at step": plan.fft_near_start[seed] // batch_size + 1,
            "trained to step": int(runs["by_split"][("NFT", seed)].batches.step.max())}


layouts = pd.DataFrame([layout_facts(s) for s in split_seeds]).set_index("split")
whole = [s for s in split_seeds if layouts.loc[s, "trained to step"] == layouts.loc[s, "steps"]]  # one whole pass
same = compare.same_instances({k: r for k, r in runs["by_split"].items() if k[1] in whole}, ["NFT", "FFT", "RT"])

# %% [markdown]
# ## The selection on each split
#
# The budget is the same on every split; how many rounds the near half spans, how many instances
# the two halves select together (each half keeps its last round whole, as the paper's code does,
# and an instance both halves pick counts once, so this differs from the budget), the step at
# which NFT leaves its near half and FFT enters it, and the step NFT, FFT and RT trained to:

# %%
display(Markdown(f"Pool: up to {tma_pool_per_task} instances per training task, shuffled once (seed {TMA_POOL_SEED}); "
                 f"budget {plan.budget:,}. Trained the whole pass on split{'s' * (len(whole) > 1)} {', '.join(map(str, whole))}, where NFT, "
                 f"FFT and RT received the same instances (from their batches) on {sum(same.values())} of {len(same)}; on "
                 f"the other {len(split_seeds) - len(whole)}, until NFT leaves its near half. Sizing it embeds {sum(plan.pool.values()):,} pool "
                 f"instances over {len(plan.pool)} splits (once: cached after) and runs Algorithm 1 over each pool."))
display(plots.table(layouts, index=True))
display(Markdown(f"Over the {len(layouts)} splits, the near half spans {layouts['near rounds'].min()} to "
                 f"{layouts['near rounds'].max()} rounds, and NFT leaves it between steps "
                 f"{layouts['near half ends at step'].min()} and {layouts['near half ends at step'].max()}."))

# %% [markdown]
# ## The five arrangements (first split)
#
# The dotted lines mark where NFT's near half ends and where FFT's list reaches its near half.

# %%
on_first = {k: v for k, v in runs["by_split"].items() if k[1] == first} \
    | {k: v for k, v in runs["extremes"].items() if k[1] == first}
curves_first = compare.loss_curves(on_first)
fig, ax = plt.subplots(figsize=(7.5, 3.8))
plots.band_plot(curves_first, ax, order=[o for o in ORDERS if o in set(curves_first.label)],
                title=f"TMA, split {first} (budget {plan.budget:,})")
for step in layouts.loc[first, ["near half ends at step", "FFT reaches it at step"]]:
    ax.axvline(step, ls=":", color="grey")
plots.save(fig, "06_tma_orders")
plt.show()
table = curves_first.groupby(["label", "step"]).loss.mean().unstack(0).dropna()  # the steps every order was evaluated at
shown = [o for o in ORDERS if o in table]
final = table.iloc[-1][shown].sort_values()
tolerance = 0.005 * (table.max().max() - table.min().min())  # closer than this, two lines draw as one
coincide = []
for i, a in enumerate(shown):
    for b in shown[i + 1:]:
        close = ((table[a] - table[b]).abs() <= tolerance) & (table.index > 0)  # at step 0 all are one model
        stretch = (close != close.shift()).cumsum()[close]  # one number per stretch of consecutive evaluations
        spans = [f"{g.index[0]}-{g.index[-1]}" if len(g) > 1 else str(g.index[0]) for _, g in stretch.groupby(stretch)]
        if spans:
            coincide.append(f"{b} on {a} at step{'s' * (len(close[close]) > 1)} {', '.join(spans)}")
display(Markdown(f"Dotted: step {layouts.loc[first, 'near half ends at step']} (NFT leaves its near half) and step "
                 f"{layouts.loc[first, 'FFT reaches it at step']} (FFT reaches it). At step {table.index[-1]}, "
                 f"{final.index[0]} is lowest ({final.iloc[0]:.3f}) and {final.index[-1]} highest ({final.iloc[-1]:.3f}). "
                 + ("Coinciding lines (closer than 0.5% of the loss range shown; the later order is drawn on top, the earlier "
                    "shows between its dashes): "
                    + "; ".join(coincide) + "." if coincide else "No two orders coincide after step 0.")))
display(plots.table(table.rename_axis(columns=None), index=True))  # a row per step: too many steps for columns
display(Markdown(f"Mean loss on split {first}: {findings.lowest_by_step(table[shown])}."))

# %% [markdown]
# ## The gaps, over task splits
#
# As in chapter 4: each pair's difference per split (mean over its held-out tasks), with a 95%
# t-interval over splits. The dotted line marks the earliest end of the near half over the splits.

# %%
tasks_split = compare.task_curves(runs["by_split"])
near_end = int(layouts["near half ends at step"].min())
common_steps = sorted(set.intersection(*(set(g.step) for _, g in tasks_split.groupby("split"))))
pairs = [("NFT", "RT"), ("RT", "FFT"), ("NFT", "FFT")]
gap_split = stats.split_gaps(tasks_split[tasks_split.step.isin(common_steps)], pairs)
fig = plots.split_and_blocked(gap_split, None, mark=near_end)
plots.save(fig, "06_tma_gaps")
plt.show()
gap_table = gap_split.pivot_table(index="step", columns="comparison", values="diff")[[f"{a} - {b}" for a, b in pairs]]
at_mark = gap_table.loc[:near_end].iloc[-1]
display(Markdown(f"At step {gap_table.loc[:near_end].index[-1]}, the last evaluation up to the dotted line, mean over "
                 f"{gap_split.n.max()} splits: " + ", ".join(f"{c} {findings.signed(v)}" for c, v in at_mark.items())
                 + " (below 0: the first order's loss is lower)."))
display(plots.table(gap_table.rename_axis(columns=None), index=True))  # a row per step, as above
display(Markdown(f"Over the evaluations after step 0, the mean gap is above 0 at: {findings.above_zero_by_step(gap_table)} "
                 "(above 0: the first order's loss is higher)."))

# %% [markdown]
# ## Against chapter 4, like with like
#
# "TMA changes nearest-first's gap to random order" would set this chapter's NFT - RT against chapter 4's. The
# two differ in more than the arrangement, so first what can be compared for free: both are
# evaluated at chapter 4's reading point, so per split the difference of the two gaps there
# (`stats.gap_difference`, splits as the unit). Then what still differs, per split:

# %%
tasks_e4 = compare.task_curves({k: v for k, v in e4.items() if k[0] in ("NFT", "RT")})
e4_point = findings.relative_step(findings.paper_fraction("E4"), compare.epoch_steps(e4[("NFT", first)]),
                                  sorted(set(tasks_e4.step) & set(common_steps)))
like_with_like = stats.gap_difference(tasks_split, tasks_e4, "NFT", "RT", e4_point)
remaining = pd.DataFrame([{
    "split": s,
    "RT's list: far (max-round) share": 1 - plan.near_end[s] / plan.selected[s]["tma-nft"],
    "pool, E6 (instances)": plan.pool[s], "training list, E4": e4[("NFT", s)].manifest["train_instances"],
    "schedule horizon, E6 (steps)": runs["by_split"][("NFT", s)].manifest["epoch_steps"],
    "schedule horizon, E4": e4[("NFT", s)].manifest["epoch_steps"],
    "instances seen by the step, both": e4_point * batch_size} for s in split_seeds]).set_index("split")
display(Markdown(f"At step {e4_point}, (NFT - RT under TMA) - (NFT - RT by WSD, chapter 4): "
                 f"{findings.fmt(like_with_like)}. What this difference cannot separate: E6's RT is a shuffle of the "
                 f"min-max selection, {remaining.iloc[:, 0].mean():.0%} of it from the far (max) rounds on average, where "
                 f"E4's RT is the whole list's; E6 draws from a pool of {remaining.iloc[:, 1].mean():,.0f} instances per "
                 f"split against E4's {remaining.iloc[:, 2].mean():,.0f}; and its cosine schedule spans one pass of "
                 f"{remaining.iloc[:, 3].min()}-{remaining.iloc[:, 3].max()} steps against E4's "
                 f"{remaining.iloc[:, 4].min()}-{remaining.iloc[:, 4].max()}. Both have seen the same number of "
                 f"instances ({e4_point * batch_size:,}) by the step. So any difference belongs to the two experiments as "
                 f"wholes, not to TMA's arrangement alone."))
display(plots.table(remaining, index=True))
display(Markdown(f"Per split, the far share of E6's RT list runs from {remaining.iloc[:, 0].min():.0%} to "
                 f"{remaining.iloc[:, 0].max():.0%}; E6's pool is {(remaining.iloc[:, 1] / remaining.iloc[:, 2]).mean():.1f} "
                 "times E4's training list on average."))

# %% [markdown]
# ## Rounds (E8): training on one group of rounds at a time
#
# TMA's min rounds over the whole pool, grouped; one run from the base model on each group, in
# round order, on every side split. Every group trains on its first instances up to the same
# count (the smallest group's, to a whole batch), so all train the same steps under the same
# schedule. Before the losses, how close each group is to the held-out set: the mean cosine
# similarity (MiniLM, first turn) of each of its instances to its nearest held-out instance, and
# the share of its instances whose task family also has a held-out task (siblings).

# %%
labels = [experiments.round_label(s, round_width) for s in round_starts]
encoder = Encoder()


def split_vectors(seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """(training id -> row, training embeddings, held-out embeddings) of a side split's pool, once
    per split: every round group of the split reads the same (cached on disk by the plan)."""
    split = run_split(groups[(labels[0], seed)].config)
    return ({r.id: i for i, r in enumerate(split.train)}, embed_records(split.train, "first-turn", encoder),
            embed_records(split.test, "first-turn", encoder))


vectors = {s: split_vectors(s) for s in side_split_seeds}


def group_facts(label: str, seed: int) -> dict:
    run = groups[(label, seed)]
    position, x, t = vectors[seed]
    distance, _ = min_avg_distance(x[[position[i] for i in run.batches.id.unique()]], t)  # the paper's d = -cosine
    return {"group": label, "split": seed, "cosine to the nearest held-out": float(-distance.mean()),
            "sibling share": compare.sibling_share(run, int(run.batches.step.max()))}


closeness = pd.DataFrame([group_facts(label, s) for label in labels for s in side_split_seeds])
closeness_mean = closeness.groupby("group", sort=False)[["cosine to the nearest held-out", "sibling share"]].mean().reindex(labels)
display(Markdown("Mean over splits, from the earliest group to the latest: cosine to the nearest held-out instance "
                 + ", ".join(f"{v:.3f}" for v in closeness_mean["cosine to the nearest held-out"]) + "; sibling share "
                 + ", ".join(f"{v:.0%}" for v in closeness_mean["sibling share"]) + "."))
display(plots.table(closeness_mean, index=True, formats={"sibling share": "{:.0%}"}))
nearest_cosine = closeness_mean["cosine to the nearest held-out"]
display(Markdown(f"Closest to the held-out set: {nearest_cosine.idxmax()} ({nearest_cosine.max():.3f}); farthest: "
                 f"{nearest_cosine.idxmin()} ({nearest_cosine.min():.3f})."))

# %%
curves_rounds = compare.loss_curves(groups)
fig, ax = plt.subplots(figsize=(7.5, 3.8))
plots.band_plot(curves_rounds, ax, order=labels, title=f"One run per group of TMA rounds ({plan.group_size} instances each)")
plots.save(fig, "06_rounds")
plt.show()
rounds_table = curves_rounds.groupby(["label", "step"]).loss.mean().unstack(0)[labels]
display(Markdown(f"At step {rounds_table.index[-1]}, mean over {len(side_split_seeds)} splits: "
                 + ", ".join(f"{label} {v:.3f}" for label, v in rounds_table.iloc[-1].items())
                 + f"; {rounds_table.iloc[-1].idxmin()} lowest."))
display(plots.table(rounds_table.rename_axis(columns=None), index=True))  # a row per step, as above
display(Markdown(f"Mean loss over {len(side_split_seeds)} splits: {findings.lowest_by_step(rounds_table)}."))

# %% [markdown]
# ## Where the rounds reach, in a picture
#
# UMAP of the MiniLM embeddings (first turn, cosine) of the first side split's pool and its
# held-out instances (crosses): the instances each group of rounds picked are coloured (by the
# earliest group, where several picked one, and drawn earliest on top), the rest grey. If the rounds
# work as designed, early rounds sit on top of the crosses and later ones further out.

# %%
split = run_split(groups[(labels[0], side_split_seeds[0])].config)
x = embed_records(split.train, "first-turn", encoder)  # cached by the plan
t = embed_records(split.test, "first-turn", encoder)
kind = np.full(len(x), "not picked", dtype=object)
for s, label in reversed(list(zip(round_starts, labels))):  # the earliest group that picked it names it
    for r in plan.min_rounds[side_split_seeds[0]][s: s + round_width]:
        kind[r] = label
xy = map_2d(np.vstack([x, t]))
points = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "kind": list(kind) + ["held-out"] * len(t)})
fig = plots.rounds_map(points, labels)
plots.save(fig, "06_rounds_umap")
plt.show()
counts = points.kind.value_counts()
display(Markdown(f"Split {side_split_seeds[0]}: {counts['held-out']} held-out instances (crosses); "
                 + ", ".join(f"{label} picked {counts.get(label, 0)}" for label in labels)
                 + f"; {counts.get('not picked', 0)} of the pool's {len(x)} not picked (grey)."))

# %% [markdown]
# ## The verdicts, part by part
#
# TMA's NFT < RT < FFT, judged as chapter 4's, at the paper's reading point (quoted with the
# verdict) at the same fraction of the shortest epoch here (the paper's lies inside its near
# half; where ours lies is said with the verdict); and E8's "earlier rounds, lower loss", one part per pair of
# neighbouring groups, at the groups' last step, over the side splits.

# %%
epoch = int(layouts["steps"].min())
paper = findings.PAPER["E6"]
point = findings.relative_step(findings.paper_fraction("E6"), epoch, common_steps)
tasks_rounds = compare.task_curves(groups)
last = int(tasks_rounds.step.max())
parts = {
    "E6": dict(experiment="E6", paper=paper["text"],
               claim="TMA nearest-first lowers held-out loss: NFT < RT < FFT (claim 5)",
               point=f"step {point} ({point / epoch:.0%} of the shortest epoch, {epoch} steps; "
                     f"{'inside' if point <= near_end else 'after'} the near half, which ends at step {near_end} or later)"),
    "E8": dict(experiment="E8", paper=findings.PAPER["E8"]["text"],
               claim="Data from earlier TMA rounds gives lower held-out loss",
               point=f"step {last} (every group's last)")}
successive = list(zip(labels, labels[1:]))  # E8: each group of rounds against the next
gap_curves = gap_split.assign(experiment="E6", setting="random splits")

# %% tags=["verdict"]
display(Markdown(rules.stated("order")))
found = rules.order_parts(tasks_split, point, ("NFT", "RT", "FFT"),
                          **parts["E6"])
found += rules.order_parts(tasks_rounds, last, labels, pairs=successive,
                           **parts["E8"])
plots.verdict_table(
    found, ["experiment", "part", "measured", "p", "verdict"])

# %% [markdown]
# The verdicts above go to the findings table (the last chapter), with the curves they were read on:

# %% tags=["record"]
findings.record("06_tma", params, found, gap_curves)

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (a rerun of this chapter reads them back):

# %%
display(Markdown(compare.run_costs(runs, groups)))

# %% [markdown]
# ## What we saw

# %%
inside = gap_split[(gap_split.step > 0) & (gap_split.step <= near_end)].groupby("comparison")["diff"].mean()
mean_first = curves_first.groupby(["label", "step"]).loss.mean().unstack(0)
fft_near = int(layouts.loc[first, "FFT reaches it at step"])
lines = [
    f"The budget of {plan.budget:,} gives a near half of {min(plan.near_rounds.values())}-{max(plan.near_rounds.values())} "
    f"rounds over the splits; one pass is {layouts.steps.min()}-{layouts.steps.max()} steps. The paper's step "
    f"{paper['step']} of {paper['epoch']:,} is step {point} here. Paper: {paper['text']}.",
    f"At step {point}, over {len(split_seeds)} task splits: "
    + "; ".join(f"{f.part}: {f.measured} → **{f.verdict}**" for f in found if f.experiment == "E6") + ".",
    f"Averaged over every evaluation inside the near half (after step 0, up to step {near_end}): "
    + ", ".join(f"{c} {findings.signed(v)}" for c, v in inside.items()) + ".",
]
if {"MAX", "FFT"} <= set(mean_first):  # the paper saw FFT hidden under MAX, then falling away
    before = [s for s in mean_first.index if 0 < s < fft_near]
    after = [s for s in mean_first.index if s >= fft_near]
    gap = mean_first.FFT - mean_first.MAX
    lines.append(f"FFT reaches its near half at step {fft_near} (split {first}). FFT - MAX averaged "
                 f"{findings.signed(gap.loc[before].mean())} before it and "
                 f"{findings.signed(gap.loc[after].mean())} from then on.")
final = tasks_rounds[tasks_rounds.step == last].groupby("label").loss.mean().reindex(labels)
lines.append(f"Rounds (E8), loss at step {last} (mean over {len(side_split_seeds)} splits): "
             + ", ".join(f"{k} {v:.3f}" for k, v in final.items()) + "; "
             + "; ".join(f"{f.part}: **{f.verdict}**" for f in found if f.experiment == "E8")
             + f". Paper: {findings.PAPER['E8']['text']}.")
display(Markdown("\n".join("- " + line for line in lines)))
