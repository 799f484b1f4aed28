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
