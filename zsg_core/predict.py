"""Does a similarity measure of the training prefix predict the held-out loss change? (E3, quantified)

The paper plots, for one task at a time, nine measures of "how similar is what the model has
seen so far to this test task" next to the task's loss, and reads off by eye that Min and Avg
track it. This module asks the same across every test task, order and evaluation window:

    measures = prefix_table({(label, seed): received_ids}, records_by_id, test, steps, batch_size)
    changes = window_changes(task_loss, measures)         # per (run, task, window): d measure, d loss
    power = predictive_power(changes)                     # Spearman rho per measure, 95% bootstrap CI

Two correlations per measure. "pooled": across all (order, task, window) units; it rewards any
measure that moves with training time, since nearly every loss falls early. "within-window": the
rank correlation across (order, task) units inside one window, averaged over windows; it asks
whether, at the same point of training, the tasks whose measure moved most are the ones whose loss
fell most. Intervals: a bootstrap over test tasks (every unit of a task goes in or out together).
A "Random (null)" measure of pure noise is scored the same way, to show what chance looks like.
A positive rho means the measure predicts: a prefix that got closer to a task (the distance fell)
goes with a loss that fell.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .compare import labelled, task_curves
from .data import DataError, Record
from .embed import Encoder, embed_text
from .features import LMSource, compute
from .runs import RunResult, lm_source, run_split
from .similarity import MEASURES, bigram_kl_per_task, prefix_measures, wsd_weight

WSD_MEASURE = "WSD (Min + w Avg)"
NULL_MEASURE = "Random (null)"
ALL_MEASURES = (*MEASURES, "KL", WSD_MEASURE)


def prefix_table(received: Mapping[tuple[str, int], Sequence[str]], records_by_id: Mapping[str, Record],
                 test: Sequence[Record], steps: Sequence[int], batch_size: int, encoder: Encoder | None = None,
                 kl: bool = True, text: str = "first-turn", features: str = "minilm",
                 source: LMSource | None = None, test_view: str = "with-answer") -> pd.DataFrame:
    """Every E3 measure of the prefix seen after each step in `steps` (> 0), per run and test task.

    `received` maps a run's (label, seed) to the training ids in the order the model received
    them (its `batches` table, so the prefix is what it actually saw). Text as the paper's E3
    scripts: first user turn and response. `features` names the vectors the measures compare
    (`features.FEATURES`; hidden and gradient need `source`), computed once for every record
    some prefix holds (hidden and gradient: every record of `records_by_id`, the pool they are
    centred on or warm up on, as in the arrangements) and the held-out set (`test_view`: with its answers, or its prompts only).
    Columns: label, seed, task, step, measure, value. Adds the WSD-style combination of Cosine-Min
    and Cosine-Avg with one weight for the whole table (`similarity.wsd_weight`: the paper's w_avg
    rule, mean Min / mean Avg, where it is defined), so the combination is on one scale across runs.
    """
    steps = sorted(s for s in steps if s > 0)
    if not steps:
        raise DataError("prefix measures need at least one step after step 0")
    if not test:
        raise DataError("the held-out set is empty: nothing to measure similarity to")
    by_task: dict[str, list[int]] = {}
    for i, r in enumerate(test):
        by_task.setdefault(r.task, []).append(i)
    for (label, seed), order_ids in received.items():  # every fault named before any vector is computed
        if steps[-1] * batch_size > len(order_ids):
            raise DataError(f"{label}/{seed}: step {steps[-1]} x batch {batch_size} is past the "
                            f"{len(order_ids)} ids received")
        missing = [i for i in order_ids if i not in records_by_id]
        if missing:
            raise DataError(f"{label}/{seed}: {len(missing)} received ids are not training records, e.g. {missing[:3]}")
    # the LM's kinds take the whole training pool (hidden states are centred on it, gradients warm
    # up on a random order of it, as the arrangements compute them); MiniLM only what was seen
    ids = list(records_by_id) if features != "minilm" else \
        list(dict.fromkeys(i for order_ids in received.values() for i in order_ids[: steps[-1] * batch_size]))
    pool = [records_by_id[i] for i in ids]
    pool_vecs, test_vecs = compute(pool, list(test), features, text=text, source=source, test_view=test_view,
                                   encoder=encoder or (Encoder() if features == "minilm" else None))
    row_of = {i: k for k, i in enumerate(ids)}
    test_texts = [embed_text(r, text) for r in test]
    wanted = {s * batch_size: s for s in steps}
    frames = []
    for (label, seed), order_ids in received.items():
        seen = [records_by_id[i] for i in order_ids[: steps[-1] * batch_size]]
        train_vecs = pool_vecs[[row_of[i] for i in order_ids[: steps[-1] * batch_size]]]
        kl_by_task = bigram_kl_per_task([embed_text(r, text) for r in seen],
                                        {task: [test_texts[i] for i in rows] for task, rows in by_task.items()},
                                        batch_size).groupby("task") if kl else None
        for task, rows in by_task.items():
            table = prefix_measures(train_vecs, test_vecs[rows], batch_size)
            if kl:
                table = pd.concat([table, kl_by_task.get_group(task).drop(columns="task")])
            table = table[table.seen.isin(wanted)]
            frames.append(table.assign(label=label, seed=seed, task=task, step=table.seen.map(wanted)))
    keys = ["label", "seed", "task", "step"]
    out = pd.concat(frames, ignore_index=True)[keys + ["measure", "value"]]
    mins, avgs = (out[out.measure == m].set_index(keys).value for m in ("Cosine-Min", "Cosine-Avg"))
    w = wsd_weight(mins.to_numpy(), avgs.to_numpy())[0]  # the arrangements' rule: defined for centred features too
    combined = (mins + w * avgs).rename("value").reset_index().assign(measure=WSD_MEASURE)
    return pd.concat([out, combined[out.columns]], ignore_index=True)


def window_changes(task_loss: pd.DataFrame, measures: pd.DataFrame, null_seed: int = 0) -> pd.DataFrame:
    """Changes over each window between consecutive evaluated steps (both > 0).

    `task_loss`: label, seed, task, step, loss (`compare.task_curves`). `measures`: label, seed,
    task, step, measure, value (`prefix_table`). Returns label, seed, task, start, end, measure,
    d_measure, d_loss; plus the null measure.
    """
    keys = ["label", "seed", "task"]
    for name, table, cols in (("task_loss", task_loss, {*keys, "step", "loss"}),
                              ("measures", measures, {*keys, "step", "measure", "value"})):
        if not cols <= set(table.columns):
            raise DataError(f"{name} needs columns {sorted(cols)}, has {sorted(table.columns)}")
    loss = task_loss[task_loss.step > 0].sort_values(keys + ["step"])
    loss = loss.assign(start=loss.groupby(keys).step.shift(), d_loss=loss.groupby(keys).loss.diff()).dropna()
    m = measures.sort_values(keys + ["measure", "step"])
    g = m.groupby(keys + ["measure"])
    m = m.assign(start=g.step.shift(), d_measure=g.value.diff()).dropna()
    out = m.merge(loss[keys + ["start", "step", "d_loss"]], on=keys + ["start", "step"])
    out = out.rename(columns={"step": "end"})[keys + ["start", "end", "measure", "d_measure", "d_loss"]]
    if out.empty:
        raise DataError("no window has both a loss and a measure change: the steps do not overlap")
    null = out[out.measure == out.measure.iloc[0]].assign(measure=NULL_MEASURE)
    null["d_measure"] = np.random.default_rng(null_seed).standard_normal(len(null))
    out = pd.concat([out, null], ignore_index=True)
    out["start"] = out.start.astype(int)
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    if len(x) < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _both(window: np.ndarray, d_measure: np.ndarray, d_loss: np.ndarray) -> tuple[float, float]:
    """(pooled rho, mean over windows of the within-window rho)."""
    pooled = _spearman(d_measure, d_loss)
    within = [_spearman(d_measure[window == w], d_loss[window == w]) for w in np.unique(window)]
    within = [r for r in within if np.isfinite(r)]
    return pooled, float(np.mean(within)) if within else float("nan")


def predictive_power(changes: pd.DataFrame, n_boot: int = 300, seed: int = 0) -> pd.DataFrame:
    """Per measure: Spearman rho of d_measure vs d_loss, pooled and within-window, each with a 95%
    bootstrap interval over test tasks. Sorted by the within-window rho, best first."""
    tasks = np.array(sorted(changes.task.unique()))
    if len(tasks) < 2:
        raise DataError("predictive power needs at least two test tasks")
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(tasks), size=len(tasks)) for _ in range(n_boot)]
    rows = []
    for measure, table in changes.groupby("measure"):
        window = table.start.to_numpy() * 1_000_003 + table.end.to_numpy()
        dm, dl = table.d_measure.to_numpy(float), table.d_loss.to_numpy(float)
        task_rows = [np.flatnonzero(table.task.to_numpy() == t) for t in tasks]
        pooled, within = _both(window, dm, dl)
        boot = []
        for draw in draws:
            idx = np.concatenate([task_rows[t] for t in draw])
            boot.append(_both(window[idx], dm[idx], dl[idx]))
        lo, hi = np.nanpercentile(np.array(boot), [2.5, 97.5], axis=0)
        rows.append({"measure": measure, "rho_within": within, "within_lo": lo[1], "within_hi": hi[1],
                     "rho_pooled": pooled, "pooled_lo": lo[0], "pooled_hi": hi[0], "units": len(table)})
    return pd.DataFrame(rows).sort_values("rho_within", ascending=False, ignore_index=True)


def prefix_changes(*groups: Mapping[tuple[str, int], "RunResult"], batch_size: int, kl: bool = True,
                   encoder: Encoder | None = None, features: str = "minilm",
                   test_view: str = "with-answer") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(measures, window changes) of every run in `groups`, split by split: each run is measured
    against its own split's held-out set, on the steps it was evaluated at, with `features`
    (hidden and gradient from the runs' own model, cut and precision: `runs.lm_source`). Both
    tables carry a `split` column, and `seed` is the run's order seed (unique with its label
    inside a split)."""
    by_split: dict = {}
    for label, _, result in labelled(groups):
        by_split.setdefault(result.config.split, {})[(label, result.config.arrangement_seed)] = result
    encoder = encoder or (Encoder() if features == "minilm" else None)
    all_measures, all_changes = [], []
    for split_config, runs in by_split.items():
        split = run_split(next(iter(runs.values())).config)
        received = {key: r.batches.sort_values(["step", "position"]).id.tolist() for key, r in runs.items()}
        loss = task_curves(runs).assign(seed=lambda t: t.order_seed)
        steps = sorted(set(loss.step))
        measures = prefix_table(received, {r.id: r for r in split.train}, split.test, steps, batch_size, encoder, kl,
                                features=features, source=lm_source(next(iter(runs.values())).config),
                                test_view=test_view)
        all_measures.append(measures.assign(split=split_config.seed))
        all_changes.append(window_changes(loss, measures).assign(split=split_config.seed))
    return pd.concat(all_measures, ignore_index=True), pd.concat(all_changes, ignore_index=True)


def power_by_split(changes: pd.DataFrame) -> pd.DataFrame:
    """The within-window Spearman rho of every measure on each split (`predictive_power`'s point
    estimate, split by split): columns split, measure, rho. The rules compare measures paired by
    split (`rules.measures`)."""
    rows = []
    for (split, measure), table in changes.groupby(["split", "measure"]):
        window = table.start.to_numpy() * 1_000_003 + table.end.to_numpy()
        _, within = _both(window, table.d_measure.to_numpy(float), table.d_loss.to_numpy(float))
        rows.append({"split": split, "measure": measure, "rho": within})
    return pd.DataFrame(rows)


def arrivals(changes: pd.DataFrame, order: str, measure: str = "Cosine-Min") -> pd.DataFrame:
    """Per (split, task, window) of `order`'s runs: whether a training instance closer to the task
    than any before arrived (the closest-pair distance `measure` fell). Columns split, task, start,
    end, arrived."""
    c = changes[(changes.label == order) & (changes.measure == measure)]
    if c.empty:
        raise DataError(f"no {measure} changes for order {order!r}")
    return (c.assign(arrived=c.d_measure < 0).groupby(["split", "task", "start", "end"]).arrived.any()
            .reset_index())
