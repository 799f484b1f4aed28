"""Statistics over tidy tables of runs: an estimate over independent units, and the gap between
two orders per step with task splits as the unit. Nothing here reads a run or knows a chapter.

    over_units([0.3, 0.5, 0.2, 0.4, 0.6])         # Estimate: mean, 95% t-interval, p of mean == 0
    split_gaps(task_curves, [("NFT", "RT")])       # step, diff, lo, hi, p, n, comparison

Why the task split is the unit. A claim such as "nearest-first beats random" generalizes over the
held-out tasks (a split draws them), over the held-out instances of each task, and over the
shuffles of the random order. A split's mean difference over its held-out tasks already carries
the task and instance noise of that draw, and each split has its own shuffle; so the spread of
the split means carries every source of noise at once. The interval is the Student-t interval over
split means: for a balanced nested design (splits, tasks within splits) it is the interval a
random-intercept mixed model gives for the grand mean, it needs no assumption about how tasks
correlate inside a split (families drop together), and unlike a bootstrap it does not
under-cover with five units. One split gives no interval, whatever the number of tasks in it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .data import DataError


@dataclass(frozen=True)
class Estimate:
    """A mean over `n` independent units with its interval and the two-sided p of mean == `null`
    (NaN bounds and p where `over_units` gives no interval)."""
    value: float
    lo: float
    hi: float
    n: int
    p: float
    level: float = 0.95  # the interval's two-sided coverage

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))


MIN_UNITS = 3  # the fewest units an interval is computed from


def over_units(values: Sequence[float], null: float = 0.0, level: float = 0.95) -> Estimate:
    """The mean of `values` (one per independent unit) with a Student-t interval at `level`.

    No interval (NaN bounds and p, so no verdict can rest on it) from fewer than `MIN_UNITS` units
    or from units with no spread at all: two units give a t-interval with one degree of freedom
    whose width rests on a single difference, and identical units say nothing about the noise
    between units (they would make a zero-width interval, the point itself, decide a verdict)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        raise DataError("an estimate needs at least one finite value")
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    # no spread: the units agree to rounding (a difference computed from equal steps is not exact)
    if len(x) < MIN_UNITS or np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())):
        return Estimate(mean, math.nan, math.nan, len(x), math.nan, level)
    se = sd / math.sqrt(len(x))
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1) * se)
    p = float(2 * stats.t.sf(abs(mean - null) / se, len(x) - 1))
    return Estimate(mean, mean - half, mean + half, len(x), p, level)


def power(effect: float, sd: float, n: int, level: float = 0.95) -> float:
    """The chance that the t-interval at `level` over `n` units excludes 0 when the units' mean is
    `effect` and their standard deviation `sd` (the noncentral t; 0 with fewer than MIN_UNITS)."""
    from scipy import stats

    if n < MIN_UNITS:
        return 0.0
    if not sd > 0:
        raise DataError(f"power needs a positive spread between units, got {sd}")
    critical = stats.t.ppf((1 + level) / 2, n - 1)
    shift = effect / (sd / math.sqrt(n))
    # both tails as upper tails (T < -c is -T > c, and -T is noncentral t with -shift): scipy's
    # cdf of the far lower tail comes out NaN for large shifts, where the tail is ~0
    return float(np.nan_to_num(stats.nct.sf(critical, n - 1, shift)) + np.nan_to_num(stats.nct.sf(critical, n - 1, -shift)))


def units_needed(effect: float, sd: float, level: float = 0.95, power_wanted: float = 0.8,
                 most: int = 200) -> int | None:
    """The fewest units (task splits) whose interval at `level` decides an effect of size `effect`
    with chance `power_wanted`, given the spread `sd` between units; None if `most` are not enough.
    Decided before the runs from an earlier spread: never a reason to add splits because an
    interval happens to exclude 0."""
    for n in range(MIN_UNITS, most + 1):
        if power(effect, sd, n, level) >= power_wanted:
            return n
    return None


