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
# # Permutations and similarity measures: does what the model has seen decide when a task improves? (E2, E3)
#
# The paper's preliminary experiment trains on the same instances in three orders: **round-robin**
# (one instance of every task per sweep, so each batch mixes many tasks), **cluster** (each task's
# instances in one block) and **random**. Under cluster order the loss of some held-out tasks
# drops *suddenly*, at the step where a particular block arrives. The paper then looks for a
# measure of "how similar is everything seen so far to this held-out task" that moves with those
# drops, compares nine (cosine and Euclidean Avg / Min / Max / Centroid, and a bigram KL), and
# settles on the minimum and average distance, combined later as the Weighted Similarity
# Distance (WSD).
#
# The paper judged the measures by eye on a few tasks. Here every held-out task, every order and
# every evaluation window counts: does a measure's change over a window predict the loss change
# over the same window, and does it do better than chance and than the other measures? Both
# claims are judged over task splits (`side_split_seeds`: cluster and random order on each), since
# one split's tasks are not independent (a BIG-bench family can drop together when its block arrives).
#
# **What it takes to run**: on the cpu profile, 4 runs that do not generate besides chapter 2's,
# and the prefix measures of every run on three splits (seconds); "What it took" at the end gives
# this build's time. Seconds once the runs are stored.
#
# Rerun with other parameters, for example:
# `papermill _build/cpu/book/03_permutations.ipynb out.ipynb -p arrangement_seeds "[0,1,2]" -p model gemma-270m`.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2; the random-order runs are chapter 2's runs, read back from the run store |
# | `arrangement_seeds` | shuffles of the random order on the split of `split_seed` (round-robin and cluster are fixed orders: one run each) |
# | `side_split_seeds` | task splits with a cluster and a random run each: E2 and E3 are judged over them |
# | `generate_steps`, `generate_protocol`, `generate_per_task`, `max_new_tokens`, `reward_model` | chapter 2's generation settings, so its random runs are reused here rather than trained again (generating does not change training) |
# | `sudden_tasks` | how many held-out tasks with the sharpest cluster-order drop to show |
# | `n_boot` | bootstrap resamples (over held-out tasks) for the intervals of the first split's measure table |

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
side_split_seeds = [0, 1, 2]
generate_steps = [0, 4, 10, 20, 40, 60]
generate_protocol = "both"
generate_per_task = 1
max_new_tokens = 24
reward_model = None
sudden_tasks = 3
n_boot = 300

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, predict, rules
from zsg_core.config import run_params

from zsg_core.runs import run_split

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())
ORDERS = ["round-robin", "random", "cluster"]
runs = experiments.chapter_runs("03_permutations", globals())
results = runs["first"]  # the split of `split_seed`: every order
split = run_split(next(iter(results.values())).config)  # the runs' own split
curves = compare.loss_curves(results)
per_task = compare.task_curves(results)

# %% [markdown]
# ## Averaged held-out loss under the three orders
#
# The same training instances, weights and hyperparameters; only the order differs. The band spans
# the random shuffles.

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
plots.band_plot(curves, ax, order=ORDERS, title="Held-out loss: round-robin vs cluster vs random")
plots.save(fig, "03_orders")
plt.show()
mean = curves.groupby(["label", "step"]).loss.mean().unstack(0)[ORDERS]
final = mean.iloc[-1].sort_values()
display(Markdown(f"At step {mean.index[-1]}, {final.index[0]} order's mean loss is the lowest ({final.iloc[0]:.3f}), "
                 f"{final.iloc[1] - final.iloc[0]:.3f} below {final.index[1]} and {final.iloc[2] - final.iloc[0]:.3f} "
                 f"below {final.index[2]}."))
display(plots.table(mean.rename_axis(columns=None), index=True))  # a row per step: too many steps for columns
display(Markdown(f"Mean loss: {findings.lowest_by_step(mean)}."))

