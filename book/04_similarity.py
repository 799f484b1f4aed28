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
# # Similarity: nearest-first, farthest-first and random by Weighted Similarity Distance (E4)
#
# The paper's causal test of its central claim: score every training instance by its **Weighted
# Similarity Distance** to the held-out set (WSD = Min distance + w x Avg distance, cosine over
# MiniLM embeddings), then train on the *same* instances in three orders: nearest first (**NFT**),
# farthest first (**FFT**, the exact reverse) and a random shuffle of them (**RT**). Same weights,
# hyperparameters and held-out set; only the order differs. The paper reports NFT < RT < FFT in
# held-out loss, from one run.
#
# What this chapter adds to the paper's single run:
# - the comparison on several **task splits** (`split_seeds`, each its own `test_tasks` held-out tasks and
#   its own RT shuffle): the interval of every gap is over splits, which carries the noise of the
#   held-out tasks, their instances and RT's shuffle at once (`zsg_core.stats` says why);
# - the claim judged **part by part** (NFT < RT, RT < FFT, NFT < FFT), each with its own verdict;
# - where the noise comes from: split-to-split against RT's shuffles on one split;
# - the **optimal-transport order** of the paper's code (E9): cheapest-to-move-to-the-test-set first;
# - **family-blocked splits**, where no held-out task has a sibling task (same BIG-bench family)
#   in training, and what each order's first steps were made of.
#
# **What it takes to run**: on the cpu profile, the runs of 60 steps listed by `zsg plan --chapters
# 04_similarity` (with its predicted time), the first on each new split also embedding it and
# filling its frozen-layer cache; "What it took" at the end gives this build's time. Seconds once
# the runs are stored. It needs the prepared
# assets (`make book` fetches them).
#
# Rerun with other parameters, for example:
# `papermill _build/cpu/book/04_similarity.ipynb out.ipynb -p split_seeds "[0,1,2,3,4,5,6]" -p lr 1e-4`.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2 |
# | `split_seeds` | task splits the comparison (and OT's, E9) is repeated on; the first also carries RT's extra shuffles |
# | `side_split_seeds` | task splits whose family-blocked versions are compared too |
# | `arrangement_seeds` | RT's shuffles: the first on every split, all of them on the first split |
# | `sibling_steps` | the early window (steps) over which what each order received is counted |

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
sibling_steps = 20

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, rules, stats
from zsg_core.config import run_params
from zsg_core.data import task_family

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())
runs = experiments.chapter_runs("04_similarity", globals())
first = split_seeds[0]
ORDERS = ["NFT", "RT", "FFT", "OT"]
CHAIN = ("NFT", "RT", "FFT")
# the first split: NFT, FFT, the RT shuffles and OT, one curve each (RT as a band over shuffles)
on_first = {k: v for k, v in runs["by_split"].items() if k[1] == first and k[0] != "RT"}
on_first |= runs["shuffles"] | {k: v for k, v in runs["ot"].items() if k[1] == first}
curves_first = compare.loss_curves(on_first)
tasks_split = compare.task_curves(runs["by_split"], runs["shuffles"])
tasks_blocked = compare.task_curves(runs["blocked"]) if "blocked" in runs else None
some_run = next(iter(runs["by_split"].values()))
epoch = compare.epoch_steps(some_run)
point = findings.relative_step(findings.paper_fraction("E4"), epoch, sorted(tasks_split.step.unique()))

# %% [markdown]
# ## Held-out loss under the four orders (first split)
#
# The band around RT spans its shuffles: the spread that order alone makes on one split.

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.8))
plots.band_plot(curves_first, ax, order=ORDERS, title=f"Averaged held-out loss, split {first}")
ax.axvline(point, ls=":", color="grey")
plots.save(fig, "04_orders")
plt.show()
on_first = curves_first[curves_first.step == point].groupby("label").loss.mean()[ORDERS].sort_values()
display(Markdown(f"At step {point} (dotted) on split {first}: " + ", ".join(f"{o} {v:.3f}" for o, v in on_first.items())
                 + f" (lowest first; RT the mean of its {curves_first[curves_first.label == 'RT'].seed.nunique()} shuffles)."))
