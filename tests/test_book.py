"""The book builds with Jupyter Book 1, warnings as errors, from the repository root."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_book_builds_without_warnings(tmp_path):
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(ROOT), "--all", "-W", "-n", "--keep-going",
                           "--path-output", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    index = (tmp_path / "_build" / "html" / "book" / "intro.html").read_text()
    assert "Data arrangement and zero-shot generalization" in index