def decidable_ratio(n: int, level: float = 0.95) -> float:
    """How large a mean must be, in standard deviations between units, for `over_units`' interval
    over `n` units at `level` to exclude 0: the t quantile over sqrt(n). What a build with `n`
    splits can decide, before it runs."""
    from scipy import stats

    if n < MIN_UNITS:
        raise DataError(f"an interval needs at least {MIN_UNITS} units, got {n}")
    return float(stats.t.ppf((1 + level) / 2, n - 1) / math.sqrt(n))


def spread_from_interval(lo: float, hi: float, n: int, level: float = 0.95) -> float:
    """The standard deviation between units behind `over_units`' interval [lo, hi] at `level` over
    `n` units (its inverse): what a table of findings keeps is enough to plan the next build."""
    from scipy import stats

    if n < MIN_UNITS or not hi >= lo:
        raise DataError(f"no spread behind an interval [{lo}, {hi}] over {n} units")
    return float((hi - lo) / 2 / stats.t.ppf((1 + level) / 2, n - 1) * math.sqrt(n))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


UNIT_COLUMNS = ("label", "split", "order_seed", "task", "step", "loss")


def split_means(curves: pd.DataFrame, a: str, b: str, step: int | None = None) -> pd.DataFrame:
    """Per split and step: the mean over held-out tasks of (loss under `a` - loss under `b`), each
    order's loss first averaged over its order seeds (RT's shuffles) on that split. Only splits
    and tasks both orders have. Columns split, step, diff.

    `curves` are per-task (`compare.task_curves`); run-level curves without a task column
    (`compare.loss_curves`, e.g. its token average) are taken as one unit per run."""
    missing = set(UNIT_COLUMNS) - {"task"} - set(curves.columns)
    if missing:
        raise DataError(f"curves need columns {sorted(missing)} (compare.task_curves makes them)")
    for label in (a, b):
        if label not in set(curves.label):
            raise DataError(f"no curve labelled {label!r}; have {sorted(set(curves.label))}")
    t = curves if step is None else curves[curves.step == step]
    units = ["label", "split", "step"] + (["task"] if "task" in t.columns else [])
    mean = t[t.label.isin([a, b])].groupby(units).loss.mean().unstack("label")
    diff = (mean[a] - mean[b]).dropna()
    if diff.empty:
        raise DataError(f"{a} and {b} share no split, step and task" + (f" at step {step}" if step is not None else ""))
    return diff.groupby(level=["split", "step"]).mean().rename("diff").reset_index()


def split_gap(task_curves: pd.DataFrame, a: str, b: str, level: float = 0.95) -> pd.DataFrame:
    """a - b per step over task splits (`split_means`, `over_units`): step, diff, lo, hi, p, n."""
    rows = []
    for step, g in split_means(task_curves, a, b).groupby("step"):
        e = over_units(g["diff"], level=level)
        rows.append({"step": int(step), "diff": e.value, "lo": e.lo, "hi": e.hi, "p": e.p, "n": e.n})
    return pd.DataFrame(rows, columns=["step", "diff", "lo", "hi", "p", "n"])


def split_gaps(task_curves: pd.DataFrame, pairs: Sequence[tuple[str, str]], level: float = 0.95) -> pd.DataFrame:
    """`split_gap` for several (a, b) pairs, tidy, with a column `comparison` = "a - b"."""
    return pd.concat([split_gap(task_curves, a, b, level).assign(comparison=f"{a} - {b}") for a, b in pairs],
                     ignore_index=True)


def gap_difference(first: pd.DataFrame, second: pd.DataFrame, a: str, b: str, step: int,
                   second_step: int | None = None, level: float = 0.95) -> Estimate:
    """Per split: (a - b in `first`) - (a - b in `second`), each a `split_means` at its step
    (`second_step`, default `step`); the estimate over the splits both have. It asks whether a gap
    differs between two set-ups (another lr, another model) or two groups of held-out tasks."""
    one = split_means(first, a, b, step).set_index("split")["diff"]
    two = split_means(second, a, b, step if second_step is None else second_step).set_index("split")["diff"]
    both = one.index.intersection(two.index)
    if both.empty:
        raise DataError(f"the two tables share no split with both {a} and {b}")
    return over_units((one[both] - two[both]).tolist(), level=level)


