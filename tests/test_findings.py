"""findings: verdict rules, the relative point, and records that refuse to mix parameters."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from zsg_core import findings
from zsg_core.data import DataError
from zsg_core.stats import Estimate

NAN = float("nan")


def test_one_vocabulary_from_an_interval_on_either_side():
    e = lambda v, lo, hi: Estimate(v, lo, hi, 5, 0.01)  # noqa: E731
    assert findings.verdict(e(-0.1, -0.2, -0.05), "<") == findings.REPRODUCED
    assert findings.verdict(e(0.1, 0.05, 0.2), "<") == findings.CONTRADICTED
    assert findings.verdict(e(0.0, -0.1, 0.1), "<") == findings.INCONCLUSIVE
    assert findings.verdict(e(0.9, 0.85, 0.95), ">", 0.8) == findings.REPRODUCED
    assert findings.verdict(e(0.5, 0.4, 0.6), ">", 0.8) == findings.CONTRADICTED
    assert findings.verdict(Estimate(-0.5, NAN, NAN, 1, NAN), "<") == findings.INCONCLUSIVE  # one unit: no verdict
    assert set(findings.VERDICTS) == {"reproduced", "contradicted", "inconclusive"}


def test_relative_step():
    assert findings.relative_step(100 / 1797, 510, [0, 10, 20, 25, 30, 40]) == 30  # 28.4 -> 30
    assert findings.relative_step(0.9, 510, [0, 10, 60]) == 60  # beyond the window: its last step
    with pytest.raises(DataError):
        findings.relative_step(0.5, 10, [])


def test_records_are_collected_and_other_parameters_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ZSG_BUILD", str(tmp_path))
    params = {"model": "m", "lr": 1e-3, "arrangement_seeds": [0]}
    row = findings.Finding("E4", "claim", "NFT < RT", "paper", "ours", -0.1, -0.2, 0.0, 5, "task splits", 0.04,
                           "step 30", "inconclusive")
    other = findings.Finding("E4", "claim", "RT < FFT", "paper", "ours", 0.3, 0.1, 0.5, 5, "task splits", 0.01,
                             "step 30", "contradicted")
    curve = pd.DataFrame({"step": [0, 10], "diff": [0.0, -0.1], "lo": [NAN, -0.2], "hi": [NAN, 0.0],
                          "comparison": "NFT - RT", "experiment": "E4", "setting": "s"})
    findings.record("04_x", params, [row, other], curve)
    table, curves = findings.collect(params, ["04_x"])
    assert table.verdict.tolist() == ["inconclusive", "contradicted"] and set(table.chapter) == {"04_x"}
    # Holm over the declared family (its other parts, not built here, count as rejecting nothing)
    n = findings.FAMILY_SIZE
    assert table.p_holm.tolist() == pytest.approx([max(n * 0.01, (n - 1) * 0.04), n * 0.01])
    assert math.isnan(curves.lo.iloc[0]) and curves["diff"].tolist() == [0.0, -0.1]
    # no interval anywhere (too few units): the columns still come back as numbers, which a plot can take
    findings.record("04_x", params, [row], curve.assign(lo=NAN, hi=NAN))
    table, curves = findings.collect(params, ["04_x"])
    assert curves.lo.dtype == float and curves.hi.isna().all() and table.lo.dtype == float
    with pytest.raises(DataError, match="other parameters"):
        findings.collect({**params, "lr": 1e-4}, ["04_x"])
    with pytest.raises(DataError, match="execute it first"):
        findings.collect(params, ["05_y"])
    assert (tmp_path / "findings" / "04_x.json").exists()  # under the build folder, never the source tree
    (tmp_path / "findings" / "04_x.json").write_text('{"chapter": "04_x", "par')  # a truncated record
    with pytest.raises(DataError, match="not readable JSON"):
        findings.collect(params, ["04_x"])


def test_the_shared_parameters_are_run_parameters():
    from zsg_core.config import PARAMETERS

    assert set(findings.SHARED) <= set(PARAMETERS)


def test_holm_runs_over_the_confirmatory_family_only_and_the_family_is_fixed(tmp_path, monkeypatch):
    """The paper's claims (findings.CONFIRMATORY) are one family: Holm adjusts their p-values among
    themselves; the book's own questions are marked exploratory and keep their p. A table with more
    parts of a paper's claim than were declared is refused."""
    monkeypatch.setenv("ZSG_BUILD", str(tmp_path))
    params = {"model": "m"}

    def part(experiment, name, p):
        return findings.Finding(experiment, "claim", name, "paper", "ours", -0.1, -0.2, 0.0, 5, "task splits", p,
                                "step 30", "inconclusive")

    findings.record("04_x", params, [part("E4", "NFT < RT", 0.01), part("E4", "RT < FFT", 0.04),
                                     part("E4+", "NFT < RT", 0.001), part("S1", "a > b", 0.02)])
    table, _ = findings.collect(params, ["04_x"])
    assert table.family.tolist() == ["confirmatory", "confirmatory", "exploratory", "exploratory"]
    n = findings.FAMILY_SIZE  # the declared family, not the four rows nor the two present
    assert table.p_holm.iloc[:2].tolist() == pytest.approx([n * 0.01, max(n * 0.01, (n - 1) * 0.04)])
    assert table.p_holm.iloc[2:].isna().all()
    assert findings.FAMILY_SIZE == sum(findings.CONFIRMATORY.values())
    assert findings.interval_level("E6") == pytest.approx(1 - 0.05 / findings.FAMILY_SIZE)
    assert findings.interval_level("S2") == pytest.approx(0.95)
    too_many = [part("E8", f"rounds {i} < rounds {i + 1}", 0.5) for i in range(findings.CONFIRMATORY["E8"] + 1)]
    findings.record("04_x", params, too_many)
    with pytest.raises(DataError, match="declare the family"):
        findings.collect(params, ["04_x"])


