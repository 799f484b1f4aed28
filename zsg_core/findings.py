"""The findings table: each claim of the paper, part by part: the paper's number, ours with an
interval over independent units (Bonferroni over the paper's claims, `CONFIRMATORY`; 95% for the
rest), and a verdict from one vocabulary (`VERDICTS`).

The rule behind each finding lives in `rules` (one function per finding, tested to return every
verdict it can); this module holds the vocabulary, the record and the table.

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

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .data import DataError
from .stats import MIN_UNITS, Estimate, holm, spread_from_interval, units_needed
from .util import atomic_file, build_dir

# What the paper's figures show (paper.md section 4, [F]); steps are the paper's, epochs its own.
PAPER = {
    "E1": {"text": "held-out loss NIV2 4.07 -> ~1.0 by ~20 steps, P3 5.07 -> ~0.95, of a ~1,800-step epoch (~1%)"},
    "E1b": {"text": "loss smooth after the early drop; ROUGE / EM jump between checkpoints; RM scores overlap for right and wrong answers"},
    "E2": {"text": "cluster order: single held-out tasks drop suddenly (e.g. task900, coqa) when similar data arrive"},
    "E3": {"text": "by eye, Cosine-Min steps down where the cluster-order loss drops; Min and Avg chosen for WSD"},
    "E4": {"epoch": 1797, "step": 100, "NFT": 0.62, "RT": 0.65, "FFT": 0.68,
           "text": "step 100 of a 1,797-step epoch: NFT ~0.62 < RT ~0.65 < FFT ~0.68 (start 1.25)"},
    "E5": {"epoch": 1797, "step": 800, "early_step": 150, "fine": 0.95, "coarse": 1.06,
           "text": "coarse ~0.05 lower up to step 150, curves cross at 250-350, at step 800 fine ~0.95 < coarse ~1.06"},
    "E6": {"epoch": 1875, "step": 500, "NFT": 0.53, "RT": 0.62, "FFT": 0.84,
           "text": "step 500 of a 1,875-step epoch: NFT ~0.53 < RT ~0.62 < FFT ~0.84 (start 3.13)"},
    "E7": {"text": "ShareGPT step 100: NFT 0.760 < RT 0.788 = FFT 0.788; NoRobots step 350: 1.297 < 1.304 < 1.309"},
    "E8": {"text": "step 300: rounds [0,5) ~0.61 < [5,10) ~0.617 < [10,15) ~0.65 < later groups ~0.68-0.69"},
    # Beyond the paper (chapter 8): what later work claims about the representation of "similar"
    "S1": {"text": "Nayak et al. 2026: only gradient-based distances consistently predicted the value of targeted "
                   "data, sentence embeddings did not; RDS+ (Ivison et al. 2025): mean-pooled hidden states the best "
                   "representation at scale"},
    "S2": {"text": "LESS (Xia et al. 2024): projected gradient features select the most useful targeted instructions; "
                   "RDS+: hidden states beat gradients and embeddings for selection"},
    # Beyond the paper (chapter 9): orders decided while training
    "A": {"text": "not studied: online batch selection (GREATS, Wang et al. 2024) picks what to train on from the "
                  "model's current gradients, but has not been turned on ordering a fixed set for unseen tasks"},
}

# The run parameters a record must share with the table (the seeds vary inside chapters).
SHARED = ("model", "test_tasks", "train_per_task", "test_per_task", "max_len", "lr", "batch_size",
          "max_steps", "frozen_layers")

# The confirmatory family, declared before the runs: the paper's own claims as the findings table
# lists them (experiment -> the most parts its rules judge there). Their verdicts rest on
# Bonferroni intervals over the whole family, each at coverage 1 - ALPHA / FAMILY_SIZE, so that
# the chance of any false verdict among them stays at ALPHA; every other row (E4+, E9, S1, S2:
# questions of this book, not the paper's claims) is exploratory, judged on its own 95% interval
# and marked so in the table. A table with more parts of a confirmatory experiment than declared
# is refused (`collect`): the family is fixed before the results are seen.
ALPHA = 0.05
# E8 judges each pair of neighbouring round groups: 5 in the gpu profile, the most of the shipped profiles
CONFIRMATORY = {"E1": 2, "E2": 1, "E3": 2, "E4": 3, "E5": 2, "E6": 3, "E7": 2, "E8": 5}
FAMILY_SIZE = sum(CONFIRMATORY.values())


def family(experiment: str) -> str:
    return "confirmatory" if experiment in CONFIRMATORY else "exploratory"


def interval_level(experiment: str) -> float:
    """The coverage of the interval a part of `experiment` is judged on."""
    return 1 - ALPHA / FAMILY_SIZE if experiment in CONFIRMATORY else 1 - ALPHA


# One vocabulary for every verdict, defined here only. A part of a claim is judged on the 95%
# interval of its effect over independent units (task splits, or shuffles where a claim is about
# one split's order noise):
REPRODUCED = "reproduced"  # the interval lies wholly on the side the paper claims
CONTRADICTED = "contradicted"  # the interval lies wholly on the other side
INCONCLUSIVE = "inconclusive"  # it straddles the boundary, or there are too few units for an interval
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE)
SIDES = ("<", ">")


@dataclass
class Finding:
    experiment: str  # "E4", "E4+" (beyond the paper), ...
    claim: str  # the paper's claim, as a sentence; a compound claim has one Finding per part
    part: str  # the part judged here, as an inequality ("NFT < RT") or a sentence
    paper: str  # the paper's number, read off its figure
    measured: str  # ours, in words
    effect: float  # the number the verdict rests on
    lo: float  # its interval at `level` (NaN: fewer than stats.MIN_UNITS units, or no spread between them)
    hi: float
    n: int  # independent units the interval is over
    unit: str  # what they are ("task splits", "shuffles on one split", "runs")
    p: float  # two-sided p of the effect at the rule's boundary (NaN: no test)
    point: str  # where in training it was measured
    verdict: str  # one of VERDICTS
    level: float = 1 - ALPHA  # the interval's coverage (`interval_level`: Bonferroni for the confirmatory family)
    step: int | None = None  # the training step it was read at, where it was read at one
    boundary: float = 0.0  # the value the verdict compares the effect with (the claim: effect `side` boundary)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise DataError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def verdict(estimate: "Estimate", side: str, boundary: float = 0.0) -> str:
    """The verdict on "effect `side` `boundary`" (side '<' or '>') from an estimate over units."""
    if side not in SIDES:
        raise DataError(f"side must be one of {SIDES}, got {side!r}")
    if not estimate.has_interval:
        return INCONCLUSIVE
    below, above = estimate.hi < boundary, estimate.lo > boundary
    if side == "<":
        return REPRODUCED if below else CONTRADICTED if above else INCONCLUSIVE
    return REPRODUCED if above else CONTRADICTED if below else INCONCLUSIVE


def relative_step(fraction: float, epoch_steps: int, steps: Sequence[int]) -> int:
    """The evaluated step nearest to `fraction` of our epoch (clipped to the steps we have)."""
    if not steps:
        raise DataError("no evaluated steps")
    target = fraction * epoch_steps
    return int(min(steps, key=lambda s: (abs(s - target), s)))


def paper_fraction(experiment: str) -> float:
    """The paper's reading point of `experiment` as a fraction of its epoch."""
    paper = PAPER[experiment]
    return paper["step"] / paper["epoch"]


