"""What the chapters read off stored runs: their curves as tidy tables, the shape of a curve, and
the per-chapter summaries built on them (E1's metric shapes and declines, E2's sudden drops,
what a run received and how much of it was a sibling of the held-out tasks).

    curves = loss_curves(results)   # label, seed, step, loss (micro average over test instances)

The layer between the run store (`runs`, launched by `experiments`) and the figures (`plots`);
intervals and gaps are `stats`. It never trains anything, and every number it returns is
computed from stored runs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import RunConfig
from .data import DataError, task_family
from .findings import counted
from .runs import RunResult, run_split
from .split import SplitConfig


def labelled(groups: Sequence[Mapping[tuple[str, int], RunResult]]) -> list[tuple[str, int, RunResult]]:
    """(label, key seed, run) over one or more groups of runs, each (label, run) once: groups keyed
    by different seeds (split seeds, shuffles) may hold the same run twice."""
    seen: set[tuple[str, str]] = set()
    out = []
    for results in groups:
        for (label, seed), result in results.items():
            if (label, result.config.key()) not in seen:
                seen.add((label, result.config.key()))
                out.append((label, seed, result))
    return out


def _identity(result: RunResult) -> dict[str, int]:
    """What a run's curve is a unit of: its task split and its order seed (the shuffle)."""
    return {"split": result.config.split.seed, "order_seed": result.config.arrangement_seed}


def loss_curves(*groups: Mapping[tuple[str, int], RunResult], by: Mapping[str, str] | None = None,
                weight: Literal["instances", "tokens"] = "instances") -> pd.DataFrame:
    """Held-out loss per run and step: the micro average over test instances (`mean_loss`), with
    the run's label, key seed, split and order seed. With `by` (task -> group name, e.g. its
    source), one curve per group instead (column `group`). With `weight="tokens"`, every answer
    token weighs the same (the paper's Trainer averages token losses within a batch), so longer
    answers count more; with 5 instances per task, only this average can differ from the
    per-task one."""
    if weight not in ("instances", "tokens"):
        raise DataError(f"unknown weight {weight!r}; use 'instances' or 'tokens'")
    if weight == "tokens" and by is not None:
        raise DataError("token-weighted curves are drawn per run, not per group")
    frames = []
    for label, seed, result in labelled(groups):
        if weight == "tokens":
            table = result.eval_loss.assign(nll=result.eval_loss.loss * result.eval_loss.tokens)
            summed = table.groupby("step")[["nll", "tokens"]].sum()
            curve = (summed.nll / summed.tokens).rename("loss").reset_index()
        elif by is None:
            curve = result.mean_loss().rename("loss").reset_index()
        else:
            table = result.eval_loss.assign(group=result.eval_loss.task.map(by))
            if table.group.isna().any():
                raise DataError(f"no group for test task(s) {sorted(set(table.task[table.group.isna()]))[:3]}")
            curve = table.groupby(["group", "step"]).loss.mean().reset_index()
        frames.append(curve.assign(label=label, seed=seed, **_identity(result)))
    if not frames:
        raise DataError("no runs to draw curves from")
    cols = ["label", "seed", "split", "order_seed"] + (["group"] if by is not None else []) + ["step", "loss"]
    return pd.concat(frames, ignore_index=True)[cols]


def task_curves(*groups: Mapping[tuple[str, int], RunResult], measure: str = "loss") -> pd.DataFrame:
    """Per-task held-out loss (`task_loss`; or its answer or EOS part, `runs.LOSS_MEASURES`), tidy:
    label, seed, split, order_seed, task, step, loss."""
    frames = [r.task_loss(measure).stack().rename("loss").reset_index().assign(label=label, seed=seed, **_identity(r))
              for label, seed, r in labelled(groups)]
    if not frames:
        raise DataError("no runs to draw curves from")
    return pd.concat(frames, ignore_index=True)[["label", "seed", "split", "order_seed", "task", "step", "loss"]]


def _runs_in(groups) -> list[RunResult]:
    """Every stored run in some (nested) mappings of runs, each once."""
    found: dict[str, RunResult] = {}
    pending = list(groups)
    while pending:
        item = pending.pop()
        if isinstance(item, RunResult):
            found.setdefault(item.config.key(), item)
        elif isinstance(item, Mapping):
            pending.extend(item.values())
        else:
            raise DataError(f"not a run or a mapping of runs: {type(item).__name__}")
    return list(found.values())


