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
# # The data: tasks, the held-out split, and how close held-out instances sit to training
#
# The paper trains on many instruction tasks and measures loss on tasks it never trained on.
# This chapter builds that setting from the real data we have: generative tasks of
# **Natural Instructions v1** and **BIG-bench**, split by task into training and held-out sets
# (`zsg_core.split`), then looks at them through the paper's own sentence encoder
# (all-MiniLM-L6-v2): a UMAP map of training and held-out instances, and the nearest training
# neighbours of a few held-out instances. The question that matters for every later chapter:
# *how similar is the nearest training instance to a held-out one, and is that similarity a
# sibling task in disguise?* So the same numbers are computed for the family-blocked split too,
# where no held-out task shares a family with any training task.
#
# **What it takes to run**: no training; it builds two task splits (tokenizing each sampled
# instance once) and embeds their texts with MiniLM, both cached after the first time (a rerun
# computes neither again). Rerun with other parameters:
# `papermill _build/cpu/book/01_data.ipynb out.ipynb -p split_seed 1 -p max_len 256`.
#
# | parameter | meaning |
# |---|---|
# | `model` | the model whose tokenizer measures `max_len` (an asset, `tiny-llama`, or an HF folder) |
# | `split_seed` | seed of the task partition and the instance sample |
# | `test_tasks`, `train_per_task`, `test_per_task` | held-out tasks; instances per task |
# | `max_len` | longest instance kept, in tokens of the paper's format |
# | `umap_seed`, `examples` | the map's seed; how many held-out instances to show neighbours for |

# %% tags=["parameters"]
model = "smollm2-135m"
split_seed = 0
test_tasks = 36
train_per_task = 20
test_per_task = 5
max_len = 512
umap_seed = 0
examples = 3

# %% tags=["hide-cell"]
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display

from zsg_core.data import task_family
from zsg_core.embed import Encoder, embed_records, map_2d
from zsg_core.plots import save, table, use_style
from zsg_core.config import run_config, run_params

from zsg_core.runs import run_split

use_style()

# %%
params = run_params(globals())  # the split parameters above (and the model, whose tokenizer measures length)
split = run_split(run_config(**params))
blocked = run_split(run_config(**params, family_blocked=True))

# %%
sides = pd.DataFrame({"default split": split.summary(), "family-blocked": blocked.summary()}).drop("config")


def with_sibling(split_) -> int:
    """Held-out tasks whose family also has a task in the training pool."""
    trained = {task_family(r.task) for r in split_.train}
    return len({r.task for r in split_.test if task_family(r.task) in trained})


display(table(sides.rename(index=lambda key: key.replace("_", " ")), index=True))
display(Markdown("Held-out tasks that keep a sibling task (same family) in training: "
                 f"{with_sibling(split)} of {split.summary()['test_tasks']} in the default split, "
                 f"{with_sibling(blocked)} of {blocked.summary()['test_tasks']} in the family-blocked one."))

# %% [markdown]
# ## The split
#
# Tasks per side and source, with the instances kept and those dropped because the prompt and
# response did not fit in `max_len` tokens. A task none of whose examined instances fits is
# **unused**: it is in neither the training pool nor the held-out set.

# %%
report = split.report
display(table(report.groupby(["side", "source"])
               .agg(tasks=("task", "size"), families=("family", "nunique"), instances=("kept", "sum"),
                    too_long=("too_long", "sum"))
               .reset_index()))
too_long = report.groupby("source").too_long.sum() / (report.groupby("source").too_long.sum()
                                                      + report.groupby("source").kept.sum())
display(Markdown(f"{(report.side == 'unused').sum()} tasks are unused. Longer than {max_len} tokens: "
                 + ", ".join(f"{share:.0%} of the {source} instances examined" for source, share in too_long.items())
                 + "."))

# %% [markdown]
# The largest families on each side (BIG-bench families are capped at 40 tasks in the pool):

# %%
families = (report[report.kept > 0].groupby(["family", "side"]).size().unstack(fill_value=0)
            .sort_values("train", ascending=False).rename_axis(columns=None))
display(table(families.head(12), index=True))
largest = families.index[0]
display(Markdown(f"The largest family, `{largest}`, has {families.loc[largest, 'train']} tasks in the training pool "
                 f"and {families.loc[largest, 'test']} held out; {(families.test > 0).sum()} of the "
                 f"{len(families)} families used have a held-out task."))

# %%
from zsg_core.assets import load_tokenizer
from zsg_core.prompt import encoded_length

tokenizer = load_tokenizer(model)
lengths = pd.DataFrame([{"side": side, "source": r.source, "tokens": encoded_length(r, tokenizer)}
                        for side, records in (("train", split.train), ("held-out", split.test)) for r in records])
fig, ax = plt.subplots(figsize=(7, 3.2))
sns.histplot(lengths, x="tokens", hue="source", multiple="stack", bins=40, ax=ax)
ax.set(xlabel="tokens per instance (prompt + response, paper format)", ylabel="instances",
       title="Instance lengths")
save(fig, "01_lengths")
plt.show()
by_source = lengths.groupby("source").tokens
display(Markdown("Median length in tokens: " + "; ".join(f"{src} {m:.0f} (longest {x})" for src, m, x in
                                                        zip(by_source.median().index, by_source.median(), by_source.max()))
                 + f", of at most {max_len}."))

# %% [markdown]
# ## A map of the embeddings
#
# Every instance embedded as the paper does for its similarity arrangements (all messages
# joined), then projected to 2-D with UMAP. Training instances are coloured by family (the ten
# with most training instances, the rest grey); held-out instances are black crosses.

