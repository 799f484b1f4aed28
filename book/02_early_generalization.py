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
# # Early generalization: held-out loss in the first steps (E1)
#
# The paper's first finding: when a pretrained LM is instruction-tuned on many tasks in random
# order, its performance on tasks it never trains on improves **at the very start** of training,
# under every metric, and held-out **loss** is the metric that shows it most reliably (ROUGE and
# exact match jump around from checkpoint to checkpoint; reward-model scores do not separate
# right from wrong answers).
#
# Here: the training tasks of the default split in random order (three shuffles), and one random
# order on each of the other task splits of `side_split_seeds` (loss only), the held-out
# loss of every test instance at step 0 and densely after, greedy generations scored with
# ROUGE-1, ROUGE-L and exact match at a few steps, and the paper's own sampled generation
# protocol (nucleus sampling on a fresh random subset per checkpoint) beside it, to see whether
# its sampling adds noise. Then, per held-out task, which tasks generalize at once and which slowly,
# for the Natural Instructions and the BIG-bench tasks separately, like the paper's per-dataset
# panels.
#
# **What it takes to run**: on the cpu profile, 5 runs that generate text (3 shuffles of one
# split, one run on each other side split) and 2 that do not; "What it took" at the end gives
# this build's time (`zsg plan` predicts it before). Seconds once the runs are stored.
#
# Rerun with other parameters, for example:
# `papermill _build/cpu/book/02_early_generalization.ipynb out.ipynb -p arrangement_seeds "[0,1,2,3]" -p model gemma-270m`.
#
# | parameter | meaning |
# |---|---|
# | `model` | an asset (`smollm2-135m`, `gemma-270m`), `tiny-llama` (smoke tests), or an HF causal-LM folder |
# | `split_seed`, `test_tasks`, `train_per_task`, `test_per_task`, `max_len` | the task split (chapter 1) |
# | `lr`, `batch_size`, `max_steps`, `frozen_layers` | training: the paper's AdamW and cosine schedule; `max_steps` of the one-epoch schedule; the bottom `frozen_layers` are frozen and cached |
# | `arrangement_seeds` | shuffles of the random order on the split of `split_seed`, one run each |
# | `side_split_seeds` | task splits with one random order each (loss only): E1's verdict is over splits |
# | `generate_steps`, `generate_per_task`, `max_new_tokens` | when to generate, for how many instances per held-out task, how long |
# | `generate_protocol` | `greedy`, the paper's sampled protocol (`paper`), or `both` |
# | `reward_model` | a local reward-model folder (sequence classification, one logit); none ships, so by default none runs |

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

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, rules
from zsg_core.data import SOURCE_NAMES
from zsg_core.config import run_params

from zsg_core.runs import run_split

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())  # every parameter above that a run takes
runs = experiments.chapter_runs("02_early_generalization", globals())
results = runs["shuffles"]  # the split of `split_seed`, with generations
split = run_split(next(iter(results.values())).config)  # the runs' own split
source = {r.task: SOURCE_NAMES.get(r.source, r.source) for r in split.test}
curves = compare.loss_curves(results)
by_source = compare.loss_curves(results, by=source)
all_splits = compare.loss_curves(results, runs["by_split"])

# %% [markdown]
# ## Held-out loss from step 0
#
# The micro average over every held-out instance (the paper's "averaged test loss"), and the same
# for the Natural Instructions and BIG-bench held-out tasks alone. The band spans the shuffles.

# %%
fig, axes = plt.subplots(1, 3, figsize=(plots.PAGE_WIDTH, 3.4), sharey=False)
plots.band_plot(curves, axes[0], title="all held-out tasks")
for ax, (group, table) in zip(axes[1:], by_source.groupby("group")):
    plots.band_plot(table, ax, title=f"{group} held-out tasks")
fig.suptitle(f"Held-out loss, random order, {len(arrangement_seeds)} shuffles ({model})")
plots.save(fig, "02_heldout_loss")
plt.show()
falls = [("all held-out tasks", curves)] + list(by_source.groupby("group"))
falls = [(name, t.groupby("step").loss.mean()) for name, t in falls]
display(Markdown(f"Mean over shuffles, from step 0 to step {curves.step.max()}: "
                 + "; ".join(f"{name} {m.iloc[0]:.3f} to {m.iloc[-1]:.3f}" for name, m in falls) + "."))

# %% [markdown]
# ## Generation metrics
#
# Greedy decoding of the first `generate_per_task` instances of every held-out task (the same
# prompts at every step), against the paper's protocol: nucleus sampling (p 0.9, temperature
# 0.9, repetition penalty 1.2) on a fresh random subset of the same size at every checkpoint.
# Scores are the maximum over an instance's references, x100, averaged over instances.

# %%
scores = compare.generation_scores(results)
fig = plots.generation_panels(scores)
plots.save(fig, "02_generation_metrics")
plt.show()
final = scores[scores.step == scores.step.max()].groupby(["protocol", "metric"]).score.mean()
display(Markdown(f"At step {scores.step.max()}, mean over shuffles: " + "; ".join(
    f"{protocol}: " + ", ".join(f"{metric} {v:.1f}" for metric, v in final[protocol].items())
    for protocol in final.index.unique("protocol")) + "."))