# %% [markdown]
# ## Sudden drops under cluster order
#
# Held-out losses can fall in the first steps whatever the order, so a drop counts as
# *sudden* by how much more a task's loss fell under cluster order than under random order (mean
# over shuffles) in the same window between two evaluations (from the first evaluation after
# step 0 on: the measures below need a prefix). The tasks with the largest such
# excess fall, under all three orders; the shaded span is that window.

# %%
drops = compare.sudden_drops(per_task, "cluster", "random")
sharpest = drops.head(sudden_tasks)
fig = plots.sudden_panels(per_task, sharpest, ORDERS)
plots.save(fig, "03_sudden_drops")
plt.show()
display(Markdown("In the shaded windows, left to right, cluster order's loss fell more than random order's (mean "
                 "over its shuffles): " + "; ".join(f"`{d.task}` by {d.excess:.3f} over steps {d.start}-{d.step}"
                                                    for d in sharpest.itertuples()) + "."))

# %% [markdown]
# ## Nine measures of the prefix seen so far
#
# For each held-out task and each step, the distance between the training instances received so
# far (the run's own record of its batches) and the task's held-out instances, embedded with
# MiniLM as the paper's E3 scripts did (first user turn and response): cosine and Euclidean
# Avg / Min / Max / Centroid and the bigram KL, plus Min and Avg combined as WSD weights them.
# A cosine "distance" is the negative cosine similarity, as in the paper's code: -1 for an
# identical instance, lower is closer; WSD is Min + w Avg with the weight w of `similarity.wsd_weight`
# (the paper's mean(Min) / mean(Avg) ratio over the pool), so it is on the same scale. The KL is
# KL(prefix's bigram distribution || the held-out task's), as the paper's script computes it. Shown here for the tasks with the sharpest cluster-order drops above, two figures each: its loss
# and the cosine measures, then the Euclidean measures, KL and WSD (the table `measures` holds
# every task).

# %%
measures_all, changes_all = predict.prefix_changes(results, runs["by_split"], batch_size=batch_size)  # every split
measures = measures_all[measures_all.split == split_seed]

focus = sharpest.task.iloc[0]
cosine = [m for m in predict.ALL_MEASURES if m.startswith("Cosine")]
parts = [(cosine, True), ([m for m in predict.ALL_MEASURES if m not in cosine], False)]  # (measures, with the loss)
for rank, drop in enumerate(sharpest.itertuples()):
    for part, (names, loss) in enumerate(parts):
        fig = plots.measure_grid(per_task, measures, drop.task, ORDERS, names, loss=loss)
        plots.save(fig, f"03_nine_measures_{rank}_{part}")
        plt.show()
        seen = measures[(measures.task == drop.task) & (measures.label == "cluster")].groupby(["measure", "step"]).value.mean()
        moved = {m: seen[m, drop.step] - seen[m, drop.start] for m in names}
        display(Markdown(f"Cluster order, over its sudden drop (steps {drop.start}-{drop.step}): "
                         + ", ".join(f"{m} {findings.signed(v)}" for m, v in moved.items()) + "."))

# %% [markdown]
# Held-out tasks the same way, in small: the loss under the three orders and, on the right axis,
# the closest-pair distance Cosine-Min of the cluster-order prefix (dashed grey), whose steps mark
# the arrival of a training instance closer to the task than any before. Here the nine tasks whose
# loss at the last step differs most between cluster and random order; every task in the figure
# linked below it.

# %% mystnb={"markdown_format": "myst"}
last = per_task.step.max()
at_last = per_task[per_task.step == last].groupby(["task", "label"]).loss.mean().unstack()
difference = at_last["cluster"] - at_last["random"]
chosen = difference.abs().nlargest(9).index  # largest first
fig = plots.task_grid(per_task, measures, ORDERS, "Cosine-Min", measured="cluster", tasks=list(chosen))
plots.save(fig, "03_tasks_shown")
plt.show()
every = plots.task_grid(per_task, measures, ORDERS, "Cosine-Min", measured="cluster", tasks=sorted(at_last.index), cols=6)
path = plots.save(every, "03_all_tasks")
plt.close(every)  # saved, not shown: the page links it
display(Markdown(f"The {len(chosen)} of {len(at_last)} held-out tasks whose mean loss at step {last} differs most between "
                 f"cluster and random order, largest first ({difference[chosen].abs().max():.3f} down to "
                 f"{difference[chosen].abs().min():.3f}; cluster lower on {(difference[chosen] < 0).sum()} of them). "
                 f"All {len(at_last)}: {plots.page_link(path)}."))