# %%
encoder = Encoder()
train_vecs = embed_records(split.train, "all", encoder)
test_vecs = embed_records(split.test, "all", encoder)
xy = map_2d(np.vstack([train_vecs, test_vecs]), seed=umap_seed)
train_family = pd.Series([task_family(r.task) for r in split.train])
top = train_family.value_counts().index[:10]
fig, ax = plt.subplots(figsize=(8, 6))
other = ~train_family.isin(top).to_numpy()
ax.scatter(*xy[: len(train_vecs)][other].T, s=4, c="#cccccc", label="other families")
# tab10's nine colours that are not grey (grey is "other families") and navy: ten a reader tells apart
palette = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7] + ["#000075"]
for colour, fam in zip(palette, top):
    sel = (train_family == fam).to_numpy()
    ax.scatter(*xy[: len(train_vecs)][sel].T, s=5, color=colour, label=fam)
ax.scatter(*xy[len(train_vecs):].T, s=22, marker="x", c="black", linewidths=1, label="held-out")
ax.set(xticks=[], yticks=[], title="UMAP of MiniLM embeddings: training (by family) and held-out instances")
ax.legend(fontsize=9, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
save(fig, "01_umap")
plt.show()
display(Markdown(f"{len(train_vecs):,} training instances ({(~other).mean():.0%} of them in the ten families with most "
                 f"instances, coloured) and {len(test_vecs)} held-out instances (crosses)."))

# %% [markdown]
# ## Nearest training neighbours
#
# For a few held-out instances, the three most similar training instances (cosine similarity of
# the embeddings). The paper's similarity arrangements put such neighbours first.

# %%
sims = test_vecs @ train_vecs.T
rng = np.random.default_rng(umap_seed)


def snippet(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


def escaped(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_[]<>#|" else c for c in text)


for i in rng.choice(len(split.test), size=min(examples, len(split.test)), replace=False):
    display(Markdown(f"**Held-out** `{split.test[i].task}`: {escaped(snippet(split.test[i].prompt, 160))}"))
    nearest_three = np.argsort(-sims[i])[:3]
    display(table(pd.DataFrame([{"cosine": float(sims[i, j]), "training task": split.train[j].task,
                                 "training prompt (end)": snippet(split.train[j].prompt, 70)}
                                for j in nearest_three])))
    siblings = sum(task_family(split.train[j].task) == task_family(split.test[i].task) for j in nearest_three)
    display(Markdown(f"{siblings} of these 3 neighbours {'comes' if siblings == 1 else 'come'} from the held-out task's own family "
                     f"(cosine {sims[i, nearest_three[0]]:.2f} to the nearest)."))

# %% [markdown]
# ## How much of that closeness is a sibling task?
#
# For each held-out instance: the cosine similarity of its nearest training instance, and whether
# that neighbour comes from the same task family. The same for the family-blocked split.

# %%
def nearest(split_):
    t = embed_records(split_.test, "all", encoder)
    x = embed_records(split_.train, "all", encoder)
    s = t @ x.T
    j = s.argmax(axis=1)
    return pd.DataFrame({"task": [r.task for r in split_.test], "nearest cosine": s.max(axis=1),
                         "same family": [task_family(split_.train[k].task) == task_family(r.task)
                                         for k, r in zip(j, split_.test)]})


near = {"default split": nearest(split), "family-blocked": nearest(blocked)}
both = pd.concat([d.assign(split=name) for name, d in near.items()])
fig, ax = plt.subplots(figsize=(7, 3.2))
sns.histplot(both, x="nearest cosine", hue="split", bins=30, element="step", stat="density", common_norm=False, ax=ax)
ax.set(title="Similarity of each held-out instance to its nearest training instance")
save(fig, "01_nearest")
plt.show()
display(Markdown("Median cosine to the nearest training instance: " + "; ".join(
    f"{name} {d['nearest cosine'].median():.2f}" for name, d in near.items()) + "."))
display(table(both.groupby("split").agg(median_nearest_cosine=("nearest cosine", "median"),
                                        share_nearest_in_same_family=("same family", "mean")),
              formats={"share_nearest_in_same_family": "{:.0%}"}, index=True))
display(Markdown("Held-out instances whose nearest training instance is a sibling task's: " + "; ".join(
    f"{d['same family'].mean():.0%} in the {name}" for name, d in near.items()) + "."))

# %% [markdown]
# ## What we saw

# %%
d, b = near["default split"], near["family-blocked"]
s = split.summary()
display(Markdown(
    f"- The default split has **{s['train_tasks']} training tasks** ({s['train_instances']:,} instances) and "
    f"**{s['test_tasks']} held-out tasks** ({s['test_instances']} instances); "
    f"{s['dropped_too_long']:,} sampled instances were longer than {max_len} tokens and were dropped, and "
    f"{s['removed_as_leaks']} training instances that repeated a held-out prompt were removed.\n"
    f"- For **{d['same family'].mean():.0%}** of held-out instances the nearest training instance comes from a "
    f"sibling task of the same family (median nearest cosine {d['nearest cosine'].median():.2f}). "
    f"In the family-blocked split that share is {b['same family'].mean():.0%} and the median nearest cosine "
    f"is {b['nearest cosine'].median():.2f}.\n"
    + ("- So a nearest-first arrangement on the default split can lean on sibling tasks, which the "
       "family-blocked split takes away." if d["same family"].mean() > b["same family"].mean() else
       "- The family-blocked split does not lower the share of sibling neighbours here.")))
