"""The rule behind each finding: tidy tables of runs in, `Finding`s out, one part per inequality.

Every rule states itself in one sentence (`RULES`, shown above its result in the chapter) and is
judged in one vocabulary (`findings.VERDICTS`) on an interval over independent units (`stats`):
task splits where a claim generalizes over held-out tasks; the shuffles of one split only where
the claim is about that split's noise (E1's indicators). A compound claim ("NFT < RT < FFT") is
one Finding per part. Fewer than three units, or units that all agree exactly: no interval
(`stats.over_units`), and the verdict is inconclusive.

    order_parts(task_curves, step, ("NFT", "RT", "FFT"), experiment="E4", ...)   # E4, E4+, E6, E7, E8, E9
    early(loss_curves, epoch)                                                  # E1, claim 1
    steadiest(jitters)                                                         # E1, claim 2
    sudden(windows)                                                            # E2
    measures(power)                                                            # E3
    representations(power, pairs)                                              # S1: which similarity predicts
    granularity(task_curves, early_step, late_step), granularity_against_random(...)  # E5, E5+
    decomposition(task_curves, step, ("NFT", "task", "family", "RT"), carries)      # why NFT loses: its parts
    explanation(name, prediction, estimate, side, contrast=...)                     # other evidence, one row

tests/test_rules.py feeds each rule synthetic curves that make it return every verdict it can,
the one that contradicts the paper included.
"""
from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd

from .data import DataError
from .findings import (
    ALPHA,
    CONTRADICTED,
    FAMILY_SIZE,
    INCONCLUSIVE,
    PAPER,
    REPRODUCED,
    Finding,
    fmt,
    interval_level,
    relative_step,
    signed,
    verdict,
)
from .stats import Estimate, over_units, split_means

EARLY_FRACTION = 0.02  # of an epoch: the paper's "~20 of ~1,800 steps" (1.1%), with some room
REFERENCE_FRACTION = 0.10  # of an epoch: the horizon "early" is measured against
EARLY_SHARE = 0.8  # "most of the drop": the share of the drop by the reference made by the early point

# Said once under the rules a page states (`stated`), where any of them judges on an interval.
LEVELS = (f" The interval is the Bonferroni one at {1 - ALPHA / FAMILY_SIZE:.2%} for a part of the paper's own claims "
          f"(the confirmatory family of {FAMILY_SIZE} parts, declared before the runs in `findings.CONFIRMATORY`), "
          f"so that all of them together are wrong with chance at most {ALPHA:.0%}; the 95% one for the book's other, "
          "exploratory questions. The p beside a verdict is the same t-test's two-sided p, not adjusted: a part of the "
          f"paper's claims is decided only where it is below {ALPHA / FAMILY_SIZE:.4f}.")

