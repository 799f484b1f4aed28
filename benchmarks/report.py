"""How every benchmark reports: its figures as JSON on stdout, and in a results file when asked."""
from __future__ import annotations

import json
from pathlib import Path


def report(figures: dict, out: Path | None = None) -> None:
    """Print `figures` as indented JSON; with `out`, write the same text there."""
    text = json.dumps(figures, indent=1)
    print(text)
    if out is not None:
        out.write_text(text + "\n")
