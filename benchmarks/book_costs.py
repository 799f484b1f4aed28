"""Where the book's time goes, chapter by chapter, from the stored runs' own manifests.

    .venv/bin/python benchmarks/book_costs.py [--profile cpu] [--out results/book_costs_cpu.json]

For every run of the profile's plan (`zsg plan`; each counted in the first chapter that reads it)
that the run store holds, its manifest's parts: loading the split and embedding its texts
(`prepare_seconds`, with arranging and loading the model), filling the frozen-layer cache, training, evaluating, generating, and the rest
(arranging, loading the model, writing). Prints the JSON and writes it; `tables.py` builds the
table in benchmarks/README.md ("The book's runs") from it. Runs the store lacks (or that are not sized
yet: chapter 6's before its pools are embedded) are counted as missing, never guessed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zsg_core.costs import machine_kind
from zsg_core.plan import book_plan
from zsg_core.runs import is_complete, runs_dir

PARTS = ("prepare_seconds", "cache_seconds", "train_seconds", "eval_seconds", "generate_seconds")


def chapter_costs(profile: str) -> dict:
    plan = book_plan(profile)  # a chapter whose runs are not sized yet counts them as missing

    root = runs_dir()
    chapters: dict[str, dict] = {c: {"runs": 0, "stored": 0, "wall_seconds": 0.0, **{p: 0.0 for p in PARTS}}
                                 for c in plan.chapters}
    kinds: set[str] = set()
    threads: set[int] = set()
    for chapter, wait in plan.unsized.items():
        chapters[chapter]["runs"] += wait.runs
    for r in plan.runs:
        row = chapters[r.chapter]
        row["runs"] += 1
        if not is_complete(root / r.key):
            continue
        m = json.loads((root / r.key / "manifest.json").read_text())
        if "prepare_seconds" not in m:  # stored before the manifests recorded every part
            continue
        row["stored"] += 1
        row["wall_seconds"] += m["wall_seconds"]
        for p in PARTS:
            row[p] += m[p]
        kinds.add(machine_kind(m["machine"]))
        threads.add(m["machine"].get("threads"))
    return {"profile": profile, "machine_kinds": sorted(kinds), "threads": sorted(t for t in threads if t),
            "chapters": chapters}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/book_costs_<profile>.json")
    args = parser.parse_args(argv)
    result = chapter_costs(args.profile)
    out = args.out or Path(__file__).parent / "results" / f"book_costs_{args.profile}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
