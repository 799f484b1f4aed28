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
# # Which similarity? MiniLM, the model's hidden states (RDS-like), its gradients (LESS-like)
#
# The paper measures "similar" with a sentence encoder, all-MiniLM-L6-v2. Later work on targeted
# data selection points elsewhere: LESS (Xia et al. 2024) selects by low-rank projected
# *gradients* of the model; RDS+ (Ivison et al. 2025) finds mean-pooled *hidden states* of the
# model itself beat gradients and many other selectors at million scale; Nayak et al. (2026) report
# that only gradient-based distances consistently predicted the value of targeted data, and
# sentence embeddings did not. No one has compared the three for *ordering* on the paper's
# protocol. This chapter does, with the three kinds of `zsg_core.features`:
#
# - **minilm**: the paper's embeddings (first turn and answer, or every message, as the paper's
#   scripts embed them);
# - **hidden** (*RDS-like*): the model's last hidden layer, mean-pooled over the instance as
#   training reads it, centred on the training pool and normalised;
# - **gradient** (*LESS-like*): the gradient of the instance's answer loss with respect to the
#   trained weights after a 10-step warm-up on a random order, projected to ~8,000 dimensions per
#   instance with a Kronecker-factored random projection per layer (LoGra's), normalised.
#
# Both are built in the spirit of the originals, not as them; how each differs:
#
# | | the original | here |
# |---|---|---|
# | LESS (Xia et al. 2024) | gradients of LoRA weights, preconditioned by Adam's moments, at several warm-up checkpoints, summed; a dense random projection to 8,192 dimensions; selects the top instances by similarity to a few target examples | plain gradients of the tuned top layers at one checkpoint, after a 10-step warm-up; a Kronecker-factored projection per layer (LoGra's); orders the whole list, nothing is dropped |
# | RDS+ (Ivison et al. 2025) | the base model's hidden states, position-weighted mean pooling, no centring; selects at million scale by similarity to target examples | the last hidden layer of the model being tuned, at its starting weights, plain mean pooling, centred on the training pool; orders the whole list |
#
# A held-out instance is represented *with its reference answer*, as the paper embeds its test
# responses. A user without labels has prompts only, and an order built with the answers has seen
# what the held-out loss measures, so the **prompt-only** view (minilm embeds the prompt, hidden
# pools the prompt's positions, gradient takes the loss of the model's own greedy answer) is the
# fair one: experiment 1 judges both views, and experiment 2 also builds the balanced order from
# the prompt-only view of `prompt_only_orders`.
#
# 1. **Which representation predicts the loss change?** E3's analysis (chapter 3) on the same
#    stored runs: for every held-out task and window between evaluations, the change of a prefix
#    measure against the change of the task's loss, scored by within-window rank correlation on
#    each task split, with each representation; pairs of representations compared by split.
# 2. **Which representation orders best?** WSD's nearest-first (NFT) and the coverage-balanced
#    nearest-first of chapter 7 (TMA's nearest rounds over the same list) built from each
#    representation, against chapter 4's random order (RT), on the side task splits.
# 3. **What each costs** to compute at the book's scale: what the runs that computed it spent.
#
# **What it takes to run**: the features of each split's training list and held-out set (once,
# cached, once per split; experiment 3 gives their cost), and new runs on each side split (NFT and
# balanced for hidden and gradient, and balanced by gradient from the prompts only; minilm's are
# chapters 4 and 7's runs, read back): "What it took" at the end counts them.
#
# Rerun with other parameters, for example:
# `papermill _build/cpu/book/08_representations.ipynb out.ipynb -p feature_kinds '["minilm", "hidden"]'`.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2 (the model is also the one whose hidden states and gradients are taken) |
# | `side_split_seeds` | task splits every experiment runs on |
# | `arrangement_seeds` | RT's shuffle and chapter 3's random orders: the first of them |
# | `feature_kinds` | the representations compared (`zsg_core.features.FEATURES`); the first is the reference |
# | `test_views` | how held-out instances are represented in experiment 1 (`with-answer`, `prompt-only`) |
# | `prompt_only_orders` | representations whose balanced order is also built from the prompt-only view (experiment 2) |
# | `sibling_steps` | the early window in which experiment 2 counts each order's leading task family (as chapter 7) |

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
feature_kinds = ["minilm", "hidden", "gradient"]
test_views = ["with-answer", "prompt-only"]
prompt_only_orders = ["gradient"]
sibling_steps = 20