def split_slopes(table: pd.DataFrame, y: str, xs: Sequence[str], level: float = 0.95) -> dict[str, Estimate]:
    """Each of `xs`'s least-squares coefficient (with an intercept) in a regression of `y` fitted
    on every split apart (table: columns split, y, xs; one row per held-out task), as an estimate
    over splits: the split stays the unit, as in every interval here. Splits with fewer rows than
    coefficients + 2 are left out."""
    missing = {"split", y, *xs} - set(table.columns)
    if missing:
        raise DataError(f"a regression needs columns {sorted(missing)}")
    coefficients: dict[str, list[float]] = {x: [] for x in xs}
    for _, g in table.dropna(subset=[y, *xs]).groupby("split"):
        if len(g) < len(xs) + 3:
            continue
        design = np.column_stack([np.ones(len(g)), *(g[x].to_numpy(float) for x in xs)])
        beta, *_ = np.linalg.lstsq(design, g[y].to_numpy(float), rcond=None)
        for x, b in zip(xs, beta[1:]):
            coefficients[x].append(float(b))
    if not coefficients[xs[0]]:
        raise DataError(f"no split has enough rows to regress {y} on {', '.join(xs)}")
    return {x: over_units(c, level=level) for x, c in coefficients.items()}


def correlation(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> Estimate:
    """Pearson's r over paired units with a Fisher-z interval and the t-test p of r == 0; no
    interval with fewer than four units (the z interval needs n - 3 > 0)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y) or len(x) < 2:
        raise DataError(f"a correlation needs two paired series of at least 2 units, got {len(x)} and {len(y)}")
    if np.std(x) == 0 or np.std(y) == 0:
        return Estimate(0.0, math.nan, math.nan, len(x), math.nan, level)
    r = float(np.corrcoef(x, y)[0, 1])
    if len(x) < 4:
        return Estimate(r, math.nan, math.nan, len(x), math.nan, level)
    z, half = math.atanh(max(min(r, 1 - 1e-12), -1 + 1e-12)), stats.norm.ppf((1 + level) / 2) / math.sqrt(len(x) - 3)
    t = r * math.sqrt((len(x) - 2) / max(1e-12, 1 - r * r))
    return Estimate(r, math.tanh(z - half), math.tanh(z + half), len(x), float(2 * stats.t.sf(abs(t), len(x) - 2)),
                    level)


def noise_sources(task_curves: pd.DataFrame, a: str, b: str, step: int) -> dict[str, float]:
    """Where the noise of a - b at `step` comes from, as standard deviations of a split's mean
    difference: between splits (what the interval sees), held-out tasks within a split (the
    standard error of a split's mean over its tasks), and `b`'s order seeds where a split has
    several (the spread of a split's mean over its shuffles alone)."""
    t = task_curves[task_curves.step == step]
    means = split_means(t, a, b)
    per_task = (t[t.label == a].groupby(["split", "task"]).loss.mean()
                - t[t.label == b].groupby(["split", "task"]).loss.mean()).dropna()
    within = per_task.groupby(level="split").agg(lambda x: x.std(ddof=1) / math.sqrt(len(x)))
    seeds = t[t.label == b].groupby(["split", "order_seed"]).loss.mean()
    by_seed = seeds.groupby(level="split").std(ddof=1).dropna()
    return {"between splits": float(means["diff"].std(ddof=1)) if len(means) > 1 else math.nan,
            "tasks within a split": float(within.mean()),
            "shuffles within a split": float(by_seed.mean()) if len(by_seed) else math.nan,
            "splits": len(means), "shuffles": int(t[t.label == b].groupby("split").order_seed.nunique().max())}
