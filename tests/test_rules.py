"""rules: each finding's rule returns every verdict it can, the one contradicting the paper included,
from synthetic curves whose answer is known."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from zsg_core import findings, rules
from zsg_core.data import DataError
from zsg_core.findings import CONTRADICTED, INCONCLUSIVE, REPRODUCED

EPOCH = 500
STEPS = [0, 5, 10, 15, 20, 30, 40, 50, 60]


def task_curves(offsets: dict[str, list[float]], tasks: int = 6, noise: float = 0.02, seed: int = 0,
                steps=STEPS, shuffles: dict[str, int] | None = None) -> pd.DataFrame:
    """Per-task loss: a shared falling curve, plus each label's offset on each split (one entry per
    split), plus task noise. `shuffles` gives some labels several order seeds per split."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, per_split in offsets.items():
        for split, offset in enumerate(per_split):
            for order_seed in range((shuffles or {}).get(label, 1)):
                for t in range(tasks):
                    for s in steps:
                        loss = 1 + 2 * math.exp(-s / 5) + (offset if s > 0 else 0) + rng.normal(0, noise)
                        rows.append({"label": label, "split": split, "order_seed": order_seed,
                                     "task": f"t{t}", "step": s, "loss": loss})
    return pd.DataFrame(rows)


def order_verdicts(offsets, **kw) -> dict[str, str]:
    found = rules.order_parts(task_curves(offsets, **kw), 30, ("NFT", "RT", "FFT"), experiment="E4",
                              claim="c", paper="p", point="step 30")
    return {f.part: f.verdict for f in found}


def test_order_rule_returns_each_verdict_part_by_part():
    # the paper's result on five splits: every part reproduced
    got = order_verdicts({"NFT": [-.3, -.2, -.25, -.35, -.3], "RT": [0] * 5, "FFT": [.3, .25, .2, .3, .35]})
    assert got == {"NFT < RT": REPRODUCED, "NFT < FFT": REPRODUCED, "RT < FFT": REPRODUCED}
    # what the cpu book saw: both sorted orders worse than random -> NFT < RT contradicted, not "partly"
    got = order_verdicts({"NFT": [.7, .8, .6, .75, .65], "RT": [0] * 5, "FFT": [.72, .7, .8, .6, .7]})
    assert got["NFT < RT"] == CONTRADICTED and got["RT < FFT"] == REPRODUCED
    assert got["NFT < FFT"] == INCONCLUSIVE  # NFT - FFT straddles 0
    # noise as large as the effect: inconclusive
    got = order_verdicts({"NFT": [.3, -.3, .2, -.25, .05], "RT": [0] * 5, "FFT": [.1] * 5})
    assert got["NFT < RT"] == INCONCLUSIVE


def test_one_split_is_never_a_verdict_however_many_tasks_or_shuffles():
    got = order_verdicts({"NFT": [-.5], "RT": [0], "FFT": [.5]}, tasks=40, shuffles={"RT": 3})
    assert set(got.values()) == {INCONCLUSIVE}
    [f] = rules.order_parts(task_curves({"NFT": [-.5], "RT": [0]}), 30, ("NFT", "RT"), experiment="E4",
                            claim="c", paper="p", point="s")
    assert f.n == 1 and math.isnan(f.lo) and "no interval" in f.measured


def test_shuffles_are_averaged_within_a_split_before_the_interval():
    curves = task_curves({"NFT": [-.2, -.2, -.2], "RT": [0, 0, 0]}, shuffles={"RT": 3})
    [f] = rules.order_parts(curves, 30, ("NFT", "RT"), experiment="E4", claim="c", paper="p", point="s")
    assert f.n == 3 and f.unit == "task splits" and f.verdict == REPRODUCED
    assert f.effect == pytest.approx(-0.2, abs=0.03)