RULES = {
    "order": ("Each part \"A < B\" compares the held-out loss under order A with order B at the reading point: per "
              "task split, the mean over its held-out tasks of A's loss minus B's (an order's shuffles averaged); "
              "**reproduced** if the t-interval over task splits lies wholly below 0, **contradicted** if wholly "
              "above, else **inconclusive** (also with a single task split)."),
    "early": (f"E1 reads each random-order run at {EARLY_FRACTION:.0%} and {REFERENCE_FRACTION:.0%} of an epoch "
              f"(fixed fractions of the epoch, so the rule does not move with `max_steps`): the share of the "
              f"held-out loss drop by {REFERENCE_FRACTION:.0%} that had happened by {EARLY_FRACTION:.0%}. "
              f"**Reproduced** if the interval over task splits of that share (each split's shuffles averaged; "
              f"a share, not clipped to [0, 1]) lies wholly above {EARLY_SHARE} ({EARLY_SHARE:.0%} of the drop), "
              f"**contradicted** if wholly below (a straight-line decline scores "
              f"{EARLY_FRACTION / REFERENCE_FRACTION:.1f}), else inconclusive; inconclusive too when the runs "
              f"stop before {REFERENCE_FRACTION:.0%} of the epoch."),
    "steadiest": ("Claim 2 compares, run by run and protocol by protocol, the jitter of held-out loss after its "
                  "change with the jitter of the steadiest generation metric, both on the same checkpoints and the "
                  "same instances (those the protocol generated at each step); the differences are averaged per "
                  "task split: **reproduced** if the interval over task splits lies wholly below 0, "
                  "**contradicted** if wholly above, else inconclusive."),
    "sudden": ("E2 counts every (held-out task, window between evaluations) under cluster order, decided before "
               "looking: its excess fall (loss fall under cluster minus under random order in the same window) where "
               "a closer training instance arrived (Cosine-Min of the prefix fell) against where none did, compared "
               "inside each window and averaged over windows. **Reproduced** if the interval over task splits "
               "lies wholly above 0, **contradicted** if wholly below, else inconclusive. The split is the unit, so "
               "tasks of one family dropping together cannot inflate the evidence."),
    "measures": ("E3 scores each measure by its within-window rank correlation with the loss change on each task "
                 "split, and compares the paper's measures with every other, paired by split. The WSD combination "
                 "of Min and Avg is **reproduced** as the better predictor if its interval over splits is wholly "
                 "above that of chance (first part) and wholly above every alternative (second part), "
                 "**contradicted** if wholly below chance or below some alternative, else inconclusive. The "
                 "alternatives are the measures that are neither Min nor Avg (Max, Centroid, KL); Euclidean Min "
                 "and Avg are the paper's measures under another distance, shown but not judged."),
    "explanation": ("NFT - RT at the reading point is split into parts that add up to it, each the difference "
                    "between two orders that differ in one thing, in the same unit (held-out loss; per task split "
                    "the mean over its held-out tasks, and a split's parts sum to its NFT - RT). Each explanation "
                    "predicts the sign of one part: **supported** if the one-sided 95% bound over task splits lies "
                    "on the predicted side of 0, **refuted** if the one-sided 95% bound the other way lies on the "
                    "other side, else **undecided**. Parts are listed in the decomposition's order with the share of "
                    "the gap each carries, not ranked. Evidence that is not a part of NFT - RT (correlations, "
                    "groups of tasks, other averages and set-ups) is judged the same way in a table of its own."),
    "representations": ("Which representation predicts the loss change: each measure's within-window rank correlation "
                        "with the loss change (E3's analysis) on each task split, with the prefix and the held-out set "
                        "represented by each feature kind; a part \"a > b\" is **reproduced** if the t-interval "
                        "over splits of rho(a) - rho(b), paired by split, lies wholly above 0, **contradicted** if "
                        "wholly below, else inconclusive. \"chance\" is a measure of pure noise scored the same way."),
    "granularity": ("E5 is judged in two parts, each at its relative point of the paper's run: coarse < fine early "
                    "(the paper's early step) and fine < coarse later (its late step), each by the order rule. "
                    "Each point is also read against random order on the same schedule (E5+, exploratory): coarse < "
                    "RT and fine < RT. A reproduced part \"a < b\" is carried by granularity where a beats RT; where "
                    "instead b loses to RT and a does not beat it, it is carried by b's own gap to RT (fine is "
                    "chapter 4's NFT)."),
}

INTERVAL_RULES = {"order", "early", "steadiest", "sudden", "measures", "representations"}  # judged on an interval


def stated(*names: str, unit: str = "task split") -> str:
    """The rules `names` as a page states them above their verdicts, each once, and which interval
    they are judged on (`LEVELS`) once after them; `unit` names what the intervals are over where it
    is not a task split (chapter 10: an instance draw)."""
    unknown = [n for n in names if n not in RULES]
    if unknown or not names:
        raise DataError(f"unknown rule(s) {unknown}; the rules are {', '.join(RULES)}")
    text = "\n\n".join(RULES[n] for n in names) + (LEVELS if INTERVAL_RULES & set(names) else "")
    return text if unit == "task split" else text.replace("task split", unit)


EVIDENCE = ("supported", "undecided", "refuted")  # the explanations' words
EVIDENCE_LEVEL = 1 - 2 * ALPHA  # a two-sided 90% interval: each bound is a one-sided 95% bound


