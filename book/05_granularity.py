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
# the paper's `split_data_coarse_job.py` does. The paper found coarse slightly ahead for the first
# ~150 of its ~1,800-step epoch, the curves crossing at 250-350 steps and fine ahead from then on.
#
# The fine runs are chapter 4's NFT runs, read back from the run store.
#
# Rerun with other parameters, for example:
# `papermill _build/cpu/book/05_granularity.ipynb out.ipynb -p split_seeds "[0,1,2,3]"`.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2 (`split_seed` is unused here: `split_seeds` says which splits) |
# | `split_seeds` | task splits the comparison is repeated on |
# | `long_steps` | the pair again on the first split, trained this many steps (None: not run) |

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
split_seeds = [0, 1, 2]
long_steps = 180

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, stats
from zsg_core.runs import run_params

plots.use_style()

# %% tags=["hide-output"]
params = run_params(globals())
grains = experiments.granularity(params, split_seeds, long_steps)
runs = grains["by_split"]
curves = compare.loss_curves(runs)
gap = stats.gaps(curves, [("fine", "coarse")])

# %% [markdown]
# ## Held-out loss, fine vs coarse
#
# Left: the mean over task splits with the band spanning them. Right: fine - coarse paired by
# split, with a 95% t-interval over splits (below 0: fine is ahead).

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
plots.band_plot(curves, axes[0], order=["fine", "coarse"], title=f"Averaged held-out loss ({len(split_seeds)} splits)")
plots.gap_plot(gap, axes[1], title="fine - coarse")
plots.save(fig, "05_granularity")
plt.show()
curves.groupby(["label", "step"]).loss.mean().unstack(0).round(3).T

# %% [markdown]
# ## Longer: does fine order pull ahead later?
#
# The paper's curves cross at 250-350 of ~1,800 steps, later in its epoch than our window
# reaches. The same pair on the first split, trained `long_steps` steps of the same schedule (one
# epoch's cosine, so the first `max_steps` steps should repeat the runs above; checked below):

# %%
if "long" in grains:
    curves_long = compare.loss_curves(grains["long"])
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    plots.band_plot(curves_long, ax, order=["fine", "coarse"], title=f"Split {split_seeds[0]}, {long_steps} steps")
    plots.save(fig, "05_granularity_long")
    plt.show()
    long_gap = stats.gaps(curves_long, [("fine", "coarse")])
    display(long_gap.set_index("step")[["diff"]].T.round(3))

# %% [markdown]
# ## How many tasks each order had reached
#
# Coarse order moves a whole task at a time, so after k steps it has seen few tasks, each fully;
# fine order has touched many tasks with one or two instances each. Distinct training tasks
# received by each step (mean over splits):

# %%
seen = {key: compare.received(r) for key, r in runs.items()}
reach = pd.DataFrame([{"order": label, "split seed": seed, "step": s, "tasks seen": got[got.step <= s].task.nunique()}
                      for (label, seed), got in seen.items() for s in (5, 10, 20, max_steps)])
reach.groupby(["order", "step"])["tasks seen"].mean().unstack(0).round(1)

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (a rerun of this chapter reads them back):

# %% tags=["hide-input"]
display(Markdown(compare.run_costs(grains)))

# %% [markdown]
# ## What we saw

# %% tags=["hide-input"]
epoch = compare.epoch_steps(next(iter(runs.values())))
paper = findings.PAPER["E5"]
steps = sorted(gap.step.unique())
last = steps[-1]
at_last = stats.gap_at(gap, last, "fine - coarse")
first_half = [s for s in steps if 0 < s <= max_steps // 2]
early_mean = gap[gap.step.isin(first_half)]["diff"].mean()
mean_gap = gap.set_index("step")["diff"]
ahead = ["fine" if d < 0 else "coarse" for d in mean_gap]
switches = [int(s) for s, a, b in zip(mean_gap.index[1:], ahead, ahead[1:]) if a != b]
paper_equiv = round(last / epoch * paper["epoch"])
verdict = findings.sign_verdict(at_last)
if "long" in grains:
    long_last = int(long_gap.step.max())
    long_diff = float(long_gap.set_index("step").loc[long_last, "diff"])
    long_ahead = ["fine" if d < 0 else "coarse" for d in long_gap.set_index("step")["diff"]]
    long_switch = [int(s) for s, a, b in zip(long_gap.step.iloc[1:], long_ahead, long_ahead[1:]) if a != b]
    short = curves[curves.seed == split_seeds[0]].set_index(["label", "step"]).loss
    same = curves_long.set_index(["label", "step"]).loss.reindex(short.index)
    long_line = (f"Over the first {max_steps} steps the longer runs differ from the runs above by at most "
                 f"{float((same - short).abs().max()):.4f} in held-out loss. Longer run (split {split_seeds[0]}, one run each): fine - coarse {long_diff:+.3f} at step {long_last} "
                 f"({long_last / epoch:.0%} of the epoch, the paper's step ~{round(long_last / epoch * paper['epoch'])}); "
                 f"the sign changes at step(s) {long_switch if long_switch else 'none'}.")
else:
    long_line = "No longer run (long_steps is None)."
lines = [
    f"Our {max_steps} steps are {last / epoch:.1%} of the {epoch}-step epoch, the paper's first ~{paper_equiv} "
    f"steps. Paper: {paper['text']}.",
    f"fine - coarse at step {last}: {findings.fmt(*at_last)} over {len(split_seeds)} splits; mean over the first half "
    f"of the run {early_mean:+.3f}. The mean gap changes sign at step(s) {switches if switches else 'none'}.",
    f"Verdict on fine < coarse at the end of our window: **{verdict}**. Our window ends where the paper's curves "
    f"had {'not yet ' if paper_equiv < 250 else ''}crossed (250-350 steps), so the paper's late advantage of fine "
    f"order is {'outside what these runs can show' if paper_equiv < 250 else 'inside this window'}.",
    long_line,
]
display(Markdown("\n".join("- " + line for line in lines)))
rows = [findings.Finding("E5", "Instance-level (fine) arrangement beats task-level (coarse) later in training (claim 4)",
                         paper["text"], f"fine - coarse {findings.fmt(*at_last)}", *at_last,
                         f"step {last} of {max_steps} ({last / epoch:.1%} of the epoch; paper step ~{paper_equiv})", verdict)]
if "long" in grains:
    rows.append(findings.Finding("E5", "The same, trained longer (first split)", paper["text"],
                                 f"fine - coarse {long_diff:+.3f} (one run each)", long_diff, float("nan"), float("nan"),
                                 f"step {long_last} ({long_last / epoch:.0%} of the epoch)",
                                 findings.sign_verdict((long_diff, float("nan"), float("nan")))))
findings.record("05_granularity", params, rows, gap.assign(experiment="E5", setting="random split"))