def early_curves(shape, splits: int = 4, shuffles: int = 2, steps=range(0, 61, 2)) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(1)
    for split in range(splits):
        for seed in range(shuffles):
            for s in steps:
                rows.append({"split": split, "order_seed": seed, "step": s, "loss": shape(s) + rng.normal(0, 0.002)})
    return pd.DataFrame(rows)


def test_early_rule_passes_a_fast_drop_and_fails_a_line_and_a_steady_fall():
    fast = rules.early(early_curves(lambda s: 1 + 3 * math.exp(-s / 2)), EPOCH)
    assert fast.verdict == REPRODUCED and fast.effect > 0.95
    # a straight line over the window scores the early fraction over the reference, 20%
    line = rules.early(early_curves(lambda s: 4 - s / 60), EPOCH)
    assert line.verdict == CONTRADICTED and line.effect == pytest.approx(0.2, abs=0.03)
    # still falling steadily (time constant of a tenth of the epoch): contradicted too
    steady = rules.early(early_curves(lambda s: 1 + 3 * math.exp(-s / 50)), EPOCH)
    assert steady.verdict == CONTRADICTED
    # a loss that rises scores 0 on every split: identical units carry no noise to build an
    # interval from (stats.over_units), so they decide nothing
    rising = rules.early(early_curves(lambda s: 1 + s / 100), EPOCH)
    assert rising.verdict == INCONCLUSIVE and rising.effect == 0 and math.isnan(rising.lo)
    # splits that disagree (a fast and a slow one): inconclusive
    fast_split = early_curves(lambda s: 1 + 3 * math.exp(-s / 3), splits=1)
    slow_split = early_curves(lambda s: 1 + 3 * math.exp(-s / 12), splits=1).assign(split=1)
    assert rules.early(pd.concat([fast_split, slow_split]), EPOCH).verdict == INCONCLUSIVE


def test_early_rule_does_not_move_with_the_window():
    """The same curve judged on a 60- and a 200-step window gives the same share."""
    shape = lambda s: 1 + 3 * math.exp(-s / 8)  # noqa: E731
    short = rules.early(early_curves(shape, steps=range(0, 61, 2)), EPOCH)
    long = rules.early(early_curves(shape, steps=range(0, 201, 2)), EPOCH)
    assert short.effect == pytest.approx(long.effect, abs=0.01)
    # a window that stops before the reference point gives no verdict
    cut = rules.early(early_curves(shape, steps=range(0, 31, 2)), EPOCH)
    assert cut.verdict == INCONCLUSIVE and "before the reference" in cut.measured