def explanation(name: str, prediction: str, estimate: Estimate, side: str, *, contrast: str,
                unit: str = "task splits") -> dict[str, object]:
    """One row of an explanations table: `prediction` says the contrast is `side` 0 ('<' or '>'),
    judged on the one-sided bound in that direction (`RULES["explanation"]`); `estimate` is computed
    at `EVIDENCE_LEVEL` (`stats.over_units(..., level=EVIDENCE_LEVEL)`, `stats.correlation` alike)."""
    if side not in ("<", ">"):
        raise DataError(f"side must be '<' or '>', got {side!r}")
    if abs(estimate.level - EVIDENCE_LEVEL) > 1e-12:
        raise DataError(f"an explanation is judged on one-sided {1 - ALPHA:.0%} bounds: compute its estimate at level "
                        f"{EVIDENCE_LEVEL:.2f}, not {estimate.level}")
    evidence = {REPRODUCED: "supported", CONTRADICTED: "refuted", INCONCLUSIVE: "undecided"}[verdict(estimate, side)]
    if estimate.has_interval:
        leans = (estimate.value > 0) == (side == ">")
        p = estimate.p / 2 if leans else 1 - estimate.p / 2  # one-sided, in the predicted direction
        # both bounds: the one on the predicted side supports, the other refutes
        measured = (f"{signed(estimate.value)}, above {signed(estimate.lo)} and below {signed(estimate.hi)} (one-sided "
                    f"{1 - ALPHA:.0%} bounds), over {estimate.n} {unit}")
    else:
        p, measured = float("nan"), fmt(estimate, unit)
    return {"explanation": name, "prediction": prediction, "contrast": contrast, "predicted": f"{side} 0",
            "measured": measured, "estimate": estimate.value, "lo": estimate.lo, "hi": estimate.hi, "n": estimate.n,
            "p (one-sided)": p, "evidence": evidence}


def decomposition(task_curves: pd.DataFrame, step: int, chain: Sequence[str],
                  carries: Sequence[tuple[str, str, str]], unit: str = "task splits") -> pd.DataFrame:
    """chain[0] - chain[-1] at `step` as the sum of the neighbouring differences chain[i] - chain[i+1]
    (`stats.split_means`), one explanation row each: `carries[i]` = (explanation, prediction, side)
    of part i. Adds the share of the whole each part carries; refuses parts that do not add up to
    the whole on every split (orders evaluated on different tasks or splits)."""
    if len(carries) != len(chain) - 1:
        raise DataError(f"{len(chain) - 1} parts in the chain {' > '.join(chain)}, {len(carries)} explanations given")
    whole = split_means(task_curves, chain[0], chain[-1], step).set_index("split")["diff"]
    parts = [split_means(task_curves, a, b, step).set_index("split")["diff"] for a, b in zip(chain, chain[1:])]
    summed = sum(parts)
    if not (summed.index.equals(whole.index) and np.allclose(summed.to_numpy(), whole.to_numpy(), atol=1e-9)):
        raise DataError(f"the parts of {chain[0]} - {chain[-1]} do not add up on every split: the orders "
                        f"{', '.join(chain)} must be evaluated on the same splits and held-out tasks")
    total = float(whole.mean())
    rows = []
    for (a, b), values, (name, prediction, side) in zip(zip(chain, chain[1:]), parts, carries):
        row = explanation(name, prediction, over_units(values, level=EVIDENCE_LEVEL), side, contrast=f"{a} - {b}",
                          unit=unit)
        rows.append(row | {"share of the gap": row["estimate"] / total if total else float("nan")})
    return pd.DataFrame(rows)


def _part(experiment: str, claim: str, part: str, paper: str, estimate: Estimate, side: str, boundary: float,
          point: str, unit: str, measured: str | None = None, step: int | None = None) -> Finding:
    """A part judged on `estimate`, whose interval is at `interval_level(experiment)`."""
    level = interval_level(experiment)
    return Finding(experiment=experiment, claim=claim, part=part, paper=paper,
                   measured=measured or f"{part.replace(' < ', ' - ').replace(' > ', ' - ')} {fmt(estimate, unit, level)}",
                   effect=estimate.value, lo=estimate.lo, hi=estimate.hi, n=estimate.n, unit=unit, p=estimate.p,
                   point=point, verdict=verdict(estimate, side, boundary), level=level,
                   step=None if step is None else int(step), boundary=float(boundary))


def order_parts(task_curves: pd.DataFrame, step: int, chain: Sequence[str], *, experiment: str, claim: str,
                paper: str, point: str, pairs: Sequence[tuple[str, str]] | None = None,
                unit: str = "task splits") -> list[Finding]:
    """The claim chain[0] < chain[1] < ... as one Finding per pair (every pair, or `pairs`):
    a - b at `step` over the runs' splits (`stats.split_means`; `unit` names them), claimed below 0."""
    pairs = list(pairs) if pairs is not None else list(combinations(chain, 2))
    out = []
    for a, b in pairs:
        means = split_means(task_curves, a, b, step)
        out.append(_part(experiment, claim, f"{a} < {b}", paper, over_units(means["diff"], level=interval_level(experiment)),
                         "<", 0.0, point, unit, step=step))
    return out