all_generations = pd.concat([r.generations for r in results.values()])  # read once: the reward cell uses it too
generated = all_generations[all_generations.step == all_generations.step.max()]
words = generated.prediction.str.split().str.len().groupby(generated.protocol).median()
display(Markdown("The answers themselves at that step, median length in words: "
                 + ", ".join(f"{protocol} {n:.0f}" for protocol, n in words.items()) + "."))

# %% [markdown]
# ## When does the change happen, and how noisy is each metric?
#
# For each metric and shuffle: the first step by which 80% of its whole change (from step 0 to
# its level over the last three checkpoints) has happened, and the checkpoint-to-checkpoint
# jitter after that, as a fraction of the whole change. A good indicator has a small jitter.
# The loss is read on the same checkpoints and the same instances as each protocol's metrics (the
# greedy prompts, or the paper protocol's subset of each step), on the shuffles above and on one
# generating run of each other task split; the summary is over all of them.

# %%
jitters = compare.metric_jitters(results, runs["generating"])
summary = compare.metric_shapes(jitters)
display(plots.table(summary))
ranked = summary.dropna(subset=["jitter_mean"])  # `compare.jitter`: none without a change, or with one checkpoint after it
unranked = len(summary) - len(ranked)
display(Markdown(f"Least jittery: {ranked.iloc[0].metric} ({ranked.iloc[0].protocol}), jitter {ranked.iloc[0].jitter_mean:.3f} "
                 f"of its whole change; most jittery: {ranked.iloc[-1].metric} ({ranked.iloc[-1].protocol}), "
                 f"{ranked.iloc[-1].jitter_mean:.3f}."
                 + (f" {findings.counted(unranked, 'metric')} {'has' if unranked == 1 else 'have'} none: no change from "
                    "step 0 to the plateau, or fewer than two checkpoints after it." if unranked else "")))

# %% [markdown]
# ## Reward model
#
# The paper also scored generations with UltraRM-13B. No reward model ships on a package registry
# here, so unless `reward_model` names a local one, none ran and no number stands in for it.

# %%
if reward_model:
    gens = all_generations
    rewards = gens.dropna(subset=["reward"]).groupby(["protocol", "step"]).reward.mean().unstack(0)
    display(plots.table(rewards, index=True))
    display(Markdown("Mean reward from the first to the last evaluated step: " + "; ".join(
        f"{protocol} {rewards[protocol].iloc[0]:.3f} to {rewards[protocol].iloc[-1]:.3f}" for protocol in rewards) + "."))
else:
    display(Markdown("*No reward model was given (`reward_model = None`): no reward scores in this run.*"))

# %% [markdown]
# ## Rapid and gradual decline, per held-out task
#
# Each held-out task's mean loss (averaged over the shuffles), normalised to its step-0 loss. A
# task whose loss has made 80% of its drop by step `rapid_by` (a sixth of the run) is "rapid",
# the rest "gradual". The five tasks of each kind with the largest drop, per source.

