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
# # Findings: what reproduced at this scale
#
# One row per claim of the paper: the paper's number as read off its released figure, our effect
# at the same relative point of training with its 95% interval, and a verdict. Every row was
# computed by the chapter named in it from its stored runs (`zsg_core.findings`), and this chapter
# refuses rows that were computed with other parameters than its own.
#
# Verdicts: **reproduced** when the interval lies wholly on the claimed side of zero (for the
# order claims NFT < RT < FFT: both NFT - RT and FFT - RT); **partly** when only one of two does,
# or a single run points the claimed way; **not reproduced** when the evidence points the other
# way; **inconclusive** when the interval straddles zero. Effects are differences in held-out loss
# (negative = the first order is ahead) unless the row says otherwise.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | must equal those the chapters ran with |
# | `arrangement_seeds`, `full_finetune_lr` | the speed-up check below: RT's shuffles, and the lr of full fine-tuning |

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
full_finetune_lr = 2.0e-5

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import book, compare, experiments, findings, plots
from zsg_core.runs import run_params

plots.use_style()

# %% tags=["hide-output"]
params = run_params(globals())
table, curves = findings.collect(params, book.recording_chapters())  # in _toc.yml order

# %% [markdown]
# ## The table

# %%
shown = table[["experiment", "claim", "paper", "measured", "point", "verdict"]]
shown.style.hide(axis="index").set_properties(**{"text-align": "left", "vertical-align": "top"})

# %% [markdown]
# ## The headline comparisons side by side
#
# Each panel is one comparison from its chapter: the difference in averaged held-out loss per
# step with its 95% interval (over task splits on the random splits; over RT's shuffles on the
# family-blocked split and the task-free analog). Below zero: the first-named order is ahead.

# %%
panels = curves.groupby(["experiment", "setting"], sort=False)
cols = 3
rows = -(-panels.ngroups // cols)
fig, axes = plt.subplots(rows, cols, figsize=(15, 3.4 * rows), sharey=True, squeeze=False)
for ax, ((experiment, setting), g) in zip(axes.flat, panels):
    plots.gap_plot(g, ax, title=f"{experiment}, {setting}")
for ax in axes.flat[panels.ngroups:]:
    ax.axis("off")
plots.save(fig, "08_headline")
plt.show()

# %% [markdown]
# ## What we tried where nearest-first did not win
#
# Before concluding on E4, the same three orders were trained with every weight of the model
# trained (no frozen layers, lr `full_finetune_lr`), against this profile's speed-ups (top layers
# over cached frozen ones). The table shows NFT - RT and FFT - RT (RT: the mean over its
# shuffles) per step for both set-ups when their runs are in the run store: full fine-tuning
# costs about ten times more per step, so `make book` does not train it;
# `benchmarks/ordering_check.py` does (`experiments.ordering_check`, the same runs).

# %%
check = experiments.ordering_check(params, full_finetune_lr, arrangement_seeds, log=lambda m: None, train=False)
complete = all({label for label, _ in group} == {"NFT", "FFT", "RT"} for group in check.values())
if complete:
    tried = compare.ordering_gaps(check)
    display(tried.style.format(precision=3, na_rep=""))
else:
    tried = None
    display(Markdown("The runs of this check are not in the run store for these parameters: "
                     "`.venv/bin/python benchmarks/ordering_check.py` trains them."))

# %% [markdown]
# ## What we saw

# %% tags=["hide-input"]
counts = table.verdict.value_counts()
lines = [f"{len(table)} findings: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."]
for row in table.itertuples():
    lines.append(f"{row.experiment}: {row.claim}: **{row.verdict}** ({row.measured}; {row.point}).")
if tried is not None:
    last_gap = {setup: tried[(setup, "NFT - RT")].dropna().iloc[-1] for setup in check}
    same = (last_gap["fast"] > 0) == (last_gap["full"] > 0)
    lines.append(f"E4 order check: NFT - RT at the last step {last_gap['fast']:+.3f} with the speed-ups and "
                 f"{last_gap['full']:+.3f} with full fine-tuning at lr {full_finetune_lr:g}: "
                 + ("the same sign, so the speed-ups do not decide it." if same else "opposite signs: the speed-ups matter."))
display(Markdown("\n".join("- " + line for line in lines)))
