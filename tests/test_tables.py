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