# %% [markdown]
# ## Which measure predicts the loss change?
#
# Every (order, held-out task, window between consecutive evaluations) is one unit: the change of
# a measure over the window against the change of the task's loss. Spearman's rho, **pooled** over
# all units (rewards anything that moves with training time, where most losses fall early)
# and **within-window** (at the same point of training, do the tasks whose measure fell more lose
# more loss?), each with a 95% bootstrap interval over held-out tasks. Positive = predicts. The
# random measure shows what chance looks like.

# %%
changes = changes_all[changes_all.split == split_seed]
power = predict.predictive_power(changes, n_boot=n_boot)
fig = plots.rho_forest(power)
plots.save(fig, "03_predictive_power")
plt.show()
top = {kind: power.loc[power[f"rho_{kind}"].idxmax()] for kind in ("within", "pooled")}
noise = {kind: round(power.set_index("measure").loc[predict.NULL_MEASURE, f"rho_{kind}"], 2) + 0.0  # no "-0.00"
         for kind in ("within", "pooled")}
display(Markdown(f"Highest rho within windows: {top['within'].measure} ({top['within'].rho_within:.2f}); pooled: "
                 f"{top['pooled'].measure} ({top['pooled'].rho_pooled:.2f}); the random measure: "
                 f"{noise['within']:.2f} within, {noise['pooled']:.2f} pooled."))
# rho and its interval, within windows and pooled: the numbers the figure draws
display(plots.table(power[["measure", "rho_within", "within_lo", "within_hi", "rho_pooled", "pooled_lo", "pooled_hi"]]))
above = power[power.within_lo > 0].measure.tolist()
max_moved = (changes[changes.measure == "Cosine-Max"].d_measure != 0).mean()
rho = power.set_index("measure").rho_within
display(Markdown(
    f"Within windows, {len(above)} of {len(power)} measures have an interval above 0. Cosine and Euclidean distances "
    "of the unit-length MiniLM embeddings are monotone functions of each other (|a - b|² = 2 - 2 cos), so each "
    "Cosine-Min or -Max measure moves in the same direction as its Euclidean twin, by a different amount. The Max "
    f"measures moved in only {max_moved:.0%} of the units (the rest tie at 0): rho {rho['Cosine-Max']:.3f} (cosine) "
    f"and {rho['Euclidean-Max']:.3f} (Euclidean); for the Min measures {rho['Cosine-Min']:.3f} and "
    f"{rho['Euclidean-Min']:.3f}."))

# %% [markdown]
# ## Over task splits: the paper's measures against every other
#
# The same within-window rho on each task split of `side_split_seeds` (its cluster and random
# runs; all three orders on the first), then every difference between one of the paper's
# measures (Cosine-Min, Cosine-Avg and their WSD combination) and another measure or chance,
# paired by split, with a 95% t-interval over splits. Above 0: the paper's measure predicts the
# loss change better.

# %%
power_split = predict.power_by_split(changes_all)
mine = [*rules.PAPER_MEASURES, predict.WSD_MEASURE]
others = [m for m in power_split.measure.unique() if m not in mine]
differences = rules.measure_differences(power_split, mine, others)
by_split = power_split.pivot_table(index="measure", columns="split", values="rho")
display(plots.table(by_split, index=True))
best = by_split.idxmax()
display(Markdown("Highest within-window rho on each split: " + "; ".join(
    f"split {split} {measure} ({by_split.loc[measure, split]:.3f})" for split, measure in best.items()) + "."))

# %%
display(plots.table(differences))
display(Markdown(
    f"Of these {len(differences)} differences (over {int(differences.n.max())} splits), "
    f"{(differences.lo > 0).sum()} lie above 0 (the paper's measure predicts better) and "
    f"{(differences.hi < 0).sum()} below (the other does)."))