def shared_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: params[k] for k in SHARED if k in params}


def findings_dir() -> Path:
    return build_dir() / "findings"


MISSING = "–"  # how a table shows a number that does not exist (no interval, no p): never "nan"


def signed(value: float, digits: int = 3) -> str:
    """A signed number as prose and tables write it: "+0.120", "-0.040", and never "-0.000" (a
    value that rounds to zero is zero, whatever side it came from)."""
    return f"{round(float(value), digits) + 0.0:+.{digits}f}"  # + 0.0 turns -0.0 into 0.0


def fmt_p(p: float) -> str:
    """A p-value as a table shows it: 3 decimals, "<0.001" below that, MISSING where there is none."""
    return MISSING if not np.isfinite(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def p_cell(p: float) -> str:
    """`fmt_p` for a Styler's cell, which writes a formatter's text as is ("<0.001" is escaped)."""
    return html.escape(fmt_p(p))


def record(chapter: str, params: Mapping[str, Any], findings: Sequence[Finding],
           curves: pd.DataFrame | None = None) -> None:
    """Store a chapter's findings (and the tidy gap curves behind them) for the findings chapter (11_findings)."""
    path = findings_dir() / f"{chapter}.json"
    body = {"chapter": chapter, "params": shared_params(params), "findings": [asdict(f) for f in findings],
            "curves": [] if curves is None else json.loads(curves.to_json(orient="records"))}
    with atomic_file(path) as f:
        json.dump(body, f, indent=1, allow_nan=True)


NUMERIC = ("effect", "diff", "lo", "hi", "p", "boundary")  # the columns of findings and curves that may hold NaN


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """JSON writes NaN as null: a column whose every value is missing (no interval anywhere) would
    come back as objects, which plots and arithmetic refuse; read them back as floats."""
    return frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in NUMERIC if c in frame})


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
        rows = pd.DataFrame(body["findings"])
        if "boundary" not in rows:  # recorded before findings kept it: no verdict changes, only planning lacks it
            rows = rows.assign(boundary=np.nan)
        tables.append(_numeric(rows).assign(chapter=chapter))
        curves.append(_numeric(pd.DataFrame(body["curves"])).assign(chapter=chapter))
    table = pd.concat(tables, ignore_index=True)
    table = table.assign(family=table.experiment.map(family))
    parts = table[table.family == "confirmatory"].groupby("experiment").size()
    over = {e: int(n) for e, n in parts.items() if n > CONFIRMATORY[e]}
    if over:
        raise DataError(f"the confirmatory family declares {({e: CONFIRMATORY[e] for e in over})} parts, the table has "
                        f"{over}: declare the family (findings.CONFIRMATORY) before the runs, not after")
    confirmatory = (table.family == "confirmatory").to_numpy()
    p_holm = np.full(len(table), np.nan)
    # Holm over the declared family, as the Bonferroni intervals are: a part not in the table (its
    # chapter not built) or without a p counts as one that rejects nothing (p = 1)
    p = table.p.to_numpy(float)[confirmatory]
    padded = np.concatenate([np.where(np.isfinite(p), p, 1.0), np.ones(FAMILY_SIZE - len(p))])
    p_holm[confirmatory] = np.where(np.isfinite(p), holm(padded)[: len(p)], np.nan)
    return table.assign(p_holm=p_holm), pd.concat(curves, ignore_index=True)