# %%
task_mean = compare.task_curves(results).groupby(["task", "step"]).loss.mean().reset_index()
rapid_by = max(1, max_steps // 6)
kinds = compare.decline_kinds(task_mean, source, rapid_by)
fig = plots.decline_panels(task_mean, kinds)
plots.save(fig, "02_rapid_gradual")
plt.show()
ends = task_mean.sort_values("step").groupby("task").loss.agg(["first", "last"])
relative = (ends["last"] / ends["first"]).sort_values()
steepest = kinds.nlargest(1, "fall").iloc[0]
display(Markdown(
    f"{(kinds.kind == 'rapid').sum()} of {len(kinds)} tasks are rapid. The largest fall in loss (from step 0 to the "
    f"mean of the last three checkpoints) is that of {steepest.task} ({steepest.kind}), by {steepest.fall:.2f}; at "
    f"step {task_mean.step.max()}, the task lowest against its step-0 loss (the figure's scale) is "
    f"{relative.index[0]} ({kinds.set_index('task').kind[relative.index[0]]}), at {relative.iloc[0]:.0%} of it."))
kind_counts = kinds.groupby(["group", "kind"]).size().unstack(fill_value=0).rename_axis(columns=None)
display(plots.table(kind_counts, index=True))
rapid_share = (kinds.kind == "rapid").groupby(kinds.group).mean()
display(Markdown("Share of rapid tasks: " + "; ".join(f"{group} {share:.0%}" for group, share in rapid_share.items()) + "."))

# %% [markdown]
# ## Early generalization, split by split
#
# The held-out loss of one random order on each task split, over the whole window (the first
# split's line is the mean of its shuffles). Dotted: the two points E1's rule reads.

# %%
epoch = next(iter(results.values())).manifest["epoch_steps"]
fig, ax = plt.subplots(figsize=(7, 3.4))
plots.band_plot(all_splits.assign(split="split " + all_splits.split.astype(str)), ax, hue="split",
                title=f"Held-out loss, random order, {all_splits.split.nunique()} task splits")
read_at = [findings.relative_step(f, epoch, sorted(all_splits.step.unique()))
           for f in (rules.EARLY_FRACTION, rules.REFERENCE_FRACTION)]  # the evaluated steps the rule reads
for step in read_at:
    ax.axvline(step, ls=":", color="grey")
plots.save(fig, "02_splits")
plt.show()
final = all_splits[all_splits.step == all_splits.step.max()].groupby("split").loss.mean().sort_values()
display(Markdown(f"Dotted: steps {read_at[0]} and {read_at[1]}, the evaluated steps nearest "
                 f"{rules.EARLY_FRACTION:.0%} and {rules.REFERENCE_FRACTION:.0%} of the {epoch}-step epoch. At step "
                 f"{all_splits.step.max()}, split {final.index[0]} is lowest ({final.iloc[0]:.3f}) and split "
                 f"{final.index[-1]} highest ({final.iloc[-1]:.3f})."))

# %% [markdown]
# ## The verdicts
#
# Claim 1 (early generalization) is judged on every split's random order; claim 2 (loss is the
# steadiest indicator) on every run that generated text, a task split being the unit.

# %% tags=["verdict"]
display(Markdown(rules.stated("early", "steadiest")))
found = [rules.early(all_splits, epoch), rules.steadiest(jitters)]
plots.verdict_table(found, ["part", "point", "measured", "p", "verdict"])

# %% [markdown]
# The verdicts above go to the findings table (the last chapter), with the curves they were read on:

# %% tags=["record"]
findings.record("02_early_generalization", params, found)

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (a rerun of this chapter reads them back):

# %%
display(Markdown(compare.run_costs(runs)))

# %% [markdown]
# ## What we saw

# %%
start, end = curves[curves.step == 0].loss.mean(), curves[curves.step == curves.step.max()].loss.mean()
step_80 = float(pd.Series([compare.change_step(c.step, c.loss) for _, c in curves.groupby("seed")]).median())
greedy = summary[summary.protocol == "greedy"]
paper_rows = summary[summary.protocol == "paper"]
first_eval = sorted(curves.step.unique())[1]
early = curves[curves.step == first_eval].loss.mean()
moved = summary.dropna(subset=["jitter_mean"])
still = summary[summary.jitter_mean.isna()]
rank = list(moved.metric + " (" + moved.protocol + ")")
if paper_rows.jitter_mean.notna().any() and greedy.jitter_mean.notna().any():
    noisier = "noisier" if paper_rows.jitter_mean.mean() > greedy.jitter_mean.mean() else "not noisier"
    protocols = (f"the paper's sampled protocol is {noisier} than greedy decoding on fixed prompts (mean jitter "
                 f"{paper_rows.jitter_mean.mean():.2f} vs {greedy.jitter_mean.mean():.2f}).")
else:
    protocols = ("the two generation protocols cannot be compared: no jitter could be measured for at least "
                 "one of them (see the list below).")
jitter_text = "; ".join(f"{m} {j:.2f}" for m, j in zip(rank, moved.jitter_mean))
if len(still):
    jitter_text += "; no jitter measured (no change from step 0 to its plateau, or never 80% of it): " + ", ".join(
        still.metric + " (" + still.protocol + ")")
lines = [
    f"Held-out loss fell from **{start:.2f}** at step 0 to **{end:.2f}** at step {curves.step.max()} (mean over "
    f"{len(arrangement_seeds)} shuffles); {(start - early) / (start - end):.0%} of that fall had happened by step {first_eval}, "
    f"and 80% of it by step {step_80:.0f} (median over shuffles) of a {max_steps}-step run, that is "
    f"{step_80 / epoch:.1%} of one epoch ({epoch} steps; the paper: {findings.PAPER['E1']['text']}).",
    "By source (mean over shuffles), 80% of the held-out loss drop happened by step: "
    + "; ".join(f"{group} {compare.change_step(t.step, t.loss)} (from {t.loss.iloc[0]:.2f} to {t.loss.iloc[-1]:.2f})"
                for group, t in by_source.groupby(["group", "step"]).loss.mean().reset_index().groupby("group"))
    + ".",
    f"Jitter after the change (mean |checkpoint-to-checkpoint change| / whole change), lowest first: {jitter_text}; "
    + protocols,
    f"Per held-out task: {(kinds.kind == 'rapid').sum()} of {len(kinds)} tasks made 80% of their drop by step "
    f"{rapid_by} (rapid), {(kinds.kind == 'gradual').sum()} did not (gradual"
    + (f", including {(kinds.fall <= 0).sum()} whose loss did not fall at all)." if (kinds.fall <= 0).any() else ")."),
    *[f"{f.claim}: {f.part} ({f.point}): {f.measured} → **{f.verdict}**." for f in found],
]
display(Markdown("\n".join("- " + line for line in lines)))