# %% tags=["hide-cell"]
from dataclasses import replace

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, predict, rules, stats
from zsg_core.config import run_params

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())
reference = feature_kinds[0]
others = feature_kinds[1:]
orders, stored_e3 = experiments.chapter_runs("08_representations", globals())  # stored_e3: chapter 3's runs
tasks = compare.task_curves(orders)
epoch = compare.epoch_steps(next(iter(orders.values())))
point = findings.relative_step(findings.paper_fraction("E4"), epoch, sorted(tasks.step.unique()))
MEASURE = predict.WSD_MEASURE

# %% [markdown]
# ## Experiment 1: which representation predicts the loss change?
#
# Chapter 3's cluster-order and random-order runs on each side split, their prefixes measured with
# each representation (the measures that need a vector: cosine and Euclidean Min / Avg / Max /
# Centroid, and WSD's combination of Min and Avg). Below, each representation's within-window rho
# per split for the WSD combination and Cosine-Min, and chance (a measure of pure noise).

# %% tags=["hide-cell"]
power_rows = []
for view in test_views:
    for kind in feature_kinds:
        _, changes = predict.prefix_changes(stored_e3, batch_size=batch_size, kl=False, features=kind, test_view=view)
        power_rows.append(predict.power_by_split(changes).assign(kind=kind, view=view))
power_all = pd.concat(power_rows, ignore_index=True)

# %%
shown = power_all[power_all.measure.isin([MEASURE, "Cosine-Min", "Cosine-Avg", predict.NULL_MEASURE])]
summary = shown.groupby(["view", "measure", "kind"]).rho.agg(["mean", "min", "max"])
fig, axes = plt.subplots(1, len(test_views), figsize=(plots.PAGE_WIDTH / 2 * len(test_views), 3.6), sharey=True, squeeze=False)
for ax, view in zip(axes[0], test_views):
    table = shown[(shown.view == view) & (shown.measure != predict.NULL_MEASURE)]
    means = table.groupby(["measure", "kind"]).rho.mean().unstack("kind")[feature_kinds]
    means.plot.bar(ax=ax, rot=0)
    ax.set_xticklabels([m.replace(" (", "\n(") for m in means.index])  # "WSD (Min + w Avg)" on two lines
    width = 0.5 / len(feature_kinds)  # pandas' bars: 0.5 wide per group, one slot per kind
    for _, row in table.iterrows():  # each split's rho as a dot on its bar
        slot = feature_kinds.index(row.kind) - (len(feature_kinds) - 1) / 2
        ax.plot(list(means.index).index(row.measure) + slot * width, row.rho, "k.", ms=4)
    chance = shown[(shown.view == view) & (shown.measure == predict.NULL_MEASURE)].rho.mean()
    ax.axhline(chance, ls=":", color="grey", label="chance")
    ax.set(title=f"held-out side: {view}", xlabel="", ylabel="within-window rho (per split: dots)")
    ax.legend()
plots.legend_below(fig, axes[0, 0])  # the same kinds in every panel: one legend, under the bars and dots
plots.save(fig, "08_predictive_power")
plt.show()
bars = shown[shown.measure != predict.NULL_MEASURE].groupby(["view", "measure", "kind"]).rho.mean()
chance = shown[shown.measure == predict.NULL_MEASURE].groupby("view").rho.mean().round(2) + 0.0  # + 0.0: no "-0.00"
display(Markdown("; ".join(f"Held-out side {view}: the highest bar is {kind} on {measure} ({bars[view].max():.2f}), "
                            f"chance {chance[view]:.2f}" for view in test_views for measure, kind in [bars[view].idxmax()]).replace("; Held", "; held") + "."))
# a row per view and measure, a column per representation: the mean over splits (lowest to highest)
spread = summary.drop(index=predict.NULL_MEASURE, level="measure").apply(
    lambda r: f"{findings.signed(r['mean'])} ({findings.signed(r['min'], 2)} to {findings.signed(r['max'], 2)})", axis=1)