by_step = curves_first.groupby(["label", "step"]).loss.mean().unstack(0)[ORDERS]
display(plots.table(by_step.T.rename_axis(index="order", columns="step"), index=True))
display(Markdown(f"Mean loss on split {first}: {findings.lowest_by_step(by_step)}."))

# %% [markdown]
# ## The gaps, over task splits
#
# Each pair's difference per step: per split, the mean over its held-out tasks of the first
# order's loss minus the second's (RT's shuffles averaged on the first split), then the mean over
# splits with its 95% t-interval. Below 0: the first order's held-out loss is lower. Left: the
# paper's kind of split (held-out tasks drawn at random). Right: the family-blocked splits. The
# dotted line is the reading point.

# %%
pairs = [("NFT", "RT"), ("RT", "FFT"), ("NFT", "FFT")]
gap_split = stats.split_gaps(tasks_split, pairs)
gap_blocked = stats.split_gaps(tasks_blocked, pairs) if tasks_blocked is not None else None
fig = plots.split_and_blocked(gap_split, gap_blocked, mark=point)
plots.save(fig, "04_gaps")
plt.show()


def gaps_at_point(gaps: pd.DataFrame) -> str:
    rows = gaps[gaps.step == point].set_index("comparison")
    return "; ".join(f"{c} {findings.fmt(stats.Estimate(r['diff'], r.lo, r.hi, int(r.n), r.p))}" for c, r in rows.iterrows())


display(Markdown(f"At step {point}, random splits (left): {gaps_at_point(gap_split)}"
                 + (f". Family-blocked splits (right): {gaps_at_point(gap_blocked)}" if gap_blocked is not None else "")
                 + ". The bands are 95% too; the verdict below reads the paper's claim on the wider interval of the "
                 "confirmatory family of claims."))
gap_steps = gap_split.pivot_table(index="comparison", columns="step", values="diff")
display(plots.table(gap_steps, index=True))
display(Markdown(f"Over the evaluations after step 0, the mean gap is above 0 at: {findings.above_zero_by_step(gap_steps.T)} "
                 "(above 0: the first order's loss is higher)."))

# %% [markdown]
# ## Where the noise is
#
# The standard deviation of one split's mean NFT - RT at the reading point, from three sources:
# the spread between splits (what the interval above is built from), the standard error of a
# split's mean over its held-out tasks, and the spread over RT's shuffles on the first split.
# Where the first dwarfs the last, more shuffles buy nothing and more splits buy power.

# %%
noise = stats.noise_sources(tasks_split, "NFT", "RT", point)
sds = {k: v for k, v in noise.items() if k not in ("splits", "shuffles")}
display(plots.table(pd.Series(sds).to_frame(f"SD of NFT - RT at step {point} ({noise['splits']} splits, "
                                              f"{noise['shuffles']} shuffles)").rename_axis("source"), index=True))
largest, smallest = max(sds, key=sds.get), min(sds, key=sds.get)
display(Markdown(f"The largest source, {largest} ({sds[largest]:.3f}), is {sds[largest] / sds[smallest]:.0f} times "
                 f"the smallest, {smallest} ({sds[smallest]:.3f})."))

# %% [markdown]
# How many task splits would decide each part: from the mean and the spread between splits seen
# here, the fewest splits whose interval at the part's level (the confirmatory family's, the
# paper's claim being part of it) excludes 0 with 80% chance, if the effect is as large as seen.
# A figure for planning the next build's splits, fixed before it runs; never a reason to add
# splits because an interval happens to exclude 0.