def early_share(steps: Sequence[int], losses: Sequence[float], epoch: int) -> float:
    """One curve's share of its drop by REFERENCE_FRACTION of `epoch` made by EARLY_FRACTION (the
    evaluated steps nearest to both; 0 when the loss did not fall by the reference). NaN when the
    curve stops before 90% of the reference point."""
    s, v = np.asarray(steps), np.asarray(losses, dtype=float)
    if s.max() < 0.9 * REFERENCE_FRACTION * epoch:
        return float("nan")
    early_step = relative_step(EARLY_FRACTION, epoch, list(s))
    reference = relative_step(REFERENCE_FRACTION, epoch, list(s))
    start = v[s == 0][0] if (s == 0).any() else float("nan")
    drop = start - v[s == reference][0]
    if not drop > 0:
        return 0.0
    return float((start - v[s == early_step][0]) / drop)


def early(curves: pd.DataFrame, epoch: int, *, paper: str = PAPER["E1"]["text"]) -> Finding:
    """E1 claim 1 from random-order loss curves (columns split, order_seed, step, loss)."""
    shares = pd.DataFrame([{"split": split, "share": early_share(c.step, c.loss, epoch)}
                           for (split, _), c in curves.sort_values("step").groupby(["split", "order_seed"])])
    claim = "Zero-shot generalization appears very early in instruction tuning (claim 1)"
    part = (f"share of the drop by {REFERENCE_FRACTION:.0%} of the epoch made by {EARLY_FRACTION:.0%} "
            f"> {EARLY_SHARE:.0%}")
    point = f"{EARLY_FRACTION:.0%} against {REFERENCE_FRACTION:.0%} of the {epoch}-step epoch"
    if shares.share.isna().any():
        reached = int(curves.step.max())
        return Finding("E1", claim, part, paper, f"runs stop at step {reached} ({reached / epoch:.1%} of the epoch), "
                       f"before the reference point", float("nan"), float("nan"), float("nan"), 0, "task splits",
                       float("nan"), point, INCONCLUSIVE)
    estimate = over_units(shares.groupby("split").share.mean(), null=EARLY_SHARE, level=interval_level("E1"))
    return _part("E1", claim, part, paper, estimate, ">", EARLY_SHARE, point, "task splits",
                 f"share of the drop made early {fmt(estimate, 'task splits', interval_level('E1'))}")


def steadiest(jitters: pd.DataFrame, *, paper: str = PAPER["E1b"]["text"]) -> Finding:
    """E1 claim 2 from per-run jitters (`compare.metric_jitters`: columns split, seed, metric,
    protocol, jitter; held-out loss is metric "held-out loss", measured per protocol on the
    instances it generated): per run and protocol, the loss's jitter minus the least jitter of a
    generation metric of the same protocol; averaged per task split, the estimate over splits."""
    missing = {"split", "seed", "metric", "protocol", "jitter"} - set(jitters.columns)
    if missing:
        raise DataError(f"E1's jitters need columns {sorted(missing)}")
    per_run = []
    for (split, seed, protocol), g in jitters.groupby(["split", "seed", "protocol"]):
        loss = g[g.metric == "held-out loss"].jitter
        if len(loss) > 1:  # two runs under one name would be paired with each other's metrics
            raise DataError(f"{len(loss)} runs on split {split} share seed {seed} ({protocol}): E1 needs one run per "
                            "split and seed")
        others = g[(g.metric != "held-out loss") & g.jitter.notna()].jitter
        if len(loss) == 1 and np.isfinite(loss.iloc[0]) and len(others):
            per_run.append({"split": split, "diff": float(loss.iloc[0] - others.min())})
    claim = "Held-out loss is the steadiest indicator (claim 2)"
    part = "loss jitter < the steadiest generation metric's"
    if not per_run:
        return Finding("E1", claim, part, paper, "no run has both a loss and a moving generation metric",
                       float("nan"), float("nan"), float("nan"), 0, "task splits", float("nan"), "generation steps",
                       INCONCLUSIVE)
    by_split = pd.DataFrame(per_run).groupby("split")["diff"].mean()
    estimate = over_units(by_split, level=interval_level("E1"))
    return _part("E1", claim, part, paper, estimate, "<", 0.0, "generation steps", "task splits",
                 f"loss jitter - least generation-metric jitter, same instances "
                 f"{fmt(estimate, 'task splits', interval_level('E1'))}")


