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
# # Orders that watch the model: can any order beat random here?
#
# Every order in the chapters before this one is decided before the first step, from MiniLM, from
# the model's hidden states or from its gradients. This chapter asks whether that is what limits
# them: the orders below decide each batch *while training*, from what the model does at its
# current weights on a small **validation set** of the held-out tasks (`val_per_task` instances of
# each, drawn after the held-out instances the book evaluates on, never one of them):
#
# - **loss-driven** rounds: TMA's round robin over the held-out tasks (each task in turn takes its
#   nearest remaining training instance by MiniLM), the task whose validation loss is highest
#   going first, re-ranked every `adapt_every` steps. Every task still takes one instance per
#   round, so the losses decide the order within a round (and who wins an instance two tasks
#   want), not which tasks are served: the design limits how far it can differ from TMA-like rounds;
# - **gradient-aligned**: every `adapt_every` steps, the next batches are the remaining instances
#   whose sketched gradient at the current weights (chapter 8's LESS-like features, up to
#   `adapt_pool` of them per re-rank) aligns best with a held-out task's validation gradient, taken
#   round robin over the tasks (each re-rank resumes the round where the last stopped) so that no
#   family comes first (the concentration chapter 7 measures);
# - a **one-step lookahead**: at each step, of `lookahead_batches` random batches of the remaining
#   instances, the one whose step lowers the validation loss most (each tried from the current
#   weights, then undone). It is a reference for greedy batch choice, not a method one would run
#   and not a bound on every order: a longer horizon or more candidates could do better.
#
# Each is a permutation of the same training list. A run of `max_steps` steps trains the first
# `max_steps` x `batch_size` positions of it, so these orders, like chapter 4's, differ in *which*
# instances a short run reaches as well as when. Each is read against random order (RT, chapter 4's
# runs) and against a static order chosen in advance as the strongest candidate:
# coverage-balanced nearest-first by gradients (chapter 8). That static order is built from the
# held-out instances themselves, prompts and answers, as chapter 8's orders are; the adaptive orders
# see only the `val_per_task` validation instances of each task, so the comparison favours the
# static order. Online batch selection (GREATS, Wang et al. 2024) picks *what* to train on from the
# current gradients; we know of no study that turns such signals on *ordering* a fixed set for
# unseen tasks.
#
# **What it takes to run**: per headline split, two adaptive runs and the static order (RT is
# chapter 4's); the lookahead costs several steps per step and runs on
# `lookahead_split_seeds` only (none in the default profile; `cpu-full` runs it on the side
# splits). "What each order costs" gives each order's cost and where its time goes; "What it
# took", the chapter's total.
#
# Rerun with other parameters, for example:
# `papermill _build/cpu/book/09_adaptive.ipynb out.ipynb -p adapt_every 5 -p lookahead_split_seeds "[0]"`.
#
# | parameter | meaning |
# |---|---|
# | `model`, split and training parameters | as in chapter 2 |
# | `split_seeds` | task splits RT, the static order and the adaptive orders run on (chapter 4's) |
# | `arrangement_seeds` | RT's shuffle and the seeded adaptive orders' seed: the first of them |
# | `val_per_task` | validation instances per held-out task, the only held-out data the orders see |
# | `adapt_every` | steps between the adaptive orders' re-rankings |
# | `adapt_pool` | remaining instances the gradient-aligned order sketches per re-rank (a seeded sample) |
# | `lookahead_batches` | candidate batches the lookahead tries at each step |
# | `lookahead_split_seeds` | task splits the lookahead runs on |

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
val_per_task = 2
adapt_every = 10
adapt_pool = 160
lookahead_batches = 4
lookahead_split_seeds = []

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from zsg_core import compare, experiments, findings, plots, rules, stats
from zsg_core.config import run_params

plots.use_style()

# %% tags=["hide-cell"]
params = run_params(globals())
runs = experiments.chapter_runs("09_adaptive", globals())
tasks = compare.task_curves(runs)
epoch = compare.epoch_steps(next(iter(runs.values())))
point = findings.relative_step(findings.paper_fraction("E4"), epoch, sorted(tasks.step.unique()))
ADAPTIVE = list(experiments.ADAPTIVE_ORDERS)
BOUND = list(experiments.LOOKAHEAD) if lookahead_split_seeds else []
labels = ["RT", experiments.BEST_STATIC, *ADAPTIVE, *BOUND]

# %% [markdown]
# ## Held-out loss under each order
#
# Left: the mean over task splits with the band spanning them (the lookahead over its own
# splits). Right: each order minus RT per split, with the 95% t-interval over splits (below 0: the
# order is ahead of random). Dotted: chapter 4's reading point.