# %%
def splits_needed(a: str, b: str) -> dict[str, object]:
    diffs = stats.split_means(tasks_split, a, b, point)["diff"]
    sd = float(diffs.std(ddof=1)) if len(diffs) > 1 else float("nan")
    needed = stats.units_needed(float(diffs.mean()), sd, findings.interval_level("E4")) if sd > 0 else None
    return {"part": f"{a} - {b}", "mean": diffs.mean(), "SD between splits": sd, "splits run": len(diffs),
            "splits needed": "more than 200" if needed is None else needed}


planning = pd.DataFrame([splits_needed(a, b) for a, b in (("NFT", "RT"), ("RT", "FFT"), ("NFT", "FFT"))])
display(plots.table(planning))
display(Markdown("At the spread seen between splits, deciding each part as large as seen would take: "
                 + "; ".join(f"{r['part']} {r['splits needed']}" for r in planning.to_dict("records"))
                 + f" task splits (this chapter ran {len(split_seeds)})."))

# %% [markdown]
# ## What each order saw first
#
# BIG-bench groups near-identical subtasks into families (`list_functions/c001` ... `c250`). With
# held-out tasks drawn at random, a held-out task can keep siblings in training; the table shows
# whether nearest-first put them first. For each order and split, over its first `sibling_steps` steps:
# the family that contributed most instances and its share, how many families contributed, the
# instances received, the share of the task that contributed most, and the share of instances
# whose family also has a held-out task (RT's is the pool's own).

# %%
seen = pd.DataFrame([{"order": label, "split": seed, **compare.leading_family(r, sibling_steps),
                      "sibling share": compare.sibling_share(r, sibling_steps)}
                     for (label, seed), r in runs["by_split"].items()])
display(plots.table(seen.sort_values(["order", "split"]), formats={"its share": "{:.0%}", "sibling share": "{:.0%}",
                                                                     "leading task's share": "{:.0%}"}))
share = seen.groupby("order")["its share"]
display(Markdown("The leading family's share of the first steps, lowest to highest over splits: " + "; ".join(
    f"{order} {share.min()[order]:.0%} to {share.max()[order]:.0%}" for order in ORDERS if order in share.groups) + "."))

# %% [markdown]
# Per held-out task at the reading point, on every split: how many tasks each order beats RT on,
# by family of the held-out task (the families where NFT wins most first, up to 12 with a win; `tasks`
# counts a held-out task once per split it is held out in).

# %%
at_point = tasks_split[tasks_split.step == point].groupby(["label", "split", "task"]).loss.mean().unstack("label")
wins = pd.DataFrame({f"{o} below RT": at_point[o] < at_point["RT"] for o in ("NFT", "FFT")})
wins = wins.assign(family=[task_family(t) for t in wins.index.get_level_values("task")])
by_family = wins.groupby("family").agg(tasks=("NFT below RT", "size"), **{
    "NFT below RT": ("NFT below RT", "sum"), "FFT below RT": ("FFT below RT", "sum")})
won = by_family[(by_family["NFT below RT"] > 0) | (by_family["FFT below RT"] > 0)]
shown_families = won.sort_values(["NFT below RT", "FFT below RT"], ascending=False).head(12)
display(plots.table(shown_families, index=True))
display(Markdown(f"NFT is below RT on {int(by_family['NFT below RT'].sum())} of {int(by_family.tasks.sum())} "
                 f"(split, held-out task) pairs, FFT on {int(by_family['FFT below RT'].sum())}; the "
                 f"{len(shown_families)} families shown hold {int(shown_families['NFT below RT'].sum())} of NFT's and "
                 f"{int(shown_families['FFT below RT'].sum())} of FFT's."))

# %% [markdown]
# ## The verdict, part by part
#
# The paper read its figure early in its epoch (its step and epoch are quoted just before the verdict
# below); the reading point here is the evaluated step nearest the same fraction of our epoch.