def window_contrast(windows: pd.DataFrame) -> float:
    """One split's E2 effect: per window, mean excess fall where similar data arrived minus where
    none did (windows with both kinds only), averaged over windows; NaN when no window has both."""
    diffs = []
    for _, w in windows.groupby(["start", "end"]):
        hit, miss = w[w.arrived].excess, w[~w.arrived].excess
        if len(hit) and len(miss):
            diffs.append(hit.mean() - miss.mean())
    return float(np.mean(diffs)) if diffs else float("nan")


def sudden(windows: pd.DataFrame, *, paper: str = PAPER["E2"]["text"], point: str = "every window") -> Finding:
    """E2 from every (split, task, window): columns split, task, start, end, excess, arrived."""
    need = {"split", "task", "start", "end", "excess", "arrived"}
    if not need <= set(windows.columns):
        raise DataError(f"E2 windows need columns {sorted(need)}, have {sorted(windows.columns)}")
    per_split = windows.groupby("split").apply(window_contrast, include_groups=False).dropna()
    claim = "Under cluster order, held-out tasks drop suddenly when similar data arrive"
    part = "excess fall where a closer instance arrived > where none did"
    if per_split.empty:
        return Finding("E2", claim, part, paper, "no window had both kinds of task", float("nan"), float("nan"),
                       float("nan"), 0, "task splits", float("nan"), point, INCONCLUSIVE)
    estimate = over_units(per_split, level=interval_level("E2"))
    return _part("E2", claim, part, paper, estimate, ">", 0.0, point, "task splits",
                 f"excess fall, arrived - not {fmt(estimate, 'task splits', interval_level('E2'))}")


PAPER_MEASURES = ("Cosine-Min", "Cosine-Avg")  # the two WSD is built from (claim: Min and Avg track the loss)


def measure_differences(power: pd.DataFrame, mine: Sequence[str], others: Sequence[str],
                        level: float = 1 - ALPHA) -> pd.DataFrame:
    """Paired by split (power: columns split, measure, rho): rho(mine) - rho(other) for every pair,
    with its interval over splits at `level`. Columns measure, other, diff, lo, hi, n, p."""
    wide = power.pivot_table(index="split", columns="measure", values="rho")
    rows = []
    for a in mine:
        for b in others:
            if a == b:
                continue
            e = over_units((wide[a] - wide[b]).dropna(), level=level)
            rows.append({"measure": a, "other": b, "diff": e.value, "lo": e.lo, "hi": e.hi, "n": e.n, "p": e.p})
    return pd.DataFrame(rows)


def measures(power: pd.DataFrame, combined: str, alternatives: Sequence[str], null: str, *,
             paper: str = PAPER["E3"]["text"], point: str = "every window") -> list[Finding]:
    """E3 in two parts from per-split predictive power (columns split, measure, rho): the WSD
    combination `combined` against chance (`null`), and against every one of `alternatives`
    (the part's effect is the smallest of those differences; its verdict needs all of them)."""
    claim = "Min and Avg (combined as in WSD) track the held-out loss better than the alternatives (E3)"
    level = interval_level("E3")
    chance = measure_differences(power, [combined], [null], level).iloc[0]
    estimate = Estimate(float(chance["diff"]), float(chance.lo), float(chance.hi), int(chance.n), float(chance.p))
    first = _part("E3", claim, f"{combined} > chance", paper, estimate, ">", 0.0, point, "task splits",
                  f"within-window rho, {combined} - chance: {fmt(estimate, level=level)}")
    against = measure_differences(power, [combined], alternatives, level)
    worst = against.loc[against["diff"].idxmin()]
    # every alternative: contradicted if one lies wholly above WSD (whatever the others' intervals),
    # reproduced only if WSD lies wholly above each of them; its p is the largest of theirs (the
    # intersection-union test: every one of the comparisons must reject)
    closest = Estimate(float(worst["diff"]), float(worst.lo), float(worst.hi), int(worst.n), float(against.p.max(skipna=False)))
    if (against.hi < 0).any():
        outcome = CONTRADICTED
    elif against.lo.notna().all() and (against.lo > 0).all():
        outcome = REPRODUCED
    else:
        outcome = INCONCLUSIVE
    second = Finding("E3", claim, f"{combined} > every alternative", paper,
                     f"within-window rho, {combined} - {worst.other} (the closest of {len(against)} alternatives): "
                     f"{fmt(closest, level=level)}; {_sides(against)}", closest.value, closest.lo, closest.hi, closest.n, "task splits",
                     closest.p, point, outcome, level)
    return [first, second]


