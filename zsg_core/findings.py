"""The findings table: each claim of the paper, the paper's number, ours with a 95% interval, a verdict.

Each chapter computes its findings from its runs and `record`s them (with the curves behind them)
in <build folder>/findings/<chapter>.json (`util.build_dir`: one per profile); the findings
chapter `collect`s them into one table. A record carries the
parameters it was computed with, and `collect` refuses records made with other ones, so a table
never mixes profiles.

The paper's numbers (`PAPER`) are read off its released figures (paper.md, tags [F]); our effect is
taken at the same *relative* point of training: the same fraction of one epoch over the training
list (`relative_step`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .data import DataError
from .util import atomic_file, build_dir

# What the paper's figures show (paper.md section 4, [F]); steps are the paper's, epochs its own.
PAPER = {
    "E1": {"text": "held-out loss NIV2 4.07 -> ~1.0 by ~20 steps, P3 5.07 -> ~0.95, of a ~1,800-step epoch (~1%)"},
    "E1b": {"text": "loss smooth after the early drop; ROUGE / EM jump between checkpoints; RM scores overlap for right and wrong answers"},
    "E2": {"text": "cluster order: single held-out tasks drop suddenly (e.g. task900, coqa) when similar data arrive"},
    "E3": {"text": "by eye, Cosine-Min steps down where the cluster-order loss drops; Min and Avg chosen for WSD"},
    "E4": {"epoch": 1797, "step": 100, "NFT": 0.62, "RT": 0.65, "FFT": 0.68,
           "text": "step 100 of a 1,797-step epoch: NFT ~0.62 < RT ~0.65 < FFT ~0.68 (start 1.25)"},
    "E5": {"epoch": 1797, "step": 800, "fine": 0.95, "coarse": 1.06,
           "text": "coarse ~0.05 lower up to step 150, curves cross at 250-350, at step 800 fine ~0.95 < coarse ~1.06"},
    "E6": {"epoch": 1875, "step": 500, "NFT": 0.53, "RT": 0.62, "FFT": 0.84,
           "text": "step 500 of a 1,875-step epoch: NFT ~0.53 < RT ~0.62 < FFT ~0.84 (start 3.13)"},
    "E7": {"text": "ShareGPT step 100: NFT 0.760 < RT 0.788 = FFT 0.788; NoRobots step 350: 1.297 < 1.304 < 1.309"},
    "E8": {"text": "step 300: rounds [0,5) ~0.61 < [5,10) ~0.617 < [10,15) ~0.65 < later groups ~0.68-0.69"},
}

# The run parameters a record must share with the table (the seeds vary inside chapters).
SHARED = ("model", "test_tasks", "train_per_task", "test_per_task", "max_len", "lr", "batch_size",
          "max_steps", "frozen_layers")


@dataclass
class Finding:
    experiment: str  # "E4", ...
    claim: str
    paper: str  # the paper's number, read off its figure
    measured: str  # ours, in words
    effect: float  # ours, the number the verdict rests on
    lo: float  # its 95% interval (NaN: a single run)
    hi: float
    point: str  # where in training it was measured
    verdict: str  # reproduced / partly / not reproduced / inconclusive (with the reason in `measured`)


def relative_step(fraction: float, epoch_steps: int, steps: Sequence[int]) -> int:
    """The evaluated step nearest to `fraction` of our epoch (clipped to the steps we have)."""
    if not steps:
        raise DataError("no evaluated steps")
    target = fraction * epoch_steps
    return int(min(steps, key=lambda s: (abs(s - target), s)))


ORDER_PAIRS = [("NFT", "RT"), ("FFT", "RT")]  # the order claim NFT < RT < FFT, as two gaps


def order_effects(gaps: pd.DataFrame, step: int) -> tuple[tuple[float, float, float], tuple[float, float, float], str]:
    """(NFT - RT, FFT - RT, verdict) at `step` of a `stats.gaps(curves, ORDER_PAIRS)` table."""
    from .stats import gap_at

    near, far = (gap_at(gaps, step, f"{a} - {b}") for a, b in ORDER_PAIRS)
    return near, far, order_verdict(near, far)


def order_verdict(near: tuple[float, float, float], far: tuple[float, float, float]) -> str:
    """NFT < RT < FFT from (diff, lo, hi) of NFT - RT and FFT - RT: 'reproduced' when both
    intervals exclude 0 in the claimed direction, 'partly' when one does, 'not reproduced' when an
    interval excludes 0 the other way and none the claimed way, else 'inconclusive'."""
    claimed = [near[2] < 0, far[1] > 0]
    against = [near[1] > 0, far[2] < 0]
    if all(claimed):
        return "reproduced"
    if any(claimed):
        return "partly"
    return "not reproduced" if any(against) else "inconclusive"


def sign_verdict(effect: tuple[float, float, float], claimed_negative: bool = True) -> str:
    """One effect (diff, lo, hi): 'reproduced' when its interval lies wholly on the claimed side
    of 0, 'not reproduced' when wholly on the other, else 'inconclusive'. A single run (NaN
    interval) is 'partly' at best: the sign alone."""
    diff, lo, hi = effect
    s = -1.0 if claimed_negative else 1.0  # the claim: s * effect > 0
    if math.isnan(lo) or math.isnan(hi):
        return "partly" if s * diff > 0 else "not reproduced"
    low, high = sorted((s * lo, s * hi))
    if low > 0:
        return "reproduced"
    return "not reproduced" if high < 0 else "inconclusive"


def shared_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: params[k] for k in SHARED if k in params}


def findings_dir() -> Path:
    return build_dir() / "findings"


def record(chapter: str, params: Mapping[str, Any], findings: Sequence[Finding],
           curves: pd.DataFrame | None = None) -> None:
    """Store a chapter's findings (and the tidy gap curves behind them) for chapter 8."""
    path = findings_dir() / f"{chapter}.json"
    body = {"chapter": chapter, "params": shared_params(params), "findings": [asdict(f) for f in findings],
            "curves": [] if curves is None else json.loads(curves.to_json(orient="records"))}
    with atomic_file(path) as f:
        json.dump(body, f, indent=1, allow_nan=True)


def collect(params: Mapping[str, Any], chapters: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(findings table, gap curves) of `chapters`, each recorded with the same shared parameters."""
    want = shared_params(params)
    tables, curves = [], []
    for chapter in chapters:
        path = findings_dir() / f"{chapter}.json"
        if not path.exists():
            raise DataError(f"no findings from chapter {chapter}: execute it first (make book runs every chapter)")
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path} is not readable JSON ({e}); execute chapter {chapter} again") from None
        if body.get("params") != want:
            diff = {k: (body.get("params", {}).get(k), v) for k, v in want.items() if body.get("params", {}).get(k) != v}
            raise DataError(f"chapter {chapter}'s findings were computed with other parameters (theirs, ours): {diff}; "
                            f"execute it with these parameters first")
        tables.append(pd.DataFrame(body["findings"]).assign(chapter=chapter))
        curves.append(pd.DataFrame(body["curves"]).assign(chapter=chapter))
    table = pd.concat(tables, ignore_index=True)
    return table, pd.concat(curves, ignore_index=True)


def fmt(diff: float, lo: float, hi: float) -> str:
    """'-0.12 [-0.20, -0.04]', or '-0.12 (one run)' without an interval."""
    if np.isnan(lo) or np.isnan(hi):
        return f"{diff:+.3f} (one run)"
    return f"{diff:+.3f} [{lo:+.3f}, {hi:+.3f}]"