display(plots.table(spread.unstack("kind")[feature_kinds], index=True))
wsd = summary.xs(MEASURE, level="measure")["mean"]
display(Markdown("Each cell: the mean rho over splits, and in brackets the lowest and highest split's (not an interval). "
                 f"On {MEASURE}, the measure the orders are built on, the means: " + "; ".join(
    f"held-out side {view}: " + ", ".join(f"{kind} {wsd[view, kind]:.3f}" for kind in feature_kinds) for view in test_views)
    + "."))

# %% [markdown]
# The parts judged, for each view of the held-out side (with answers, the paper's; prompts only,
# the fair one), on the WSD combination, the measure the paper built its orders on: every
# representation against chance, and every pair.

# %%
pairs = ([(k, "chance") for k in feature_kinds] + [(k, reference) for k in others]
         + [(a, b) for i, a in enumerate(others) for b in others[i + 1:]])
judged_by_view = {}  # per view: rho of the WSD measure per split and kind, with chance as a kind of its own
for view in test_views:
    here = power_all[power_all.view == view]
    chance = here[(here.measure == predict.NULL_MEASURE) & (here.kind == reference)]
    judged_by_view[view] = pd.concat([here[here.measure == MEASURE][["split", "kind", "rho"]],
                                      chance[["split", "rho"]].assign(kind="chance")], ignore_index=True)
part = dict(experiment="S1", paper=findings.PAPER["S1"]["text"],
            claim=f"Which representation predicts the held-out loss change ({MEASURE} of the prefix)")


def named_for(view: str, f: findings.Finding) -> findings.Finding:
    return f if view == "with-answer" else replace(f, part=f"{f.part} (prompts only)")


# %% tags=["verdict"]
display(Markdown(rules.stated("representations")))
found = [named_for(view, f) for view, judged in judged_by_view.items()
         for f in rules.representations(judged, pairs, **part)]
plots.verdict_table(found, ["part", "measured", "p", "verdict"])

# %% [markdown]
# ## Experiment 2: which representation orders best?
#
# NFT and the coverage-balanced nearest-first, each built from every representation, and RT, on
# the side splits (the band spans them); the dotted line is chapter 4's reading point. Below the
# figure, each order's loss there and, as in chapter 7, what it received in its first
# `sibling_steps` steps: the task family that contributed most and its share, averaged over splits.
# Last, the weight WSD gave Avg in each order: the paper's mean(MD) / mean(AD) where the mean of
# Avg is bounded away from 0, else the scale-free spread ratio (`similarity.wsd_weight`). The
# hidden states are centred on the pool, so their mean Avg can sit near that threshold, and the
# rule can then differ from split to split.

# %%
curves = compare.loss_curves(orders)
prompt_only_labels = [experiments.represented_label("balanced", f"{k}, prompts only") for k in prompt_only_orders]
labels = ["RT"] + [experiments.represented_label(o, k) for o in experiments.REPRESENTED_ORDERS for k in feature_kinds] \
    + prompt_only_labels
fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH, 4.2), sharey=True)
for ax, order in zip(axes, experiments.REPRESENTED_ORDERS):
    shown_kinds = ["RT", *feature_kinds] + ([f"{k}, prompts only" for k in prompt_only_orders] if order == "balanced" else [])
    kind_of = {("RT" if k == "RT" else experiments.represented_label(order, k)): k for k in shown_kinds}  # label -> its representation
    table = curves[curves.label.isin(kind_of)]
    plots.band_plot(table.assign(representation=table.label.map(kind_of)), ax, hue="representation", order=shown_kinds,
                    title=f"{order} by representation")
    ax.axvline(point, ls=":", color="grey")
plots.legend_below(fig, axes[-1])  # the same representation has the same colour in both panels; balanced's has them all
plots.save(fig, "08_orders")
plt.show()
seen = pd.DataFrame([{"label": label, **compare.leading_family(r, sibling_steps)} for (label, _), r in orders.items()])
at_point = curves[curves.step == point].groupby("label").loss.mean().reindex(labels)
leading = seen.groupby("label")[["its share", "families"]].mean()
lowest = {order: at_point[[label for label in labels if label.startswith(order)]].sort_values().iloc[:1]
          for order in experiments.REPRESENTED_ORDERS}