def units_to_decide(table: pd.DataFrame, power_wanted: float = 0.8, most: int = 200) -> pd.Series:
    """Per row of a findings table: the fewest units (of the row's own kind) whose interval at the
    row's level would decide an effect as large as the one seen, with chance `power_wanted`, at
    the spread between units behind its interval (`stats.units_needed`). NaN where the row has no
    t-interval to read a spread from (fewer than MIN_UNITS units, no spread, an interval not
    centred on the effect, or no recorded boundary); inf where `most` units are not enough.

    For planning the next build's splits before it runs: never a reason to add units to this one
    because an interval happens to exclude the boundary."""
    def one(row: pd.Series) -> float:
        lo, hi, effect, boundary = row["lo"], row["hi"], row["effect"], row.get("boundary", np.nan)
        if not (np.isfinite([lo, hi, effect, boundary]).all() and row["n"] >= MIN_UNITS and hi > lo):
            return np.nan
        if abs((lo + hi) / 2 - effect) > 1e-9 * max(1.0, abs(effect)):  # not a t-interval around the effect
            return np.nan
        sd = spread_from_interval(lo, hi, int(row["n"]), float(row["level"]))
        needed = units_needed(float(effect - boundary), sd, float(row["level"]), power_wanted, most)
        return np.inf if needed is None else float(needed)

    return table.apply(one, axis=1) if len(table) else pd.Series(dtype=float)


def counted(n: int, noun: str) -> str:
    """A count as prose: '1 run', '2 runs' (a regular plural)."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def lowest_by_step(loss: pd.DataFrame) -> str:
    """Which column (order, group) had the lowest mean loss at each evaluation after step 0, as prose
    under a per-step table (rows steps, columns orders): 'random lowest at all 18 evaluations
    after step 0' or 'RT lowest at 7 of the 8 evaluations after step 0, NFT at 1'."""
    after = loss[loss.index > 0].dropna(how="all")
    if after.empty:
        raise DataError("no evaluation after step 0 to read the lowest loss at")
    (first, n), *rest = after.idxmin(axis=1).value_counts().items()
    if not rest:
        return f"{first} lowest at all {len(after)} evaluations after step 0"
    return (f"{first} lowest at {n} of the {len(after)} evaluations after step 0, "
            + ", ".join(f"{label} at {k}" for label, k in rest))


def above_zero_by_step(gaps: pd.DataFrame) -> str:
    """How often each gap (columns "A - B", rows steps) was above 0 after step 0, as prose under a
    per-step gap table: 'NFT - RT 8 of 8; RT - FFT 0 of 8'."""
    after = gaps[gaps.index > 0]
    if after.empty:
        raise DataError("no evaluation after step 0 to read the gaps at")
    return "; ".join(f"{c} {int((after[c] > 0).sum())} of {len(after)}" for c in after)


def listed(names: Sequence[str]) -> str:
    """Names as prose: 'a', 'a and b', 'a, b and c'."""
    names = list(names)
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def tally(found: Sequence[Finding]) -> str:
    """The verdicts of many parts in one sentence a reader can take in: the decided parts named
    under their verdict, the inconclusive ones counted ("reproduced: a; contradicted: b and c; 9
    of 12 inconclusive")."""
    by = {v: [f.part for f in found if f.verdict == v] for v in VERDICTS}
    named = [f"**{v}**: {listed(parts)}" for v, parts in by.items() if parts and v != INCONCLUSIVE]
    if by[INCONCLUSIVE]:
        named.append(f"{len(by[INCONCLUSIVE])} of {len(found)} **{INCONCLUSIVE}**")
    return "; ".join(named)


def fmt(estimate: "Estimate", unit: str = "task splits", level: float = 1 - ALPHA) -> str:
    """'-0.120 [-0.200, -0.040] (95%) over 5 task splits' (the interval's coverage always named: a
    table mixes the confirmatory family's wider intervals with 95% ones), or '-0.120 (one task
    split only: no interval)'."""
    if not estimate.has_interval:
        one = {"task splits": "task split", "instance draws": "instance draw", "runs": "run"}.get(unit, unit)
        return f"{signed(estimate.value)} (one {one} only: no interval)" if estimate.n == 1 else \
            f"{signed(estimate.value)} ({estimate.n} {unit}: no interval)"
    coverage = f"{100 * level:.2f}".rstrip("0").rstrip(".")  # 95%, 99.75%
    return (f"{signed(estimate.value)} [{signed(estimate.lo)}, {signed(estimate.hi)}] ({coverage}%) "
            f"over {estimate.n} {unit}")