# %% [markdown]
# ## The verdicts
#
# E2 counts every (held-out task, window) of the cluster-order runs on every split: its excess
# fall over random order (below, per split) where a closer training instance arrived and where
# none did.

# %%
windows = compare.excess_windows(compare.task_curves(results, runs["by_split"]), "cluster", "random").merge(
    predict.arrivals(changes_all, "cluster"), on=["split", "task", "start", "end"])
contrast = windows.groupby("split").apply(rules.window_contrast, include_groups=False).rename("arrived - not")
by_kind = windows.groupby(["split", "arrived"]).excess.agg(["mean", "size"]).unstack("arrived")
by_kind.columns = [f"{stat} excess, {'arrived' if arrived else 'none arrived'}" for stat, arrived in by_kind.columns]
display(plots.table(by_kind.join(contrast), index=True))
display(Markdown(
    "\"arrived - not\" is taken inside each window and then averaged over windows, so it need not equal the "
    "difference of the two pooled means beside it: windows differ in how much every loss falls. "
    f"It lies above 0 on {int((contrast > 0).sum())} of {len(contrast)} splits."))
# the alternatives E3 judges: the measures that are neither Min nor Avg nor chance (the rule's list)
alternatives = [m for m in others if m not in (predict.NULL_MEASURE, "Euclidean-Min", "Euclidean-Avg")]

# %% tags=["verdict"]
display(Markdown(rules.stated("sudden", "measures")))
found = [rules.sudden(windows, point=f"every window, steps 0-{max_steps}")]
found += rules.measures(
    power_split,
    predict.WSD_MEASURE,
    alternatives,
    predict.NULL_MEASURE,
    point=f"every window, steps 0-{max_steps}",
)
plots.verdict_table(
    found, ["experiment", "part", "measured", "p", "verdict"]
)

# %% [markdown]
# The verdicts above go to the findings table (the last chapter), with the curves they were read on:

# %% tags=["record"]
findings.record("03_permutations", params, found)

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (a rerun of this chapter reads them back):

# %%
display(Markdown(compare.run_costs(runs)))

# %% [markdown]
# ## What we saw

# %%
last = curves[curves.step == curves.step.max()].groupby("label").loss.mean()
mid_steps = [s for s in curves.step.unique() if 0 < s <= max_steps // 2]
early = curves[curves.step.isin(mid_steps)].groupby("label").loss.mean()
null = power[power.measure == predict.NULL_MEASURE].iloc[0]
best = power[power.measure != predict.NULL_MEASURE].iloc[0]
split_best = power_split.groupby("measure").rho.mean().sort_values(ascending=False)
lines = [
    "Averaged over the evaluations in the first half of the run, held-out loss was "
    + ", ".join(f"{k} {v:.3f}" for k, v in early[ORDERS].items())
    + f"; at step {curves.step.max()}: " + ", ".join(f"{k} {v:.3f}" for k, v in last[ORDERS].items()) + ".",
    f"Cluster order, split {split_seed}: the most sudden drop fell {sharpest.excess.iloc[0]:.2f} more than under "
    f"random order (`{focus}`, steps {sharpest.start.iloc[0]:.0f}-{sharpest.step.iloc[0]:.0f}).",
    f"Over {windows.split.nunique()} task splits and {len(windows):,} (task, window) units, a closer instance arrived "
    f"in {windows.arrived.mean():.0%} of them. E2 ({found[0].part}): {found[0].measured} → **{found[0].verdict}**.",
    f"Split {split_seed} alone: best predictor of the loss change within a window **{best.measure}** (rho "
    f"{best.rho_within:.2f}, 95% CI {best.within_lo:.2f} to {best.within_hi:.2f} over its tasks); the random measure "
    f"scores {null.rho_within:.2f}.",
    "Mean within-window rho over splits: " + ", ".join(f"{m} {r:.2f}" for m, r in split_best.items()) + ".",
    *[f"{f.part}: {f.measured} → **{f.verdict}**." for f in found[1:]],
]
display(Markdown("\n".join("- " + line for line in lines)))