def test_no_shipped_profile_judges_more_parts_of_a_claim_than_the_family_declares():
    from zsg_core.config import SHIPPED_PROFILES, load_profile

    for name in SHIPPED_PROFILES:
        starts = load_profile(name).get("round_starts", [])
        assert len(starts) - 1 <= findings.CONFIRMATORY["E8"], name  # E8: one part per neighbouring pair


def test_units_to_decide_reads_the_spread_back_from_each_interval():
    from zsg_core import stats

    level = findings.interval_level("E4")
    splits = [-0.01, -0.09, -0.05, 0.03, -0.13]  # mean -0.05, SD 0.063: undecided on 5 splits
    wide = stats.over_units(splits, level=level)
    sure = stats.over_units([-0.30, -0.31, -0.29], level=level)
    early = stats.over_units([0.85, 0.95, 0.90, 0.88], level=level)
    table = pd.DataFrame([
        {"effect": e.value, "lo": e.lo, "hi": e.hi, "n": e.n, "level": level, "boundary": b}
        for e, b in ((wide, 0.0), (sure, 0.0), (early, 0.8), (Estimate(-0.5, NAN, NAN, 1, NAN), 0.0))
    ])
    needed = findings.units_to_decide(table)
    sd = float(pd.Series(splits).std())
    assert stats.spread_from_interval(wide.lo, wide.hi, 5, level) == pytest.approx(sd)
    assert needed[0] == stats.units_needed(-0.05, sd, level) > 5  # the spread, not the verdict, decides
    assert needed[1] == 3  # already decided on the fewest units an interval takes
    # measured from the claim's boundary, not from 0: the effect is early - 0.8
    sd = stats.spread_from_interval(early.lo, early.hi, 4, level)
    assert needed[2] == stats.units_needed(early.value - 0.8, sd, level)
    assert math.isnan(needed[3])  # one unit: no spread to plan from
    half = (wide.hi - wide.lo) / 2
    tiny = table.iloc[:1].assign(effect=0.0005, lo=0.0005 - half, hi=0.0005 + half)
    assert findings.units_to_decide(tiny)[0] == math.inf  # an effect this small is out of reach of 200 splits
    assert math.isnan(findings.units_to_decide(tiny.assign(effect=0.01))[0])  # not a t-interval around the effect
    no_boundary = table.assign(boundary=NAN)  # a record from before boundaries were kept
    assert findings.units_to_decide(no_boundary).isna().all()


