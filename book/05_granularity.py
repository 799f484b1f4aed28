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
# # Granularity: arranging instances or whole tasks (E5)
#
# Both orders put what is similar to the held-out set first; they differ in the unit they move.
# **Fine** granularity is chapter 4's NFT: every instance placed by its own WSD, task boundaries
# ignored. **Coarse** granularity scores each training task by the WSD of its centroid (the mean
# of its instances' embeddings) and keeps each task's instances together, nearest task first, as
# the paper's `split_data_coarse_job.py` does. Both orders arrange the same training list. The paper found
# coarse slightly ahead for the first ~150 of its ~1,800-step epoch, the curves crossing at
# 250-350 steps and fine ahead at step 800, where it reads the claim.
#
# This chapter trains both orders on every task split for `long_steps` steps, aiming at the paper's
# late reading point (the same fraction of an epoch; the caption under the figure says whether the
# runs reach it) rather than stopping before its crossing,
# and judges the claim in its two parts, each at its own relative point. The fine runs follow
# chapter 4's NFT order under the same schedule, so their first `max_steps` steps are chapter 4's
# NFT runs: E4 and E5 share that prefix and are not independent evidence. If NFT trails random
# order (chapter 4), "coarse < fine" early could come from NFT's own gap to random order rather
# than from coarse order helping; so both are also read against random order (RT) trained on the same
# schedule, and the verdict says which carries each part.
#
# The runs are several times longer than the other chapters', so the comparison runs on the task
# splits of `side_split_seeds` rather than on chapter 4's `split_seeds`. On so few splits, at the
# confirmatory family's level, only an effect many times the spread between splits can be
# decided: chapter 11 gives, from these runs, how many splits each part would need.
#
# **What it takes to run**: on the cpu profile, 9 runs of 230 steps (three orders on three task
# splits); "What it took" at the end gives the measured time. Seconds once the runs are stored.
#
# Rerun with other parameters, for example:
# `papermill _build/cpu/book/05_granularity.ipynb out.ipynb -p side_split_seeds "[0,1,2,3,4]"`.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2 |
# | `side_split_seeds` | task splits the comparison is repeated on |
# | `long_steps` | how long both orders train (None: `max_steps`); the paper's late reading point needs the fraction of an epoch said under the figure |

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
side_split_seeds = [0, 1, 2]
long_steps = 230

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, rules, stats
from zsg_core.config import run_params

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())
runs = experiments.chapter_runs("05_granularity", globals())
curves = compare.loss_curves(runs)
per_task = compare.task_curves(runs)
gap = stats.split_gaps(per_task, [("fine", "coarse")])
epoch = compare.epoch_steps(next(iter(runs.values())))
steps = sorted(per_task.step.unique())
paper = findings.PAPER["E5"]
early_point = findings.relative_step(paper["early_step"] / paper["epoch"], epoch, steps)
late_point = findings.relative_step(findings.paper_fraction("E5"), epoch, steps)

# %% [markdown]
# ## Held-out loss, fine vs coarse
#
# Left: the mean over task splits with the band spanning them. Right: fine - coarse per split
# (mean over its held-out tasks), with its 95% t-interval over splits (below 0: fine is ahead).
# Dotted: the paper's two reading points, each at the same fraction of our epoch.

# %%
fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH, 4))
plots.band_plot(curves, axes[0], order=["fine", "coarse", "RT"], title=f"Averaged held-out loss ({len(side_split_seeds)} splits)")
plots.gap_plot(gap, axes[1], title="fine - coarse over splits")
for ax in axes:
    for s in (early_point, late_point):
        ax.axvline(s, ls=":", color="grey")
plots.save(fig, "05_granularity")
plt.show()
at_late = stats.over_units(stats.split_means(per_task, "fine", "coarse", late_point)["diff"])
display(Markdown(
    f"Dotted: the paper's steps {paper['early_step']} and {paper['step']} of {paper['epoch']:,} "
    f"({paper['early_step'] / paper['epoch']:.1%} and {paper['step'] / paper['epoch']:.1%} of its epoch), here steps "
    f"{early_point} and {late_point} of a {epoch}-step epoch ({early_point / epoch:.1%} and {late_point / epoch:.1%}"
    + ("; the runs stop before the paper's late point, so the late part is read at their last evaluation"
       if late_point < 0.9 * findings.paper_fraction("E5") * epoch else "")
    + f"). At step {late_point}, fine - coarse is {findings.fmt(at_late, level=0.95)}."))
after = gap[gap.step > 0]
display(plots.table(after[["step", "diff", "lo", "hi"]].rename(  # a row per step
    columns={"diff": "fine - coarse", "lo": "95% low", "hi": "95% high"})))
