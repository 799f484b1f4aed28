"""findings: verdict rules, the relative point, and records that refuse to mix parameters."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from zsg_core import findings
from zsg_core.data import DataError

NAN = float("nan")


def test_order_verdicts():
    assert findings.order_verdict((-0.1, -0.2, -0.05), (0.1, 0.05, 0.2)) == "reproduced"
    assert findings.order_verdict((-0.1, -0.2, 0.05), (0.1, 0.05, 0.2)) == "partly"
    assert findings.order_verdict((0.1, 0.05, 0.2), (-0.1, -0.2, -0.05)) == "not reproduced"
    assert findings.order_verdict((0.1, -0.05, 0.2), (0.1, -0.05, 0.2)) == "inconclusive"
    assert findings.order_verdict((-0.1, NAN, NAN), (0.1, NAN, NAN)) == "inconclusive"  # no interval, no claim


def test_sign_verdicts():
    assert findings.sign_verdict((-0.1, -0.2, -0.01)) == "reproduced"
    assert findings.sign_verdict((0.1, 0.01, 0.2)) == "not reproduced"
    assert findings.sign_verdict((0.0, -0.1, 0.1)) == "inconclusive"
    assert findings.sign_verdict((0.3, 0.1, 0.5), claimed_negative=False) == "reproduced"
    assert findings.sign_verdict((-0.1, NAN, NAN)) == "partly"
    assert findings.sign_verdict((0.1, NAN, NAN)) == "not reproduced"


def test_relative_step():
    assert findings.relative_step(100 / 1797, 510, [0, 10, 20, 25, 30, 40]) == 30  # 28.4 -> 30
    assert findings.relative_step(0.9, 510, [0, 10, 60]) == 60  # beyond the window: its last step
    with pytest.raises(DataError):
        findings.relative_step(0.5, 10, [])


def test_records_are_collected_and_other_parameters_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ZSG_BUILD", str(tmp_path))
    params = {"model": "m", "lr": 1e-3, "arrangement_seeds": [0]}
    row = findings.Finding("E4", "claim", "paper", "ours", -0.1, -0.2, 0.0, "step 30", "inconclusive")
    curve = pd.DataFrame({"step": [0, 10], "diff": [0.0, -0.1], "lo": [NAN, -0.2], "hi": [NAN, 0.0],
                          "comparison": "NFT - RT", "experiment": "E4", "setting": "s"})
    findings.record("04_x", params, [row], curve)
    table, curves = findings.collect(params, ["04_x"])
    assert table.verdict.tolist() == ["inconclusive"] and table.chapter.tolist() == ["04_x"]
    assert math.isnan(curves.lo.iloc[0]) and curves["diff"].tolist() == [0.0, -0.1]
    with pytest.raises(DataError, match="other parameters"):
        findings.collect({**params, "lr": 1e-4}, ["04_x"])
    with pytest.raises(DataError, match="execute it first"):
        findings.collect(params, ["05_y"])
    assert (tmp_path / "findings" / "04_x.json").exists()  # under the build folder, never the source tree
    (tmp_path / "findings" / "04_x.json").write_text('{"chapter": "04_x", "par')  # a truncated record
    with pytest.raises(DataError, match="not readable JSON"):
        findings.collect(params, ["04_x"])


def test_the_shared_parameters_are_run_parameters():
    from zsg_core.runs import PARAMETERS

    assert set(findings.SHARED) <= set(PARAMETERS)