display(Markdown(f"At step {point} (dotted), RT {at_point['RT']:.3f}; the lowest of each panel: "
                 + ", ".join(f"{low.index[0]} {low.iloc[0]:.3f}" for low in lowest.values()) + "."))
display(plots.table(at_point.to_frame(f"loss at step {point}").join(leading).rename_axis("order"), index=True,
                    formats={"its share": "{:.0%}", "families": "{:.1f}"}))
# WSD's weight of Avg is chosen per split from the distances (`similarity.wsd_weight`): say which
# rule each WSD order used, since one order may mix the paper's mean ratio and the spread ratio
summaries = {key: r.manifest["arrangement"] for key, r in orders.items()}
weights = pd.DataFrame([{"order": label, "split": split, "w": a["wsd_w_avg"], "rule": a["wsd_weight_rule"]}
                        for (label, split), a in summaries.items()  # RT shuffles NFT's list: its weight orders nothing
                        if "wsd_w_avg" in a and a["method"] != "rt"])
display(Markdown("WSD's weight of Avg, per order and split (`similarity.wsd_weight`): " + "; ".join(
    f"{order}: " + ", ".join(f"split {row.split} {row.w:.3g} ({row.rule})" for row in rows.itertuples())
    for order, rows in weights.sort_values(["order", "split"]).groupby("order", sort=False)) + "."))

# %% [markdown]
# Each order against RT, and each representation's order against the same order built from the
# reference representation (the first of `feature_kinds`: MiniLM, the paper's), judged by the order
# rule at chapter 4's reading point:

# %%
named = experiments.represented_label
order_pairs = ([(named(o, k), "RT") for o in experiments.REPRESENTED_ORDERS for k in others]
               + [(named(o, k), named(o, reference)) for o in experiments.REPRESENTED_ORDERS for k in others]
               + [(label, "RT") for label in prompt_only_labels]
               + [(label, named("balanced", reference)) for label in prompt_only_labels])
order_part = dict(experiment="S2", paper=findings.PAPER["S2"]["text"],
                  claim="A nearest-first order built from the model's own representation beats random order and the "
                        "same order built from MiniLM",
                  point=f"step {point} ({point / epoch:.0%} of the epoch, chapter 4's reading point)")
gap_curves = stats.split_gaps(tasks, order_pairs).assign(experiment="S2", setting="orders by representation")

# %% tags=["verdict"]
display(Markdown(rules.stated("order")))
found_orders = rules.order_parts(tasks, point, labels, pairs=order_pairs,
                                 **order_part)
plots.verdict_table(found_orders, ["part", "measured", "p", "verdict"])

# %% [markdown]
# The verdicts above go to the findings table (the last chapter), with the curves they were read on:

# %% tags=["record"]
findings.record("08_representations", params, found + found_orders,
                gap_curves)

# %% [markdown]
# ## Experiment 3: what each representation costs
#
# Each representation is computed once per split, by the first run that needs it, and cached;
# that run's manifest records the seconds it took (`compare.feature_costs`): the LM's features
# of the split's training list and held-out set (or of the held-out side alone, where an earlier
# run had the training side), and MiniLM's vectors within the arranging of the split's first run.
# Figures from the machine and load the runs had; `benchmarks/bench_features.py` times the kinds
# side by side on one machine.

# %%
spent = compare.feature_costs(orders, stored_e3)
spent = spent[spent.kind.isin(feature_kinds)]
cost = spent.groupby(["kind", "part"], sort=False).agg(splits=("split", "nunique"), seconds=("seconds", "mean"),
                                                      texts=("texts", "mean"))
cost = cost.assign(minutes=cost.seconds / 60).drop(columns=["seconds"] + (["texts"] if not cost.texts.any() else []))
display(plots.table(cost.rename(columns={"minutes": "minutes per split (mean)", "texts": "texts embedded"}),
                   precision=1, index=True, formats={"texts embedded": lambda v: f"{v:,.0f}" if v else ""}))