# %%
curves = compare.loss_curves(runs)
pairs = [(label, "RT") for label in labels[1:]]
gaps = stats.split_gaps(tasks, pairs)
fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH, 4))
# the lookahead's curves are over its own, fewer splits: its legend says how many
fewer = {b: f"{b}, {len(lookahead_split_seeds)} splits" for b in BOUND}
plots.band_plot(curves.replace({"label": fewer}), axes[0], order=[fewer.get(x, x) for x in labels],
                title=f"Held-out loss ({len(split_seeds)} splits)")
plots.gap_plot(gaps.replace({"comparison": {f"{b} - RT": f"{v} - RT" for b, v in fewer.items()}}), axes[1],
               title="each order - RT over splits", skip_colours=1)  # each order's colour on the left
for ax in axes:
    ax.axvline(point, ls=":", color="grey")
plots.save(fig, "09_adaptive")
plt.show()
# the orders that ran on every split of `split_seeds` (the lookahead runs on its own)
at_point = curves[curves.step == point].groupby("label").loss.mean().reindex(labels[: len(labels) - len(BOUND)])
display(Markdown(f"At step {point}, over the {len(split_seeds)} splits, the mean held-out loss is lowest under "
                 f"{at_point.idxmin()} ({at_point.min():.3f}); "
                 "against RT: " + "; ".join(f"{a} {findings.fmt(stats.over_units(stats.split_means(tasks, a, 'RT', point)['diff']), level=0.95)}"
                                            for a, _ in pairs) + "."))

# %% [markdown]
# ## What the adaptive orders did
#
# How often each re-ranked (asked the model), how much of its first `adapt_every` steps' batches
# went to the leading task family (chapter 7's concentration; RT's share is the baseline) and how
# many task families those batches came from, and, for the lookahead, how far apart its candidate
# batches were at each step: the chosen one's validation loss below the mean of the others',
# averaged over steps, on the validation set it chose by (so an optimistic figure of what one
# step's choice is worth).

# %% tags=["hide-input"]
rows = []
for (label, seed), r in runs.items():
    family = compare.leading_family(r, adapt_every)
    tried = [sorted(t) for t in r.manifest.get("tried", []) if len(t) > 1]
    rows.append({"order": label, "split": seed, "re-ranks": len(r.manifest.get("reranked_at", [])),
                 "leading family's share": family["its share"], "families": family["families"],
                 "choice worth": sum(sum(t[1:]) / len(t[1:]) - t[0] for t in tried) / len(tried) if tried else None})
did = pd.DataFrame(rows)
columns = ["re-ranks", "leading family's share", "families"] + (["choice worth"] if BOUND else [])
summary = did.groupby("order", sort=False)[columns].mean().reindex(labels)
display(summary.style.format({"re-ranks": "{:.0f}", "leading family's share": "{:.0%}", "families": "{:.1f}",
                              "choice worth": "{:.4f}"}, na_rep="–"))
lead = summary["leading family's share"]
display(Markdown(
    f"In its first {adapt_every} steps each order gave its leading family {lead.drop('RT').min():.0%}-"
    f"{lead.drop('RT').max():.0%} of the batches (most: {lead.drop('RT').idxmax()}), RT {lead['RT']:.0%}."
    + (f" At each step the lookahead's chosen batch left a validation loss {summary.loc[BOUND[0], 'choice worth']:.4f} "
       f"below the mean of the other {lookahead_batches - 1} candidates (mean over steps and splits; measured on the "
       "validation set it chose by)."
       if BOUND and pd.notna(summary.loc[BOUND[0], "choice worth"]) else "")))

# %% [markdown]
# Each order against RT and each adaptive order against the static order, judged by the order
# rule at chapter 4's reading point (exploratory: a question of this book, not a claim of the
# paper). The lookahead's gap to RT, where it ran, is what this greedy one-step choice of batch
# gained here.

# %%
order_pairs = [(label, "RT") for label in labels[1:]] + [(label, experiments.BEST_STATIC) for label in ADAPTIVE + BOUND]
part = dict(experiment="A", paper=findings.PAPER["A"]["text"],
            claim="An order decided while training, from a validation set of the held-out tasks, beats random "
                  "order and the static order",
            point=f"step {point} ({point / epoch:.0%} of the epoch, chapter 4's reading point)")

gap_curves = gaps.assign(experiment="A", setting="orders decided while training")

# %% tags=["verdict"]
display(Markdown(rules.stated("order")))
found = rules.order_parts(tasks, point, labels, pairs=order_pairs, **part)
plots.verdict_table(found, ["part", "measured", "p", "verdict"])

# %% [markdown]
# The verdicts above go to the findings table (the last chapter), with the curves they were read on:

# %% tags=["record"]
findings.record("09_adaptive", params, found, gap_curves)