def _sides(against: pd.DataFrame) -> str:
    """Where E3's differences to the alternatives lie, in words."""
    above, below = int((against.lo > 0).sum()), int((against.hi < 0).sum())
    if not above and not below:
        return f"against none of the {len(against)} alternatives does the difference lie wholly on one side of 0"
    return f"the difference lies wholly above 0 against {above} of the {len(against)} alternatives, wholly below against {below}"


def representations(power: pd.DataFrame, pairs: Sequence[tuple[str, str]], *, experiment: str, claim: str,
                    paper: str, point: str = "every window") -> list[Finding]:
    """"a > b" per pair of feature kinds (or a kind and chance): the within-window rho of one
    measure built from kind a minus from kind b, paired by split (power: columns split, kind,
    rho), claimed above 0."""
    missing = {"split", "kind", "rho"} - set(power.columns)
    if missing:
        raise DataError(f"power needs columns {sorted(missing)}")
    by_kind = power.rename(columns={"kind": "measure"})
    out = []
    for a, b in pairs:
        d = measure_differences(by_kind, [a], [b], interval_level(experiment)).iloc[0]
        e = Estimate(float(d["diff"]), float(d.lo), float(d.hi), int(d.n), float(d.p))
        out.append(_part(experiment, claim, f"{a} > {b}", paper, e, ">", 0.0, point, "task splits",
                         f"within-window rho, {a} - {b}: {fmt(e, level=interval_level(experiment))}"))
    return out


def granularity(task_curves: pd.DataFrame, early_step: int, late_step: int, epoch: int) -> list[Finding]:
    """E5 in two parts: coarse < fine at `early_step`, fine < coarse at `late_step`."""
    paper = PAPER["E5"]
    claim = "Instance-level (fine) arrangement overtakes task-level (coarse) later in training (claim 4)"

    def at(step: int, a: str, b: str) -> Finding:
        [finding] = order_parts(task_curves, step, (a, b), experiment="E5", claim=claim, paper=paper["text"],
                                point=f"step {step} ({step / epoch:.1%} of the epoch; paper step "
                                      f"~{round(step / epoch * paper['epoch'])})")
        return finding

    return [at(early_step, "coarse", "fine"), at(late_step, "fine", "coarse")]


def granularity_against_random(task_curves: pd.DataFrame, early_step: int, late_step: int, epoch: int) -> list[Finding]:
    """E5+ (exploratory): coarse < RT and fine < RT at each of E5's two points."""
    claim = "Each granularity against random order on the same schedule (what separates E5's parts)"
    out = []
    for step in (early_step, late_step):
        out += order_parts(task_curves, step, ("coarse", "fine", "RT"), experiment="E5+", claim=claim,
                           paper="not studied", pairs=[("coarse", "RT"), ("fine", "RT")],
                           point=f"step {step} ({step / epoch:.1%} of the epoch)")
    return out


def carried_by(part: Finding, against_random: Sequence[Finding]) -> str:
    """What carries a reproduced E5 part "a < b" (RULES["granularity"]): 'granularity' if a < RT is
    reproduced at the part's point, 'b's penalty' if b < RT is contradicted (b above RT) and a
    < RT is not reproduced, else 'undecided'; a part that is not reproduced has nothing to carry ('')."""
    a, b = part.part.split(" < ")
    at_point = {f.part: f.verdict for f in against_random if f.step == part.step}
    if {f"{a} < RT", f"{b} < RT"} - set(at_point):
        raise DataError(f"no E5+ parts at {part.point!r} for {part.part!r}")
    if part.verdict != REPRODUCED:
        return ""
    if at_point[f"{a} < RT"] == REPRODUCED:
        return "granularity"
    if at_point[f"{b} < RT"] == CONTRADICTED:
        return f"{b}'s penalty"
    return "undecided"


def within_family(found: Sequence[Finding], alpha: float = ALPHA) -> dict[str, list[str]]:
    """Which of a chapter's decided parts would stand on Bonferroni intervals over its own parts:
    'stands' where the part's p is below alpha / (number of parts), 'falls' where it is decided
    on its own interval but not there (inconclusive parts are in neither). For an exploratory
    chapter, judged part by part at 95%, this says which verdicts are robust and which marginal."""
    if not found:
        raise DataError("no parts to judge together")
    threshold = alpha / len(found)
    decided = [f for f in found if f.verdict != INCONCLUSIVE]
    return {"stands": [f.part for f in decided if f.p < threshold],
            "falls": [f.part for f in decided if not f.p < threshold]}