unrecorded = [k for k in feature_kinds if k not in set(spent.kind)]
display(Markdown(" ".join(filter(None, [
    ("Per split, as the runs computed them: " + "; ".join(f"{kind} ({part}) {row.minutes:.1f} minutes"
                                                          for (kind, part), row in cost.iterrows()) + ".") if len(cost) else "",
    (f"No run read here records computing {findings.listed(unrecorded)}: it was in the cache before them "
     "(computed by earlier chapters).") if unrecorded else ""]))))

# %% [markdown]
# ## Against the literature

# %%
parts = {f.part: f for f in found + found_orders}


def said(part: str) -> str:
    f = parts.get(part)
    return "not run (kind not in feature_kinds)" if f is None else f"{f.part}: {f.measured} → {f.verdict}"  # a table cell: no markdown


claims = [  # (work, their claim, our test, the parts that test it)
    ("Nayak et al. 2026", "gradient distances predict the value of targeted data",
     "gradient > minilm, gradient > chance (experiment 1)", ["gradient > minilm", "gradient > chance"]),
    ("Nayak et al. 2026", "sentence embeddings do not", "minilm > chance (experiment 1)", ["minilm > chance"]),
    ("RDS+ (Ivison et al. 2025)", "mean-pooled hidden states are the best representation",
     "hidden > minilm, hidden > gradient (experiment 1); balanced (hidden) < balanced (minilm) (experiment 2)",
     ["hidden > minilm", "hidden > gradient", "balanced (hidden) < balanced (minilm)"]),
    ("LESS (Xia et al. 2024)", "projected gradients select the most useful targeted data",
     "balanced (gradient) < balanced (minilm), NFT (gradient) < RT (experiment 2)",
     ["balanced (gradient) < balanced (minilm)", "NFT (gradient) < RT"]),
]
literature = pd.DataFrame([{"work": work, "their claim": claim, "our test": test, "ours": "; ".join(map(said, tests))}
                           for work, claim, test, tests in claims])
display(plots.table(literature))
tested = [parts[name] for *_, tests in claims for name in tests if name in parts]
display(Markdown(f"Of the {len(tested)} parts run here that test these works' claims: {findings.tally(tested)}. Each verdict "
                 "is our test's, as the \"our test\" column words it, not the work's: where a work claims that something "
                 "does *not* hold, our test reproduced goes against it."))

# %% [markdown]
# Their claims are about *selecting* a subset at scale (thousands to millions of instances, 7B+
# models, task performance); ours are about *ordering* one fixed list for a 135M model, read on
# held-out loss early in training. Agreement or disagreement here says what transfers to ordering
# at this scale, not whether their selection results hold.
#
# ## What it took
#
# The runs above, from their manifests (chapters 3, 4 and 7's runs included; a rerun reads them back):

# %%
display(Markdown(compare.run_costs(orders, stored_e3)))

# %% [markdown]
# ## What we saw

# %%
means = power_all[power_all.measure == MEASURE].groupby(["view", "kind"]).rho.mean()
lines = [
    f"Within-window rho of the prefix's {MEASURE} with the loss change, mean over {len(side_split_seeds)} splits, "
    "held-out side with answers: " + ", ".join(f"{k} {findings.signed(means['with-answer', k])}" for k in feature_kinds)
    + (("; prompts only: " + ", ".join(f"{k} {findings.signed(means['prompt-only', k])}" for k in feature_kinds))
       if "prompt-only" in test_views else "") + ".",
    "Experiment 1: " + findings.tally(found) + ".",
    f"Experiment 2: the lowest mean held-out loss at step {point} is {at_point.idxmin()}'s, {at_point.min():.3f} "
    f"(RT {at_point['RT']:.3f}); the leading task family's share of the first {sibling_steps} steps: "
    + ", ".join(f"{label} {leading.loc[label, 'its share']:.0%}" for label in labels) + ".",
    f"Experiment 2 at step {point}: " + findings.tally(found_orders) + " (the table above gives each part's interval).",
    "What each representation cost the runs that computed it, per split: " + ("; ".join(
        f"{kind} ({part}) {row.minutes:.1f} minutes" for (kind, part), row in cost.iterrows()) or "none recorded") + ".",
]
display(Markdown("\n".join("- " + line for line in lines)))
