"""Statistics over tidy tables of runs: intervals over independent runs and the gap between two
orders per step. Nothing here reads a run or knows a chapter.

    gaps(curves, [("NFT", "RT")])   # step, diff, lo, hi, n_a, n_b, comparison: NFT - RT with a 95% interval
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .data import DataError


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): a Student-t interval over independent runs; NaN bounds for one run."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise DataError("an interval needs at least one value")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def gap(curves: pd.DataFrame, a: str, b: str, value: str = "loss", level: float = 0.95) -> pd.DataFrame:
    """a - b per step with a `level` interval over seeds.

    Same seeds on both sides: paired differences. Otherwise (e.g. a fixed order against a
    shuffled one) the difference of means with Welch's interval, a side with one run counting
    as exact. Columns: step, diff, lo, hi, n_a, n_b.
    """
    from scipy import stats

    for label in (a, b):
        if label not in set(curves.label):
            raise DataError(f"no curve labelled {label!r}; have {sorted(set(curves.label))}")
    wide = {lab: curves[curves.label == lab].pivot_table(index="step", columns="seed", values=value)
            for lab in (a, b)}
    steps = wide[a].index.intersection(wide[b].index)
    rows = []
    for s in steps:
        xa, xb = wide[a].loc[s].dropna(), wide[b].loc[s].dropna()
        if list(xa.index) == list(xb.index) and len(xa) > 1:
            diff, lo, hi = interval((xa - xb).to_numpy(), level)
        else:
            diff = float(xa.mean() - xb.mean())
            va = xa.var(ddof=1) / len(xa) if len(xa) > 1 else 0.0
            vb = xb.var(ddof=1) / len(xb) if len(xb) > 1 else 0.0
            se = np.sqrt(va + vb)
            if se == 0 or (len(xa) < 2 and len(xb) < 2):
                lo = hi = float("nan")
            else:  # Welch-Satterthwaite degrees of freedom
                dof = (va + vb) ** 2 / sum(v ** 2 / (n - 1) for v, n in ((va, len(xa)), (vb, len(xb))) if n > 1)
                half = float(stats.t.ppf((1 + level) / 2, dof) * se)
                lo, hi = diff - half, diff + half
        rows.append({"step": int(s), "diff": diff, "lo": lo, "hi": hi, "n_a": len(xa), "n_b": len(xb)})
    return pd.DataFrame(rows, columns=["step", "diff", "lo", "hi", "n_a", "n_b"])


def gaps(curves: pd.DataFrame, pairs: Sequence[tuple[str, str]], level: float = 0.95) -> pd.DataFrame:
    """`gap` for several (a, b) pairs, tidy, with a column `comparison` = "a - b"."""
    return pd.concat([gap(curves, a, b, level=level).assign(comparison=f"{a} - {b}") for a, b in pairs],
                     ignore_index=True)


def gap_at(gaps_: pd.DataFrame, step: int, comparison: str) -> tuple[float, float, float]:
    """(diff, lo, hi) of one comparison of a `gaps` table at one step."""
    row = gaps_[(gaps_.step == step) & (gaps_.comparison == comparison)]
    if len(row) != 1:
        raise DataError(f"no single {comparison!r} row at step {step}")
    return tuple(float(row.iloc[0][c]) for c in ("diff", "lo", "hi"))
