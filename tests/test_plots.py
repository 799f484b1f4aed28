"""plots.table: a table as a page shows it, whatever frame a chapter hands it; plots.verdict_table
the same for a chapter's verdicts."""
from __future__ import annotations

import numpy as np
import pandas as pd

from zsg_core import findings, plots


def cells(styler) -> tuple[list[str], list[list[str]]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(styler.to_html(), "html.parser")
    header = [th.get_text() for th in soup.select("thead tr")[-1].select("th")]
    rows = [[td.get_text() for td in tr.select("td")] for tr in soup.select("tbody tr")]
    assert len(soup.select("thead tr")) == 1, "one header row"
    return header, rows


def test_a_table_shows_words_whole_numbers_no_negative_zero_and_no_index():
    frame = pd.DataFrame({"step_80": [10.0, 20.0, np.nan], "jitter_mean": [-0.0001, 0.5, np.nan], "task": ["a", "b", "c"]},
                         index=[5, 6, 7])
    header, rows = cells(plots.table(frame))
    assert header == ["step 80", "jitter mean", "task"]  # no index column, names in words
    assert rows == [["10", "0.000", "a"], ["20", "0.500", "b"], [findings.MISSING, findings.MISSING, "c"]]
    header, rows = cells(plots.table(frame, precision=1, formats={"jitter_mean": "{:.0%}"}))
    assert rows[1][1] == "50%"  # a format named by the frame's own column name


def test_a_pivot_names_its_value_columns_and_keeps_its_index_as_a_column():
    long = pd.DataFrame({"measure": ["a", "a", "b"], "split": [0, 1, 0], "rho": [0.1, -0.00002, 0.3]})
    header, rows = cells(plots.table(long.pivot_table(index="measure", columns="split", values="rho"), index=True))
    assert header == ["measure", "split 0", "split 1"]
    assert rows == [["a", "0.100", "0.000"], ["b", "0.300", findings.MISSING]]
    named = pd.DataFrame({"task": ["x"], "excess": [0.25]}).rename_axis(columns="label")  # a leftover axis name
    assert cells(plots.table(named))[0] == ["task", "excess"]
    unnamed = pd.Series({"between splits": 0.4}).to_frame("SD")
    assert cells(plots.table(unnamed, index=True))[0] == ["", "SD"]


def test_a_verdict_table_never_shows_a_p_of_zero_or_nan():
    rows = [findings.Finding("A", "claim", name, "paper", "ours", -0.1, -0.2, -0.05, 8, "task splits", p, "step 30",
                             "reproduced") for name, p in (("a < b", 0.0004), ("c < d", 0.0261), ("e < f", np.nan))]
    html = plots.verdict_table(rows).to_html()
    assert "&lt;0.001" in html and "0.026" in html and findings.MISSING in html
    assert "0.000" not in html and "nan" not in html.lower()


def test_an_evidence_table_shows_each_bound_in_a_signed_column_of_its_own():
    from zsg_core import rules, stats

    units = pd.Series([0.30, 0.25, 0.41, 0.28, -0.0001])
    supported = rules.explanation("x", "x loses", stats.over_units(units, level=rules.EVIDENCE_LEVEL), ">", contrast="a - b")
    tiny = rules.explanation("y", "y loses", stats.over_units(units * -1e-5, level=rules.EVIDENCE_LEVEL), "<", contrast="c - d")
    header, rows = cells(plots.evidence_table(pd.DataFrame([supported, tiny]),
                                              ["explanation", "estimate", "lo", "hi", "p (one-sided)", "evidence"]))
    assert header == ["explanation", "measured", "lower bound", "upper bound", "p (one-sided)", "evidence"]
    assert rows[0][1:4] == ["+0.248", "+0.104", "+0.392"] and rows[0][5] == "supported"
    assert rows[1][1:4] == ["+0.000"] * 3  # tiny negatives: never "-0.000"
    assert all("bounds" not in cell for row in rows for cell in row)  # the level is said once, above the table