def test_listed_names_read_as_prose():
    assert [findings.listed(n) for n in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == ["", "a", "a and b", "a, b and c"]


def test_a_p_cell_never_shows_zero_and_is_escaped_for_the_styler():
    assert [findings.fmt_p(p) for p in (0.0, 0.0004, 0.0123, NAN)] == ["<0.001", "<0.001", "0.012", findings.MISSING]
    assert findings.p_cell(0.0) == "&lt;0.001"


def test_a_tally_names_the_decided_parts_and_counts_the_rest():
    def part(name: str, verdict: str) -> findings.Finding:
        return findings.Finding("A", "claim", name, "paper", "ours", -0.1, -0.2, -0.05, 8, "task splits", 0.01,
                                "step 30", verdict)

    found = [part("a", findings.REPRODUCED), part("b", findings.INCONCLUSIVE), part("c", findings.CONTRADICTED),
             part("d", findings.CONTRADICTED), part("e", findings.INCONCLUSIVE)]
    assert findings.tally(found) == "**reproduced**: a; **contradicted**: c and d; 2 of 5 **inconclusive**"
    assert findings.tally(found[1:2]) == "1 of 1 **inconclusive**"


def test_a_count_reads_in_the_singular_only_for_one():
    assert [findings.counted(n, "run") for n in (0, 1, 2, 11)] == ["0 runs", "1 run", "2 runs", "11 runs"]


def test_a_signed_number_never_reads_minus_zero_in_prose_or_an_interval():
    assert findings.signed(-0.0001) == "+0.000" and findings.signed(0.12) == "+0.120"
    assert findings.signed(-0.004, 2) == "+0.00" and findings.signed(-0.006, 2) == "-0.01"
    text = findings.fmt(Estimate(value=-0.0002, lo=-0.0004, hi=0.3, p=0.5, n=4))
    assert "-0.000" not in text and text == "+0.000 [+0.000, +0.300] (95%) over 4 task splits"
    assert findings.fmt(Estimate(value=0.1, lo=0.05, hi=0.3, p=0.01, n=8), level=0.9975).endswith("] (99.75%) over 8 task splits")


def test_the_lowest_order_by_step_reads_all_or_counts():
    loss = pd.DataFrame({"NFT": [3.9, 2.0, 2.1, 1.5], "RT": [3.9, 2.5, 2.0, 1.9]}, index=[0, 5, 10, 15])
    assert findings.lowest_by_step(loss) == "NFT lowest at 2 of the 3 evaluations after step 0, RT at 1"
    assert findings.lowest_by_step(loss[["NFT"]]) == "NFT lowest at all 3 evaluations after step 0"
    with pytest.raises(DataError, match="no evaluation after step 0"):
        findings.lowest_by_step(loss.loc[[0]])


def test_a_gap_above_zero_is_counted_per_comparison_after_step_0():
    gaps = pd.DataFrame({"NFT - RT": [0.0, 0.2, -0.1, 0.3], "RT - FFT": [0.0, -0.2, -0.3, -0.1]}, index=[0, 5, 10, 15])
    assert findings.above_zero_by_step(gaps) == "NFT - RT 2 of 3; RT - FFT 0 of 3"
    with pytest.raises(DataError, match="no evaluation after step 0"):
        findings.above_zero_by_step(gaps.loc[[0]])
