"""The Markdown tables of measured figures are the results files' figures (benchmarks/tables.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import tables  # noqa: E402


def test_every_table_in_the_documents_matches_its_results_file():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tables.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_table_typed_by_hand_is_replaced_by_the_figures():
    doc = "before\n<!-- table: peer-speed -->\n| engine | tokens/s |\n| zsg | 99,999 |\n<!-- /table -->\nafter\n"
    new = tables.rebuilt(doc)
    assert "99,999" not in new and new.startswith("before\n") and new.endswith("<!-- /table -->\nafter\n")
    assert tables.peer_speed() in new


def test_the_build_splits_into_sittings_at_a_pause_and_sums_each():
    import book_costs
    def run(start: str, end: str, seconds: float) -> dict:
        return {"started": f"2026-12-04T{start}:00+00:00", "ended": f"2026-12-04T{end}:00+00:00", "wall_seconds": seconds}
    # out of order on purpose; a 10-minute pause stays in a sitting, a 2-hour one starts the next
    got = book_costs.sittings([run("10:00", "10:05", 300), run("01:00", "01:02", 120), run("01:12", "01:15", 180)])
    assert [(s["runs"], s["run_seconds"], s["wall_seconds"]) for s in got] == [(2, 300.0, 900.0), (1, 300.0, 300.0)]
    assert book_costs.sittings([]) == []


def test_each_machine_kind_gets_its_own_file_and_table(tmp_path, monkeypatch):
    import json

    import book_costs
    assert [book_costs.kind_slug(k) for k in ("cpu:AVX2", "cpu:AVX512", "cuda:NVIDIA H200")] == \
        ["avx2", "avx512", "nvidia-h200"]
    chapter = {"runs": 2, "stored": 1, "wall_seconds": 600.0, **{p: 60.0 for p in tables.COST_PARTS}}
    for kind, wall in (("cpu:AVX512", 600.0), ("cpu:AVX2", 1800.0)):
        figures = {"profile": "cpu", "machine_kind": kind, "stored_on_other_kinds": 0, "threads": [2],
                   "chapters": {"02_early_generalization": {**chapter, "wall_seconds": wall}}}
        (tmp_path / f"book_costs_cpu_{book_costs.kind_slug(kind)}.json").write_text(json.dumps(figures))
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    text = tables.book_costs("cpu")
    avx512, avx2 = text.index("On CPU kind AVX512:"), text.index("On CPU kind AVX2:")
    assert avx512 < avx2  # one table per kind, never summed together
    assert "| 10.0 |" in text[avx512:avx2] and "| 30.0 |" in text[avx2:] and "| 40.0 |" not in text
    assert "book_costs_cpu_avx2.json" in text[avx2:]


def test_the_arrangement_table_says_what_was_estimated_skipped_or_unequal():
    machine = {"name": "CPU", "cpu_capability": "AVX2", "cores": 2, "numpy": "2"}
    row = {"N": 1000, "M": 10, "d": 4, "budget": 1000, "product_s": 0.1, "wsd_s": 0.1, "tma_budget_s": 0.2,
           "tma_full_s": 0.2, "peak_mb": 1, "input_mb": 1, "rounds_budget": 3, "rounds_full": 5,
           "tma_budget_over_product": 2.0, "tma_full_over_product": 2.0, "paper_budget_s": 1.5, "paper_budget_equal": True}
    big = {**row, "N": 5000, "budget": 3000, "paper_budget_equal": False}
    text = tables.arrange_speed({"machine": machine, "sizes": [row, big],
                                 "extrapolated": [{"baseline": "paper", "N": 5000, "full_s_estimate": 1234}]})
    lines = text.splitlines()
    assert "(budget = N)" in lines[2] and "(budget = N)" not in lines[3]
    assert "~1,234 (est.)" in lines[3] and "~1,234" not in lines[2]  # an estimate only where it was made
    assert lines[2].count("not run") == 3  # the test-major runs and the paper code's whole pool
    assert "differing from ours: 5,000 (paper_budget_equal)" in text


def test_the_learning_rate_table_bolds_the_rule_s_pick_and_computes_the_early_phase():
    curve = {"0": 4.0, "10": 3.0, "20": 2.5, "30": 2.2, "60": 2.0}
    sweep = [{"lr": 1e-4, "heldout_loss": curve, "final_train_loss_last5": 2.5},
             {"lr": 3e-4, "heldout_loss": {**curve, "10": 2.9}, "final_train_loss_last5": 2.4}]
    text = tables.lr_sweep({"profile": "cpu", "rule": "a rule", "pick": 3e-4, "profile_lr": 3e-4, "sweep": sweep})
    assert "| **3e-4** |" in text and "| 1e-4 |" in text
    assert "made by step 10," in text  # 4.0 - 2.9 >= half of the fall 4.0 - 2.0