# %% [markdown]
# ## What each order costs
#
# Per order, the mean over its runs of each part of a run's wall time (from the runs' manifests;
# `arrange` is arranging and loading the model, with the LM's gradient features where an order is
# built from them; `adapt` is the time its probe of the model took: validation losses, sketched
# gradients, tried steps; `cache` is computing the frozen layers' outputs of instances no run on
# the split had read, work done once per instance by whichever run reads it first), and its cost
# over RT's on the same split. Every order trains the same `max_steps` steps and evaluates the
# same held-out set, but RT's runs are chapter 4's, trained in another sitting under another
# load; so the ratio is taken inside each run first, then over RT's (`compare.cost_over` says how
# and what it assumes).

# %%
costs = compare.cost_over(compare.cost_parts(runs), "RT").reindex(labels)
trained = costs.train.drop("RT")
display(plots.table(costs.rename(columns=lambda c: c if c.startswith("times") else f"{c} (s)"), precision=1, index=True))
display(Markdown(
    f"The same {max_steps} steps of training took {costs.train['RT']:.0f} s in RT's runs and {trained.min():.0f}-"
    f"{trained.max():.0f} s in the others' (mean over splits): the sittings differed. Cost over RT's on the same split, "
    "corrected for the sitting, mean over splits: " + "; ".join(
        f"{label} {row['times RT']:.1f}x (arranging {row.arrange:.0f} s, adapting {row.adapt:.0f} s of its {row.wall:.0f} s)"
        for label, row in costs.drop("RT").iterrows()) + "."))

# %% [markdown]
# ## What it took
#
# The runs above, from their manifests (RT's are chapter 4's; a rerun reads them back):

# %%
display(Markdown(compare.run_costs(runs)))

# %% [markdown]
# ## What we saw

# %%
by_part = {f.part: f for f in found}
beat_rt = [a for a in labels[1:] if by_part[f"{a} < RT"].verdict == findings.REPRODUCED]
against_static = {a: by_part[f"{a} < {experiments.BEST_STATIC}"].verdict for a in ADAPTIVE + BOUND}
ahead_of_static = [a for a, v in against_static.items() if v == findings.REPRODUCED]
behind_static = [a for a, v in against_static.items() if v == findings.CONTRADICTED]
watching = [a for a in ADAPTIVE + BOUND if a in beat_rt]

answer = (f"The chapter's question: of the {len(ADAPTIVE + BOUND)} orders that watch the model, "
          + (f"{findings.listed(watching)} beat random order at step {point}" if watching else f"none beat random order at step {point}")
          + f"; the static order {'beat it too' if experiments.BEST_STATIC in beat_rt else 'did not'}; "
          + (f"{findings.listed(ahead_of_static)} beat the static order" if ahead_of_static else "none of them beat the static order")
          + (f", which beat {findings.listed(behind_static)}" if behind_static else "")
          + f" (the static order is built from the held-out instances themselves, the others from {val_per_task} validation "
          "instances per held-out task). In a run this short each order also decides *which* instances are trained on, "
          "so each gap carries which instances were trained on as well as when.")
# the parts are exploratory, each on its own 95% interval; which would stand within this chapter's
# own family (Bonferroni over its parts) says which verdicts are robust and which marginal
together = rules.within_family(found)
lines = [
    answer,
    f"Each part is judged on its own 95% interval. On Bonferroni intervals over this chapter's {len(found)} parts "
    f"(p below {findings.ALPHA / len(found):.4f}), "
    + (f"these verdicts would hold: {'; '.join(f'{p} ({by_part[p].verdict})' for p in together['stands'])}"
       if together["stands"] else "no verdict would hold")
    + (f"; these would become inconclusive: {'; '.join(f'{p} ({by_part[p].verdict})' for p in together['falls'])}"
       if together["falls"] else "") + ".",
    f"At step {point} ({len(split_seeds)} splits), against RT: "
    + "; ".join(f"{by_part[f'{a} < RT'].measured} → **{by_part[f'{a} < RT'].verdict}**" for a in labels[1:]) + ".",
    f"Against the static order ({experiments.BEST_STATIC}): " + "; ".join(f"{f.part}: {f.measured} → **{f.verdict}**" for f in found
                                                  if f.part.endswith(f"< {experiments.BEST_STATIC}")) + ".",
    (f"The lookahead ran on {len(lookahead_split_seeds)} split(s): {by_part[f'{BOUND[0]} < RT'].measured} → "
     f"**{by_part[f'{BOUND[0]} < RT'].verdict}**"
     + (": no gain of greedy one-step batch choice shown on these splits" if by_part[f'{BOUND[0]} < RT'].verdict != findings.REPRODUCED
        else ": what greedy one-step batch choice gained here")
     + " (a longer horizon or more candidates could gain more)." if BOUND else
     "The lookahead did not run in this profile (`lookahead_split_seeds` is empty): what greedy choice of "
     "batch could gain here is left to `cpu-full`."),
    "Cost over RT's, corrected for the sitting (mean over splits): " + ", ".join(
        f"{label} {row['times RT']:.1f}x" for label, row in costs.drop("RT").iterrows()) + ".",
]
display(Markdown("\n".join("- " + line for line in lines)))