def test_steadiest_rule():
    def jitters(loss, metric, splits=3, runs_per_split=1):
        rows = []
        for i, (l, m) in enumerate(zip(loss, metric)):
            split, seed = (i // runs_per_split, i % runs_per_split) if splits > 1 else (0, i)
            rows += [{"split": split, "seed": seed, "metric": "held-out loss", "protocol": "greedy", "jitter": l},
                     {"split": split, "seed": seed, "metric": "ROUGE-1", "protocol": "greedy", "jitter": m},
                     {"split": split, "seed": seed, "metric": "Exact match", "protocol": "greedy", "jitter": float("nan")}]
        return pd.DataFrame(rows)

    assert rules.steadiest(jitters([.05, .06, .04], [.3, .35, .32])).verdict == REPRODUCED
    assert rules.steadiest(jitters([.5, .52, .51], [.1, .11, .105])).verdict == CONTRADICTED
    assert rules.steadiest(jitters([.1, .3, .2], [.2, .1, .3])).verdict == INCONCLUSIVE
    assert rules.steadiest(jitters([.1], [.3])).verdict == INCONCLUSIVE
    # issue 32 item 3: three shuffles of one split are one unit, not three (runs as units reproduced it)
    one_split = rules.steadiest(jitters([.05, .06, .04], [.3, .35, .32], splits=1))
    assert one_split.verdict == INCONCLUSIVE and one_split.n == 1 and one_split.unit == "task splits"
    two_runs_each = rules.steadiest(jitters([.05, .07, .06, .04, .05, .06], [.3, .32, .35, .3, .32, .31],
                                            runs_per_split=2))
    assert two_runs_each.verdict == REPRODUCED and two_runs_each.n == 3
    twice = jitters([.05, .06, .04], [.3, .35, .32])
    with pytest.raises(DataError, match="share seed"):  # two runs under one (split, seed) are refused, not dropped
        rules.steadiest(pd.concat([twice, twice.iloc[:3]]))
    with pytest.raises(DataError, match="split"):
        rules.steadiest(jitters([.1], [.3]).drop(columns="split"))


def windows(effects: list[float], tasks: int = 10, noise: float = 0.01) -> pd.DataFrame:
    """Per split: tasks whose window had an arrival fall `effect` more than the others."""
    rng = np.random.default_rng(2)
    rows = []
    for split, effect in enumerate(effects):
        for start, end in ((5, 10), (10, 15), (15, 20)):
            for t in range(tasks):
                arrived = t % 3 == 0
                rows.append({"split": split, "task": f"t{t}", "start": start, "end": end, "arrived": arrived,
                             "excess": (effect if arrived else 0) + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_sudden_rule():
    # three splits under the confirmatory family's interval (E2 is a claim of the paper): tight ones
    assert rules.sudden(windows([.1, .102, .098])).verdict == REPRODUCED
    assert rules.sudden(windows([-.1, -.102, -.098])).verdict == CONTRADICTED
    assert rules.sudden(windows([.1, -.1, .02])).verdict == INCONCLUSIVE
    assert rules.sudden(windows([.3])).verdict == INCONCLUSIVE  # one split
    with pytest.raises(DataError, match="columns"):
        rules.sudden(windows([.1]).drop(columns="arrived"))


def power(rhos: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"split": i, "measure": m, "rho": r} for m, values in rhos.items() for i, r in enumerate(values)])


def test_measures_rule_judges_against_chance_and_every_alternative():
    alts = ["Cosine-Centroid", "Cosine-Max"]
    def run(wsd, centroid, cmax, null=(0.0, 0.01, -0.01, 0.0)):
        return {f.part: f.verdict for f in rules.measures(power({"WSD": wsd, "Cosine-Centroid": centroid,
                                                                 "Cosine-Max": cmax, "null": list(null)}),
                                                           "WSD", alts, "null")}
    got = run([.3, .32, .31, .29], [.1, .12, .11, .1], [.05, .04, .06, .05])
    assert got == {"WSD > chance": REPRODUCED, "WSD > every alternative": REPRODUCED}
    # what the review found: Centroid above the paper's measure -> the second part is contradicted
    got = run([.08, .09, .07, .08], [.16, .18, .15, .17], [.05, .04, .06, .05], null=(0.0, 0.02, -0.01, 0.01))
    assert got == {"WSD > chance": REPRODUCED, "WSD > every alternative": CONTRADICTED}
    # the same with a chance column that makes every split's difference exactly .08: no spread, no interval
    got = run([.08, .09, .07, .08], [.16, .17, .15, .16], [.05, .04, .06, .05])
    assert got["WSD > chance"] == INCONCLUSIVE
    got = run([.1, -.1, .05, -.05], [.0, .1, -.1, .05], [.05, -.05, .0, .1])
    assert got == {"WSD > chance": INCONCLUSIVE, "WSD > every alternative": INCONCLUSIVE}
    got = run([-.2, -.21, -.19, -.2], [.1, .1, .1, .1], [.0, .0, .0, .0])
    assert got["WSD > chance"] == CONTRADICTED
    # one alternative without an interval (no spread) does not hide another wholly above WSD
    got = run([.08, .09, .07, .08], [.16, .18, .15, .17], [.03, .04, .02, .03])
    assert got["WSD > every alternative"] == CONTRADICTED
    # reproduced needs every alternative below WSD, so its p is the largest of theirs
    found = rules.measures(power({"WSD": [.3, .32, .31, .29], "Cosine-Centroid": [.1, .12, .11, .1],
                                  "Cosine-Max": [.25, .3, .27, .24], "null": [0.0, 0.01, -0.01, 0.0]}), "WSD", alts, "null")[1]
    each = rules.measure_differences(power({"WSD": [.3, .32, .31, .29], "Cosine-Centroid": [.1, .12, .11, .1],
                                            "Cosine-Max": [.25, .3, .27, .24]}), ["WSD"], alts, findings.interval_level("E3"))
    assert found.p == pytest.approx(each.p.max()) and each.p.max() > each.p.min()


def test_representations_rule_pairs_kinds_by_split():
    def run(gradient, minilm):
        table = power({"gradient": gradient, "minilm": minilm}).rename(columns={"measure": "kind"})
        return rules.representations(table, [("gradient", "minilm")], experiment="S1", claim="c", paper="p")[0]
    assert run([.3, .33, .31], [.1, .12, .11]).verdict == REPRODUCED
    assert run([.1, .12, .11], [.3, .33, .31]).verdict == CONTRADICTED  # MiniLM predicts better
    assert run([.3, .32, .31], [.1, .12, .11]).verdict == INCONCLUSIVE  # the same .2 on every split: no spread
    assert run([.3, .1, .2], [.2, .2, .2]).verdict == INCONCLUSIVE
    assert run([.3], [.1]).verdict == INCONCLUSIVE  # one split: no interval
    found = run([.3, .32, .31], [.1, .12, .11])
    assert found.part == "gradient > minilm" and found.effect == pytest.approx(0.2) and found.n == 3
    with pytest.raises(DataError, match="columns"):
        rules.representations(power({"a": [1.0]}), [("a", "b")], experiment="S1", claim="c", paper="p")


def test_granularity_rule_has_two_parts():
    steps = [0, 20, 40, 100, 225]
    rows = []
    for split in range(4):
        for label in ("fine", "coarse"):
            for t in range(5):
                for s in steps:
                    # coarse ahead early, fine ahead late: the paper's crossing
                    ahead = (-0.05 if label == "coarse" else 0) if s <= 40 else (-0.1 if label == "fine" else 0)
                    rows.append({"label": label, "split": split, "order_seed": 0, "task": f"t{t}", "step": s,
                                 "loss": 1 + ahead + 0.003 * ((split + t + len(label)) % 3)})
    found = rules.granularity(pd.DataFrame(rows), 40, 225, 510)
    assert [f.part for f in found] == ["coarse < fine", "fine < coarse"]
    assert [f.verdict for f in found] == [REPRODUCED, REPRODUCED]
    assert "paper step ~141" in found[0].point


def test_e5s_early_part_says_whether_coarse_helps_or_fine_hurts():
    """Issue 32 item 4: "coarse < fine" early is reproduced in both worlds below; read against RT,
    one is coarse order helping (coarse below RT), the other NFT's own penalty (fine above RT,
    coarse level with it)."""
    steps = [0, 20, 40, 100, 225]

    def world(early: dict[str, float], rt_spread: float = 0.0) -> pd.DataFrame:
        rows = []
        for split in range(4):
            for label in ("fine", "coarse", "RT"):
                for t in range(5):
                    for s in steps:
                        ahead = early[label] if s <= 40 else 0.0
                        if label == "RT":  # RT's shuffle moves its level from split to split
                            ahead += rt_spread * (1, -1, 0.6, -0.6)[split]
                        rows.append({"label": label, "split": split, "order_seed": 0, "task": f"t{t}", "step": s,
                                     "loss": 1 + ahead + 0.004 * math.sin(3 * split + 5 * t + len(label))})
        return pd.DataFrame(rows)

    for early, rt_spread, verdict, carrier in (
            ({"coarse": -0.05, "fine": 0.0, "RT": 0.0}, 0.0, REPRODUCED, "granularity"),
            ({"coarse": 0.0, "fine": 0.05, "RT": 0.0}, 0.0, REPRODUCED, "fine's penalty"),
            ({"coarse": -0.02, "fine": 0.02, "RT": 0.0}, 0.05, REPRODUCED, "undecided"),  # RT too noisy to tell
            ({"coarse": 0.0, "fine": 0.0, "RT": 0.0}, 0.0, INCONCLUSIVE, ""),  # nothing to carry
            ({"coarse": 0.05, "fine": 0.0, "RT": 0.0}, 0.0, CONTRADICTED, "")):  # the review's case: coarse behind
        table = world(early, rt_spread)
        part = rules.granularity(table, 40, 225, 510)[0]
        against = rules.granularity_against_random(table, 40, 225, 510)
        assert [f.part for f in against] == ["coarse < RT", "fine < RT"] * 2
        assert all(f.experiment == "E5+" and findings.family(f.experiment) == "exploratory" for f in against)
        assert part.verdict == verdict
        assert rules.carried_by(part, against) == carrier
    with pytest.raises(DataError, match="no E5\\+ parts"):
        rules.carried_by(part, against[2:])


def test_a_finding_refuses_a_verdict_outside_the_vocabulary():
    with pytest.raises(DataError, match="verdict must be one of"):
        findings.Finding("E4", "c", "a < b", "p", "m", 0.0, 0.0, 0.0, 1, "task splits", 0.5, "s", "partly")
    with pytest.raises(DataError, match="side"):
        findings.verdict(rules.over_units([1, 2]), "<=")


def test_an_explanation_can_be_supported_refuted_or_undecided():
    """Why-NFT-loses rows: a prediction judged on the one-sided bound in its direction, on gap
    differences between set-ups built from synthetic splits."""
    from zsg_core import stats

    level = rules.EVIDENCE_LEVEL
    base = task_curves({"NFT": [0.8, 0.9, 0.7, 1.0, 0.85], "RT": [0, 0, 0, 0, 0]})
    shrunk = task_curves({"NFT": [0.1, 0.2, 0.0, 0.15, 0.1], "RT": [0, 0, 0, 0, 0]}, seed=1)
    grown = task_curves({"NFT": [1.5, 1.6, 1.4, 1.7, 1.55], "RT": [0, 0, 0, 0, 0]}, seed=2)
    mixed = task_curves({"NFT": [0.3, 1.5, 0.2, 1.6, 0.9], "RT": [0, 0, 0, 0, 0]}, seed=3)
    prediction = "a lower lr shrinks NFT - RT"
    rows = [rules.explanation(name, prediction, stats.gap_difference(curves, base, "NFT", "RT", 30, level=level), "<",
                              contrast="(NFT - RT, lower lr) - (NFT - RT, profile)")
            for name, curves in (("shrinks", shrunk), ("grows", grown), ("mixed", mixed))]
    assert [r["evidence"] for r in rows] == ["supported", "refuted", "undecided"]
    assert rows[0]["p (one-sided)"] < 0.05 < rows[1]["p (one-sided)"]
    single = stats.gap_difference(shrunk[shrunk.split == 0], base, "NFT", "RT", 30, level=level)
    assert rules.explanation("one split", prediction, single, "<", contrast="c")["evidence"] == "undecided"
    with pytest.raises(DataError, match="one-sided 95% bounds: compute its estimate at level 0.90"):
        rules.explanation("two-sided", prediction, stats.gap_difference(shrunk, base, "NFT", "RT", 30), "<", contrast="c")


def test_evidence_is_measured_in_the_predicted_direction():
    """Five splits whose mean is above 0 with a two-sided 95% interval that reaches below it: the
    one-sided bound in the predicted direction is above 0, so the prediction is supported (a
    two-sided 95% rule left it undecided)."""
    from zsg_core import stats

    values = [0.05, 0.25, -0.02, 0.18, 0.09]
    two_sided = stats.over_units(values)
    assert two_sided.lo < 0 < two_sided.hi
    one_sided = stats.over_units(values, level=rules.EVIDENCE_LEVEL)
    assert rules.explanation("leans", "x > 0", one_sided, ">", contrast="x")["evidence"] == "supported"
    assert rules.explanation("against", "x < 0", one_sided, "<", contrast="x")["evidence"] == "refuted"


def test_the_decomposition_adds_up_to_the_gap_and_keeps_its_order():
    """NFT - RT = (NFT - task) + (task - family) + (family - RT) on every split; each part judged in
    its predicted direction; rows in the chain's order, never ranked (an undecided part leaning
    against its prediction stays where it is); the shares sum to 1."""
    curves = task_curves({"NFT": [0.30, 0.42, 0.25, 0.38, 0.33], "task": [0.28, 0.40, 0.27, 0.35, 0.30],
                          "family": [0.10, 0.05, 0.12, 0.02, 0.09], "RT": [0, 0, 0, 0, 0]}, noise=0.01)
    carries = [("nearest instances", "NFT loses to random instances of its tasks", ">"),
               ("one task's template", "task-matched loses to family-matched", ">"),
               ("the family mix", "family-matched loses to RT", ">")]
    table = rules.decomposition(curves, 30, ("NFT", "task", "family", "RT"), carries)
    assert table.contrast.tolist() == ["NFT - task", "task - family", "family - RT"]
    assert table.evidence.tolist() == ["undecided", "supported", "supported"]
    whole = rules.split_means(curves, "NFT", "RT", 30)["diff"].mean()
    assert table.estimate.sum() == pytest.approx(whole) and table["share of the gap"].sum() == pytest.approx(1)
    refuting = task_curves({"NFT": [0.0] * 5, "task": [0.3, 0.32, 0.28, 0.31, 0.29], "RT": [0] * 5}, noise=0.01)
    assert rules.decomposition(refuting, 30, ("NFT", "task", "RT"), carries[:2]).evidence.tolist() == \
        ["refuted", "supported"]
    with pytest.raises(DataError, match="2 parts in the chain"):
        rules.decomposition(curves, 30, ("NFT", "task", "RT"), carries)
    fewer = curves[~((curves.label == "task") & (curves.task == "t0"))]  # one order evaluated on fewer tasks
    with pytest.raises(DataError, match="do not add up on every split"):
        rules.decomposition(fewer, 30, ("NFT", "task", "family", "RT"), carries)


def test_split_slopes_are_estimated_over_splits():
    """The regression of item 7 (b): fitted on each split apart, its coefficients over splits."""
    from zsg_core import stats

    rng = np.random.default_rng(0)
    rows = [{"split": s, "task": t, "mismatch": m, "held-out length": h, "gap": 0.5 * m + 0.1 * s + rng.normal(0, 0.05)}
            for s in range(5) for t, (m, h) in enumerate(rng.uniform(0, 3, size=(12, 2)))]
    slopes = stats.split_slopes(pd.DataFrame(rows), "gap", ["mismatch", "held-out length"])
    assert slopes["mismatch"].lo < 0.5 < slopes["mismatch"].hi and slopes["mismatch"].lo > 0.3
    assert slopes["held-out length"].lo < 0 < slopes["held-out length"].hi and slopes["mismatch"].n == 5
    with pytest.raises(DataError, match="columns"):
        stats.split_slopes(pd.DataFrame(rows), "gap", ["length"])


def test_units_needed_follows_the_t_test_power():
    """Item 13: how many task splits decide an effect of a given size; checked against a simulation
    of the interval's own rule, and monotone in effect, spread and level."""
    from zsg_core import stats

    n = stats.units_needed(-0.05, 0.06, level=0.95)
    assert n is not None and 10 <= n <= 16  # the E6 example: about 8-10 by a normal rule of thumb, a bit more under t
    rng = np.random.default_rng(0)
    for units, expect in ((n, True), (n - 2, False)):
        decided = np.mean([(lambda e: e.hi < 0)(stats.over_units(rng.normal(-0.05, 0.06, units)))
                           for _ in range(2000)])
        assert (decided >= 0.78) == expect, (units, decided)
    assert stats.units_needed(-0.10, 0.06) < n < stats.units_needed(-0.05, 0.06, level=1 - 0.05 / 20)
    assert stats.units_needed(0.001, 0.5, most=50) is None and stats.power(0.1, 0.1, 2) == 0.0
    # large effects at the confirmatory level: scipy's far lower tail is NaN there; the power is not
    level = 1 - 0.05 / 20
    grid = [[stats.power(e, 1.0, k, level) for k in range(3, 30)] for e in (0.5, 1, 2, 3, 4, 8)]
    assert all(np.isfinite(row).all() and np.all(np.diff(row) >= -1e-12) for row in grid)
    assert stats.units_needed(3.0, 1.0, level=level) == 6  # 9 when the NaN powers were skipped
    with pytest.raises(DataError, match="positive spread"):
        stats.power(0.1, 0.0, 5)


def test_correlation_contrast():
    from zsg_core import stats

    r = stats.correlation([0.1, 0.4, 0.5, 0.9, 1.0], [0.2, 0.5, 0.4, 1.1, 1.2])
    assert r.value > 0.9 and r.lo > 0 and r.hi <= 1 and r.p < 0.05
    flat = stats.correlation([1, 2, 3], [2, 4, 6])
    assert flat.value == pytest.approx(1) and not flat.has_interval  # three units: no z interval
    with pytest.raises(DataError, match="two paired series"):
        stats.correlation([1, 2], [1])


def test_the_papers_claims_are_judged_on_the_familys_bonferroni_interval_the_rest_on_95():
    """Declared before the runs: a part of a paper's claim (E4) is judged on the interval at
    1 - 0.05 / FAMILY_SIZE, an exploratory part (E4+) on its own 95%. Splits whose 95% interval
    just excludes 0 reproduce the exploratory part and leave the confirmatory one inconclusive."""
    from scipy import stats as st

    offsets = {"NFT": [-.10, -.02, -.09, -.03, -.06], "RT": [0] * 5}
    curves = task_curves(offsets, noise=0.0)
    diffs = np.array(offsets["NFT"])
    se = diffs.std(ddof=1) / math.sqrt(5)
    assert diffs.mean() + st.t.ppf(0.975, 4) * se < 0 < diffs.mean() + st.t.ppf(1 - 0.025 / findings.FAMILY_SIZE, 4) * se
    judged = {e: rules.order_parts(curves, 30, ("NFT", "RT"), experiment=e, claim="c", paper="p", point="s")[0]
              for e in ("E4", "E4+")}
    assert judged["E4+"].verdict == REPRODUCED and judged["E4+"].level == pytest.approx(0.95)
    assert judged["E4"].verdict == INCONCLUSIVE and judged["E4"].level == pytest.approx(1 - 0.05 / findings.FAMILY_SIZE)
    assert judged["E4"].hi > 0 > judged["E4+"].hi and f"({judged['E4'].level:.2%})" in judged["E4"].measured
    assert "] (95%) over 5 task splits" in judged["E4+"].measured  # every interval names its level
    # a clear effect still reproduces, and contradicts, under the family's interval
    strong = {"NFT": [-.30, -.25, -.35, -.28, -.32], "RT": [0] * 5}
    [f] = rules.order_parts(task_curves(strong, noise=0.0), 30, ("NFT", "RT"), experiment="E4", claim="c", paper="p", point="s")
    assert f.verdict == REPRODUCED
    [f] = rules.order_parts(task_curves({"NFT": [-x for x in strong["NFT"]], "RT": [0] * 5}, noise=0.0), 30, ("NFT", "RT"),
                            experiment="E4", claim="c", paper="p", point="s")
    assert f.verdict == CONTRADICTED


def test_within_family_says_which_decided_parts_would_stand_bonferroni_over_the_chapter():
    """A chapter of exploratory parts, each judged at 95%: Bonferroni over its own parts keeps a
    decided part whose p is below alpha / parts (either verdict), lets fall one that is not, and
    never lists an inconclusive one."""
    def part(name: str, p: float, verdict: str) -> findings.Finding:
        return findings.Finding("A", "c", name, "p", "m", -0.1, -0.2, -0.05, 8, "task splits", p, "s", verdict)

    found = [part("a < RT", 0.001, REPRODUCED), part("b < RT", 0.02, REPRODUCED),
             part("c < RT", 0.004, CONTRADICTED), part("d < RT", 0.3, INCONCLUSIVE)]
    assert rules.within_family(found) == {"stands": ["a < RT", "c < RT"], "falls": ["b < RT"]}  # threshold 0.0125
    assert rules.within_family(found[:1]) == {"stands": ["a < RT"], "falls": []}
    assert rules.within_family([part("b < RT", 0.02, REPRODUCED)] * 4)["stands"] == []
    with pytest.raises(DataError, match="no parts"):
        rules.within_family([])


def test_decidable_ratio_is_where_over_units_interval_starts_to_exclude_zero():
    """What n units can decide: a mean just above ratio x spread excludes 0, just below does not."""
    from zsg_core import stats

    rng = np.random.default_rng(1)
    for n in (3, 5, 8):
        noise = rng.normal(size=n)
        noise = (noise - noise.mean()) / noise.std(ddof=1)  # spread exactly 1
        ratio = stats.decidable_ratio(n)
        assert stats.over_units(noise + 1.01 * ratio).lo > 0 > stats.over_units(noise + 0.99 * ratio).lo
    assert stats.decidable_ratio(3) > stats.decidable_ratio(8) > stats.decidable_ratio(8, level=0.9)
    with pytest.raises(DataError, match="at least 3"):
        stats.decidable_ratio(2)


def test_cost_over_a_baseline_is_corrected_for_the_sitting():
    """A run's cost over the baseline's on the same split, each taken inside its own run first:
    the same order run under twice the load (every part twice as long) costs the same over RT."""
    from zsg_core import compare

    rt = {"order": "RT", "wall": 200.0, "train": 100.0, "eval": 50.0, "arrange": 10.0, "adapt": 0.0, "cache": 20.0}
    slow = {"order": "probe", "wall": 60.0, "train": 20.0, "eval": 10.0, "arrange": 2.0, "adapt": 25.0, "cache": 0.0}
    loaded = {**slow, **{k: 2 * v for k, v in slow.items() if k != "order"}}
    parts = pd.DataFrame([{**rt, "split": 0}, {**slow, "split": 0}, {**rt, "split": 1}, {**loaded, "split": 1}])
    table = compare.cost_over(parts, "RT")
    assert list(table.index) == ["RT", "probe"] and table.loc["RT", "times RT"] == pytest.approx(1.0)
    assert table.loc["probe", "times RT"] == pytest.approx((60 / 30) / (180 / 150))  # on both splits alike
    assert table.loc["probe", "wall"] == pytest.approx(90.0)  # raw seconds: the mean over splits
    with pytest.raises(DataError, match="no RT run on split"):
        compare.cost_over(parts[parts.split == 1].assign(split=[1, 2]), "RT")


def test_a_rule_stated_over_instance_draws_never_speaks_of_splits():
    text = rules.stated("order", unit="instance draw")
    assert "instance draw" in text and "split" not in text.replace("split_seed", "")