# %%
paper = findings.PAPER["E4"]
relative = f"step {point} of {max_steps} ({point / epoch:.1%} of the {epoch}-step epoch)"
claims = {"E4": "Seeing high-similarity data earlier lowers held-out loss: NFT < RT < FFT (claim 3)",
          "E4+": "Beyond the paper: the same on family-blocked splits (no sibling task in training)",
          "E9": "Beyond the paper: the optimal-transport order of the paper's code (cheapest first) beats RT"}
papers = {"E4": paper["text"], "E4+": "not studied", "E9": "not in the paper's figures"}
parts = {e: dict(experiment=e, claim=claims[e], paper=papers[e], point=relative) for e in claims}
display(Markdown(f"Every part is read at {relative}; the paper read its figure at step {paper['step']} of "
                 f"{paper['epoch']:,}."))
with_ot = pd.concat([tasks_split, compare.task_curves(runs["ot"])])
gap_curves = pd.concat([gap_split.assign(experiment="E4", setting="random splits")]
                       + ([gap_blocked.assign(experiment="E4+", setting="family-blocked splits")]
                          if gap_blocked is not None else []))

# %% tags=["verdict"]
display(Markdown(rules.stated("order")))
found = rules.order_parts(tasks_split, point, CHAIN, **parts["E4"])
if tasks_blocked is not None:
    found += rules.order_parts(tasks_blocked, point, CHAIN, **parts["E4+"])
found += rules.order_parts(with_ot, point, ("OT", "RT"), **parts["E9"])
plots.verdict_table(
    found, ["experiment", "part", "measured", "p", "verdict"])

# %% [markdown]
# The verdicts above go to the findings table (the last chapter), with the curves they were read on:

# %% tags=["record"]
findings.record("04_similarity", params, found, gap_curves)

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (a rerun of this chapter reads them back):

# %%
display(Markdown(compare.run_costs(runs)))

# %% [markdown]
# ## What we saw

# %%
by_part = {(f.experiment, f.part): f for f in found}
early = [s for s in sorted(gap_split.step.unique()) if 0 < s <= max_steps // 2]
mean_early = gap_split[gap_split.step.isin(early)].groupby("comparison")["diff"].mean()
nft_seen = seen[seen.order == "NFT"]
lines = [
    f"One epoch over the {some_run.manifest['train_instances']:,}-instance training list is {epoch} steps; the "
    f"paper's reading point (step {paper['step']} of {paper['epoch']:,}) is step {point} here. Paper: {paper['text']}.",
    "At that step, over " + f"{len(split_seeds)} task splits: "
    + "; ".join(f"{f.part}: {f.measured} → **{f.verdict}**" for f in found if f.experiment == "E4") + ".",
    "Averaged over the first half of the run: " + ", ".join(f"{c} {findings.signed(v)}" for c, v in mean_early.items()) + ".",
    f"Noise of one split's NFT - RT at step {point}: {noise['between splits']:.3f} between splits, "
    f"{noise['tasks within a split']:.3f} from its held-out tasks, {noise['shuffles within a split']:.3f} from RT's "
    f"{noise['shuffles']} shuffles on split {first}.",
    f"NFT's first {sibling_steps} steps: the leading family made up "
    + ", ".join(f"{r['its share']:.0%} ({r['leading family']}, split {r['split']})" for _, r in nft_seen.iterrows())
    + f" of them; RT's leading family made up {seen[seen.order == 'RT']['its share'].mean():.0%} on average.",
    f"NFT was below RT on {int(wins['NFT below RT'].sum())} of {len(wins)} (split, held-out task) pairs at step {point}.",
]
if tasks_blocked is not None:
    lines.append(f"Family-blocked splits ({tasks_blocked.split.nunique()}): "
                 + "; ".join(f"{f.part}: {f.measured} → **{f.verdict}**" for f in found if f.experiment == "E4+") + ".")
ot = by_part[("E9", "OT < RT")]
lines.append(f"OT order (E9) over {len(split_seeds)} task splits: {ot.measured} → **{ot.verdict}**.")
display(Markdown("\n".join("- " + line for line in lines)))
