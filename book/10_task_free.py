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
# # TMA without tasks: an instance-level analog of the chat-data experiment (E7)
#
# The paper ran TMA on two dialogue collections that have no task labels at all (ShareGPT and
# NoRobots): a random set of conversations held out, the rest of the pool arranged around them
# by TMA (nearest rounds first, NFT; its reverse, FFT; a shuffle, RT). The differences it
# reports are small (NoRobots, step 350: NFT 1.297, RT 1.304, FFT 1.309) but NFT is lowest almost
# everywhere, which it reads as "similarity, not task identity, drives generalization".
#
# No package registry here ships ShareGPT or NoRobots, so this chapter builds the closest honest
# analog from the data we have, and names it for what it is: **a random-instance hold-out of the
# same NI v1 + BIG-bench pool, with task labels never used**. The held-out set is
# `test_tasks x test_per_task` instances drawn at random from the whole pool; everything else
# trains; TMA arranges the whole pool (as the paper's assumed build did) from embeddings alone.
#
# What it can show: whether TMA's order helps when the held-out set is defined without tasks and
# the arrangement never looks at one. What it cannot show: anything about open-ended chat, and it
# is *not* zero-shot at the task level: held-out instances can have training instances of their
# own task, and TMA's nearest neighbours can be same-task instances ("What we saw" gives the share
# of held-out instances with one; the table below, what each order received from their tasks). It is the paper's E7 setting in structure, not in kind of data.
#
# The comparison runs on several instance draws (`side_split_seeds`, each its own held-out set
# and RT shuffle), so its interval is over draws, as chapter 4's is over task splits.
#
# **What it takes to run**: on the cpu profile, 9 runs of 60 steps, the first on each new draw also
# preparing it; "What it took" at the end gives this build's time. Seconds once the runs are stored.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2 |
# | `side_split_seeds` | the instance draws the comparison is repeated on |
# | `arrangement_seeds` | RT's shuffle: the first of them on every draw |

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
side_split_seeds = [0, 1, 2]

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, rules, stats
from zsg_core.config import run_params

from zsg_core.runs import run_split

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())
runs = experiments.chapter_runs("10_task_free", globals())
split = run_split(next(iter(runs.values())).config)  # the first draw
curves = compare.loss_curves(runs)
per_task = compare.task_curves(runs)
pairs = [("NFT", "RT"), ("NFT", "FFT")]  # the paper: NFT lowest, RT and FFT alike
gap = stats.split_gaps(per_task, pairs)
summary = split.summary()

# %% [markdown]
# The first draw's hold-out, as the split reports it:

# %%
display(plots.table(pd.DataFrame({"instance-level hold-out": {k.replace("_", " "): v for k, v in summary.items()
                                                              if k != "config"}}), index=True))
in_both = {r.task for r in split.test} & {r.task for r in split.train}
display(Markdown(f"{len(in_both)} of the {len({r.task for r in split.test})} tasks with a held-out instance also have "
                 "instances in training: the hold-out draws instances, not tasks."))

# %% [markdown]
# ## Held-out loss under TMA's three orders
#
# Left: the curves (the band spans the draws). Right: NFT - RT and NFT - FFT per draw (mean over
# its held-out tasks), with a 95% t-interval over draws.

# %%
fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH, 4))
plots.band_plot(curves, axes[0], order=["NFT", "RT", "FFT"], title=f"Random-instance hold-out, TMA over the whole pool ({len(side_split_seeds)} draws)")
plots.gap_plot(gap, axes[1], title="NFT against RT and FFT")
plots.save(fig, "10_task_free")
plt.show()
end = int(gap.step.max())
display(Markdown(f"At step {end}, the last evaluated: " + "; ".join(
    f"{a} - {b} " + findings.fmt(stats.over_units(stats.split_means(per_task, a, b, end)["diff"]), "instance draws")
    for a, b in pairs) + "."))
by_step = curves.groupby(["label", "step"]).loss.mean().unstack(0)
display(plots.table(by_step.T.rename_axis(index="order", columns="step"), index=True))
display(Markdown(f"Mean loss over the draws: {findings.lowest_by_step(by_step)}."))

# %% [markdown]
# ## How often was the nearest neighbour a same-task instance?
#
# The arrangement never saw a task label, but the data still have tasks. The share of the
# instances each order received in its first ten steps whose task also has a held-out instance:

# %%
held_tasks = {r.task for r in split.test}
train_tasks = {r.task for r in split.train}
share = pd.DataFrame([{"order": label, "seed": seed,
                       "share": compare.received(r).query("step <= 10").task.isin(held_tasks).mean()}
                      for (label, seed), r in runs.items()]).groupby("order").share.mean()
display(plots.table(pd.DataFrame({"received in the first 10 steps from a held-out instance's task": share}), index=True,
                   formats={"received in the first 10 steps from a held-out instance's task": "{:.0%}"}))
display(Markdown(f"{share.idxmax()} received the most from the held-out instances' tasks ({share.max():.0%} of its "
                 f"first ten steps), {share.idxmin()} the least ({share.min():.0%})."))

# %% [markdown]
# ## The verdict, part by part
#
# The paper's E7 claim is that NFT is lowest (its RT and FFT curves coincide), read at the end of
# its window; so the parts are NFT < RT and NFT < FFT at our last step.

# %%
steps = sorted(per_task.step.unique())
epoch = compare.epoch_steps(next(iter(runs.values())))
last = steps[-1]
part = dict(experiment="E7", unit="instance draws", paper=findings.PAPER["E7"]["text"],
            claim="TMA's NFT advantage holds without any notion of task (analog: random-instance hold-out)",
            point=f"step {last} of {max_steps} ({last / epoch:.1%} of the epoch)")
gap_curves = gap.assign(experiment="E7", setting="random-instance hold-out")

# %% tags=["verdict"]
display(Markdown(rules.stated("order", unit="instance draw")))
found = rules.order_parts(per_task, last, ("NFT", "RT", "FFT"), pairs=pairs,
                          **part)
plots.verdict_table(found, ["part", "measured", "p", "verdict"])

# %% [markdown]
# The verdicts above go to the findings table (the last chapter), with the curves they were read on:

# %% tags=["record"]
findings.record("10_task_free", params, found, gap_curves)

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (a rerun of this chapter reads them back):

# %%
display(Markdown(compare.run_costs(runs)))

# %% [markdown]
# ## What we saw

# %%
mean_gap = gap[gap.step > 0].groupby("comparison")["diff"].mean()
below = gap[(gap.comparison == "NFT - RT") & (gap.step > 0)]
with_sibling = sum(r.task in train_tasks for r in split.test) / len(split.test)
lines = [
    f"{len(split.test)} held-out instances from {summary['test_tasks']} tasks on the first draw; {with_sibling:.0%} of "
    f"them have instances of their own task in training. Paper: {findings.PAPER['E7']['text']}.",
    f"At step {last} ({last / epoch:.1%} of the {epoch}-step epoch), over {len(side_split_seeds)} draws: "
    + "; ".join(f"{f.part}: {f.measured} → **{f.verdict}**" for f in found) + ".",
    "Averaged over all evaluations after step 0: " + ", ".join(f"{c} {findings.signed(v)}" for c, v in mean_gap.items())
    + f". NFT was below RT (mean over draws) at {int((below['diff'] < 0).sum())} of {len(below)} evaluations.",
]
display(Markdown("\n".join("- " + line for line in lines)))