display(Markdown(f"Of the {len(after)} evaluations after step 0, the interval lies below 0 (fine lower) at "
                 f"{int((after.hi < 0).sum())} and above 0 (coarse lower) at {int((after.lo > 0).sum())}."))

# %% [markdown]
# ## What the two orders had trained on
#
# Coarse order moves a whole task at a time, fine order an instance at a time; the table counts
# the tasks each had reached. Per reading point (mean over
# splits): the distinct training tasks each had received, and the share of the instances in
# fine's prefix that coarse's prefix also holds (the same instances in a different order would
# be 100%).

# %%
seen = {key: compare.received(r) for key, r in runs.items()}
rows = []
for s in (early_point, late_point, max(steps)):
    for seed in side_split_seeds:
        fine, coarse = (seen[(label, seed)] for label in ("fine", "coarse"))
        fine, coarse = fine[fine.step <= s], coarse[coarse.step <= s]
        rows.append({"step": s, "split": seed, "tasks seen, fine": fine.task.nunique(),
                     "tasks seen, coarse": coarse.task.nunique(),
                     "shared prefix": len(set(fine.id) & set(coarse.id)) / len(set(fine.id))})
prefix = pd.DataFrame(rows)
by_point = prefix.groupby("step").mean(numeric_only=True).drop(columns="split")
display(plots.table(by_point, index=True,
                    formats={"tasks seen, fine": "{:.1f}", "tasks seen, coarse": "{:.1f}", "shared prefix": "{:.0%}"}))
display(Markdown(f"At step {early_point}, fine order had received instances of {by_point.loc[early_point, 'tasks seen, fine']:.1f} "
                 f"tasks and coarse order of {by_point.loc[early_point, 'tasks seen, coarse']:.1f} (mean over splits); "
                 f"the two prefixes shared {by_point.loc[early_point, 'shared prefix']:.0%} of fine's instances."))

# %% [markdown]
# ## The verdict, part by part

# %% tags=["verdict"]
display(Markdown(rules.stated("granularity", "order")))
found = rules.granularity(per_task, early_point, late_point, epoch)
against_random = rules.granularity_against_random(
    per_task, early_point, late_point, epoch)
carriers = {f.part: rules.carried_by(f, against_random) for f in found}
carried = [carriers[f.part] for f in found] + [""] * len(against_random)
display(plots.verdict_table(
    found + against_random,
    ["experiment", "part", "point", "measured", "p", "verdict"],
    extra={"carried by": carried} if any(carried) else None))

# %%
reproduced = {part: carrier for part, carrier in carriers.items() if carrier}
display(Markdown("What carries each reproduced E5 part: " + "; ".join(f"{part}: {c}" for part, c in reproduced.items()) + "."
                 if reproduced else f"No E5 part is reproduced ({findings.tally(found)}), so none has a carrier to name."))

# %% [markdown]
# The verdicts above go to the findings table (the last chapter), with the curves they were read on:

# %% tags=["record"]
gap_curves = gap.assign(experiment="E5", setting="random splits")
findings.record("05_granularity", params, found + against_random,
                gap_curves)

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (a rerun of this chapter reads them back):

# %%
display(Markdown(compare.run_costs(runs)))

# %% [markdown]
# ## What we saw

# %%
shared = prefix.groupby("step")["shared prefix"].mean()
lines = [
    f"Our runs train {max(steps)} steps, {max(steps) / epoch:.1%} of the {epoch}-step epoch (the paper's first "
    f"~{round(max(steps) / epoch * paper['epoch'])} steps). Paper: {paper['text']}.",
    *[f"{f.part} at {f.point}: {f.measured} → **{f.verdict}**"
      + (f"; carried by {carriers[f.part]}." if carriers[f.part] else ".") for f in found],
    "Against random order: " + "; ".join(f"at {f.point.split(' (')[0]}, {f.measured} ({f.verdict})"
                                         for f in against_random) + ".",
    f"After step 0 the mean gap (fine - coarse over splits) is below 0 (fine ahead) at {int((after['diff'] < 0).sum())} "
    f"of {len(after)} evaluated steps, and its 95% interval excludes 0 at {int(((after.hi < 0) | (after.lo > 0)).sum())} "
    "of them (the paper's curves cross at its steps 250-350, where coarse had led before).",
    f"At step {late_point} the two prefixes shared {shared.loc[late_point]:.0%} of their instances "
    f"({shared.loc[early_point]:.0%} at step {early_point}).",
]
display(Markdown("\n".join("- " + line for line in lines)))