def run_costs(*groups) -> str:
    """One sentence on what a chapter's runs cost when they were trained: how many, wall time
    (training and evaluation), on which machine kind, in which precision (from their manifests
    and configs)."""
    results = _runs_in(groups)
    if not results:
        raise DataError("no runs to cost")
    parts = {"train_seconds": "training", "eval_seconds": "evaluating", "generate_seconds": "generating",
             "adapt_seconds": "probing the model (orders that watch it)"}
    minutes = {k: sum(r.manifest.get(k) or 0 for r in results) / 60 for k in ("wall_seconds", *parts)}
    def machine(m: dict | None) -> str:
        if not m:
            return "a machine not recorded (runs stored before manifests named it)"
        return f"CPU kind {m['cpu_capability']}, {counted(m['threads'], 'thread')}" if m["device"] == "cpu" else m["name"]

    machines = sorted({machine(r.manifest.get("machine")) for r in results})
    precisions = sorted({r.config.train.precision for r in results})
    shown = {k: f"{m:.1f}" if m < 10 else f"{m:.0f}" for k, m in minutes.items()}
    spent = ", ".join(f"{shown[k]} {what}" for k, what in parts.items() if minutes[k] > 0)
    return (f"{counted(len(results), 'run')}; {shown['wall_seconds']} minutes of wall time when they were trained "
            f"({spent}, the rest arranging and caching), on {' and '.join(machines)}, in {' and '.join(precisions)}. "
            "Read back from the run store, they take seconds.")


COST_PARTS = {"train_seconds": "train", "eval_seconds": "eval", "prepare_seconds": "arrange",
              "adapt_seconds": "adapt", "cache_seconds": "cache"}  # a run's wall time, by what it was spent on


def feature_costs(*groups) -> pd.DataFrame:
    """What each representation cost the runs that computed it, from their manifests: per kind,
    split and part (a split's whole training list and held-out set, or the held-out side alone
    where another run had computed the training side), the seconds spent computing it. MiniLM's
    vectors are computed while arranging a split's first run: its row is that run's arranging
    (loading and embedding the split's texts), with the number of texts embedded. Columns kind,
    part, split, seconds, texts (0 for the LM's features)."""
    rows, embedded = [], {}
    for r in _runs_in(groups):
        split = r.config.split.seed
        for key, seconds in (r.manifest.get("features_seconds") or {}).items():
            kind, _, rest = key.partition(" (")
            rows.append({"kind": kind, "part": "held-out side" if rest else "whole split", "split": split,
                         "seconds": float(seconds), "texts": 0})
        texts = r.manifest.get("texts_embedded") or 0
        # keyed by the whole split, not its seed: a TMA pool or a family-blocked split can share a seed
        if texts > embedded.get(r.config.split, (0, 0.0))[0]:  # its first run; later ones embed a few new texts
            embedded[r.config.split] = (texts, float(r.manifest["prepare_seconds"]))
    rows += [{"kind": "minilm", "part": "whole split", "split": config.seed, "seconds": seconds, "texts": texts}
             for config, (texts, seconds) in embedded.items()]
    return pd.DataFrame(rows, columns=["kind", "part", "split", "seconds", "texts"])


def cost_parts(runs: Mapping[tuple[str, int], RunResult]) -> pd.DataFrame:
    """Per run: order (its label), split (the key seed), wall time and each of `COST_PARTS`, in
    seconds from its manifest (0 where it spent none)."""
    if not runs:
        raise DataError("no runs to cost")
    return pd.DataFrame([{"order": label, "split": seed, "wall": r.manifest["wall_seconds"],
                          **{name: r.manifest.get(key) or 0.0 for key, name in COST_PARTS.items()}}
                         for (label, seed), r in runs.items()])


def cost_over(parts: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per order (in `parts`' order): the mean over splits of each part, and "times <baseline>":
    its cost over the baseline's on the same split, corrected for the sitting, mean over splits.

    Runs trained in different sittings ran under different loads, so their wall times are not
    comparable. The ratio is taken inside each run first (wall time without its cache part, which
    whichever run reads an instance first pays, over its own training and evaluation time, which
    a load moves alike if arranging and probing slow down as training does), then the order's
    over the baseline's on the same split. An order whose batches are longer trains longer, which
    lowers its ratio a little."""
    missing = set(parts.split) - set(parts.split[parts.order == baseline])
    if missing:
        raise DataError(f"no {baseline} run on split(s) {sorted(missing)} to compare costs with")
    per_training = (parts["wall"] - parts["cache"]) / (parts["train"] + parts["eval"])  # .eval: a DataFrame method
    base = per_training[parts.order == baseline].groupby(parts.split[parts.order == baseline]).mean()
    column = f"times {baseline}"
    table = parts.assign(**{column: per_training / parts.split.map(base)})
    return table.groupby("order", sort=False)[["wall", *COST_PARTS.values(), column]].mean()


# -- the shape of one curve ----------------------------------------------------------------------

def plateau(steps: Sequence[int], values: Sequence[float], tail: int = 3) -> float:
    """The level a curve settles at: the mean of its last `tail` checkpoints."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        raise DataError("a curve needs at least two checkpoints")
    return float(v[-min(tail, len(v) - 1):].mean())


def change_step(steps: Sequence[int], values: Sequence[float], fraction: float = 0.8, tail: int = 3) -> int | None:
    """The first step by which `fraction` of the curve's whole change (step 0 to its plateau) has
    happened, for a falling loss or a rising score alike; None when the curve does not move."""
    s, v = np.asarray(steps), np.asarray(values, dtype=float)
    total = plateau(s, v, tail) - v[0]
    if total == 0 or not np.isfinite(total):
        return None
    done = (v - v[0]) / total >= fraction
    return int(s[np.argmax(done)]) if done.any() else None


def jitter(steps: Sequence[int], values: Sequence[float], after: int, tail: int = 3) -> float:
    """Checkpoint-to-checkpoint noise after `after`: the mean |change| between consecutive
    checkpoints, as a fraction of the curve's whole change (comparable across metrics and scales)."""
    s, v = np.asarray(steps), np.asarray(values, dtype=float)
    total = abs(plateau(s, v, tail) - v[0])
    late = v[s >= after]
    if len(late) < 2 or total == 0:
        return float("nan")
    return float(np.abs(np.diff(late)).mean() / total)


# -- what a chapter reads off a set of runs --------------------------------------------------------

METRIC_NAMES = {"rouge1": "ROUGE-1", "rougeL": "ROUGE-L", "exact_match": "Exact match"}


def generation_scores(results: Mapping[tuple[str, int], RunResult]) -> pd.DataFrame:
    """Mean generation metric per label, protocol, seed and step: label, protocol, seed, step, metric, score."""
    frames = [r.generations.assign(label=label, seed=seed) for (label, seed), r in results.items()]
    gens = pd.concat(frames, ignore_index=True)
    if gens.empty:
        raise DataError("these runs generated nothing: give them generate_steps")
    keys = ["label", "protocol", "seed", "step"]
    scores = gens.groupby(keys)[list(METRIC_NAMES)].mean().reset_index().melt(
        id_vars=keys, var_name="metric", value_name="score")
    return scores.assign(metric=scores.metric.map(METRIC_NAMES))


def metric_jitters(*groups: Mapping[tuple[str, int], RunResult], fraction: float = 0.8) -> pd.DataFrame:
    """Per generating run and protocol: for each generation metric, and for the held-out loss of
    the very instances that protocol generated at each step (the same checkpoints and the same
    instances: the fixed greedy prompts, or the paper protocol's fresh subset of each step), the
    step by which `fraction` of its change happened and the jitter after it. Columns metric,
    protocol, seed, split, step, jitter."""
    rows = []
    for _, seed, result in labelled(groups):
        gens = result.generations
        if gens.empty:
            continue
        split = result.config.split.seed
        loss = result.eval_loss.set_index(["step", "id"]).loss
        for protocol, made in gens.groupby("protocol"):
            pairs = pd.MultiIndex.from_frame(made[["step", "id"]])
            if not pairs.isin(loss.index).all():
                raise DataError(f"run {result.folder.name} generated at steps it did not evaluate: give its "
                                "eval_steps every generate_step")
            curve = loss.loc[pairs].groupby(level="step").mean()
            when = change_step(curve.index, curve.to_numpy(), fraction)
            rows.append({"metric": "held-out loss", "protocol": protocol, "seed": seed, "split": split, "step": when,
                         "jitter": jitter(curve.index, curve.to_numpy(), after=when or 0)})
            means = made.groupby("step")[list(METRIC_NAMES)].mean()
            for column, metric in METRIC_NAMES.items():
                when = change_step(means.index, means[column].to_numpy(), fraction)
                rows.append({"metric": metric, "protocol": protocol, "seed": seed, "split": split, "step": when,
                             "jitter": jitter(means.index, means[column].to_numpy(), after=when or 0)})
    if not rows:
        raise DataError("these runs generated nothing: give them generate_steps")
    return pd.DataFrame(rows)


def metric_shapes(jitters: pd.DataFrame) -> pd.DataFrame:
    """`metric_jitters` summarized per metric and protocol: the median step of the change and the
    mean jitter over runs, least jittery first."""
    return (jitters.groupby(["metric", "protocol"]).agg(step_80=("step", "median"), jitter_mean=("jitter", "mean"))
            .reset_index().sort_values("jitter_mean", ignore_index=True))


def decline_kinds(task_mean: pd.DataFrame, groups: Mapping[str, str], rapid_by: int) -> pd.DataFrame:
    """Per task (task_mean: task, step, loss): its fall from step 0 to its plateau, the step by
    which 80% of it happened, and its kind: 'rapid' if that step is <= rapid_by, else 'gradual'."""
    rows = []
    for task, table in task_mean.sort_values(["task", "step"]).groupby("task"):
        when = change_step(table.step, table.loss)
        fall = float(table.loss.iloc[0] - plateau(table.step, table.loss))
        rows.append({"task": task, "group": groups[task], "step_80": when, "fall": fall,
                     "kind": "rapid" if fall > 0 and when is not None and when <= rapid_by else "gradual"})
    return pd.DataFrame(rows)


def excess_windows(task_curves_: pd.DataFrame, order: str, baseline: str) -> pd.DataFrame:
    """Every (split, task, window between consecutive evaluations after step 0): how much more the
    task's loss fell under `order` than under `baseline` (its shuffles averaged) in that window.
    Columns split, task, start, end, excess. Every window counts: none is chosen after looking."""
    mean = (task_curves_[task_curves_.label.isin([order, baseline])]
            .groupby(["label", "split", "task", "step"]).loss.mean().reset_index()
            .sort_values(["label", "split", "task", "step"]))
    g = mean.groupby(["label", "split", "task"])
    mean = mean.assign(fall=-g.loss.diff(), start=g.step.shift()).dropna()
    falls = mean.pivot_table(index=["split", "task", "start", "step"], columns="label", values="fall").reset_index()
    falls = falls[falls.start > 0].dropna(subset=[order, baseline])
    return (falls.assign(excess=falls[order] - falls[baseline], start=falls.start.astype(int))
            .rename(columns={"step": "end"})[["split", "task", "start", "end", "excess"]].reset_index(drop=True))


def sudden_drops(task_curves_: pd.DataFrame, order: str, baseline: str) -> pd.DataFrame:
    """Each task's most sudden window under `order` (`excess_windows`, one split): the window where
    its loss fell most beyond `baseline`'s. Columns task, start, step (the window's end), excess;
    largest excess first. For pictures: the verdict (rules.sudden) counts every window."""
    windows = excess_windows(task_curves_, order, baseline)
    return (windows.sort_values("excess", ascending=False).drop_duplicates("task").rename(columns={"end": "step"})
            [["task", "start", "step", "excess"]].reset_index(drop=True))


def epoch_steps(result: RunResult) -> int:
    """Steps in one epoch over the run's whole arranged list (the cosine schedule's length)."""
    return -(-int(result.manifest["train_instances"]) // result.config.train.batch_size)


def same_instances(runs: Mapping[tuple[str, int], RunResult], labels: Sequence[str]) -> dict[int, bool]:
    """Per key seed: did the runs labelled `labels` all train on the same multiset of instances?
    Read from the batches each model received, not from the arranged lists."""
    out = {}
    for seed in sorted({s for _, s in runs}):
        got = [sorted(runs[(label, seed)].batches.id) for label in labels if (label, seed) in runs]
        out[seed] = len(got) == len(labels) and all(g == got[0] for g in got)
    return out


@dataclass(frozen=True)
class _SplitIndex:
    task: dict[str, str]  # training id -> its task
    held_out_families: frozenset[str]
    answer_chars: dict[str, int]  # every instance's id (training and held-out) -> its answer's length in characters


@functools.lru_cache(maxsize=8)
def _split_index(split: SplitConfig, model: str) -> _SplitIndex:
    """What the analyses read of a split beside a run's own tables, built once per process: every
    run on the split shares it (chapters ask for many runs' received tables)."""
    loaded = run_split(RunConfig(model=model, split=split))
    return _SplitIndex(task={r.id: r.task for r in loaded.train},
                       held_out_families=frozenset(task_family(r.task) for r in loaded.test),
                       answer_chars={r.id: len(r.response) for r in [*loaded.train, *loaded.test]})


def answer_format(result: RunResult, upto_step: int) -> pd.DataFrame:
    """Per held-out task of the run's split: the log2 mean answer length of its instances
    (`held-out length`, characters), and how far it is from the answers the run received in its
    first `upto_step` steps (`mismatch`: |held-out length - log2 of their mean length|). The
    format-and-stopping explanation of issue 32 item 7 predicts a larger gap where they differ."""
    chars = _split_index(result.config.split, result.config.model).answer_chars
    seen = result.batches[result.batches.step <= upto_step]
    if seen.empty:
        raise DataError(f"the run received nothing by step {upto_step}")
    early = float(np.log2(np.mean([chars[i] for i in seen.id]) + 1))
    held = result.eval_loss[result.eval_loss.step == result.eval_loss.step.min()]
    length = held.assign(chars=held.id.map(chars)).groupby("task").chars.mean()
    log_length = np.log2(length + 1)
    return pd.DataFrame({"task": length.index, "held-out length": log_length.to_numpy(),
                         "mismatch": (log_length - early).abs().to_numpy()})


def received(result: RunResult) -> pd.DataFrame:
    """The run's `batches` (step, position, id) with each instance's task, its family, and whether
    that family also has a held-out task (`sibling`), from the run's own split."""
    index = _split_index(result.config.split, result.config.model)
    task, held = index.task, index.held_out_families
    out = result.batches.assign(task=result.batches.id.map(task))
    if out.task.isna().any():
        raise DataError(f"run {result.folder.name} received ids its split does not have, e.g. {out.id[out.task.isna()].iloc[0]!r}")
    family = out.task.map(task_family)
    return out.assign(family=family, sibling=family.isin(held))


def sibling_share(result: RunResult, upto_step: int) -> float:
    """The fraction of the instances a run received in its first `upto_step` steps whose task
    family also has a held-out task: how much of what it saw early was a sibling of the test."""
    seen = received(result)
    seen = seen[seen.step <= upto_step]
    if seen.empty:
        raise DataError(f"the run received nothing by step {upto_step}")
    return float(seen.sibling.mean())


def held_out_with_sibling(result: RunResult) -> set[str]:
    """The held-out tasks of the run's split whose family also has a training task (a BIG-bench
    subtask whose siblings train): the tasks a family-led order is closest to."""
    task = _split_index(result.config.split, result.config.model).task
    trained = {task_family(t) for t in task.values()}
    return {t for t in result.eval_loss.task.unique() if task_family(t) in trained}


def leading_family(result: RunResult, upto_step: int) -> dict[str, object]:
    """What a run's first `upto_step` steps were made of: the family that contributed most, its
    share of the instances, how many families contributed at all, and the share of the task that
    contributed most."""
    seen = received(result)
    seen = seen[seen.step <= upto_step]
    if seen.empty:
        raise DataError(f"the run received nothing by step {upto_step}")
    counts = seen.family.value_counts()
    tasks = seen.task.value_counts()
    return {"leading family": counts.index[0], "its share": float(counts.iloc[0] / len(seen)),
            "families": int(len(counts)), "instances": int(len(seen)),
            "leading task's share": float(tasks.iloc[0] / len(seen))}
