"""Where the book's time goes, chapter by chapter, from the stored runs' own manifests.

    .venv/bin/python benchmarks/book_costs.py [--profile cpu] [--out results/book_costs_cpu_avx2.json]

One file per profile and machine kind (`results/book_costs_<profile>_<kind>.json`, the kind this
machine is: `costs.machine_kind`), since a run's parts take several times longer on one kind than on
another (an AVX2 CPU emulates bf16) and the plan's runs on a kind are its own (their precision is the
kind's). For every run of the profile's plan (`zsg plan`; each counted in the first chapter that reads it)
that the run store holds, its manifest's parts: loading the split and embedding its texts
(`prepare_seconds`, with arranging and loading the model), filling the frozen-layer cache, training, evaluating, generating, and the rest
(arranging, loading the model, writing). Prints the JSON and writes it; `tables.py` builds the
table in benchmarks/README.md ("The book's runs") from it. Runs the store lacks (or that are not sized
yet: chapter 6's before its pools are embedded) are counted as missing, never guessed.

The first build, sitting by sitting: the stored runs grouped into sittings (a pause of more than
`SITTING_GAP` seconds between one run's end and the next run's start begins a new one), each with its
wall time (first start to last end) and its runs' own seconds, next to what the plan predicts for
the whole profile from an empty store (the cost model fitted on every stored manifest).
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

from zsg_core.costs import CostModel, machine_kind, manifests
from zsg_core.plan import book_plan, predictions
from zsg_core.precision import capability
from zsg_core.runs import is_complete, runs_dir

SITTING_GAP = 20 * 60  # longer than any one run's start-up, shorter than the breaks between sessions
PARTS = ("prepare_seconds", "cache_seconds", "train_seconds", "eval_seconds", "generate_seconds")


def kind_slug(kind: str) -> str:
    """A machine kind as a file name's part: 'cpu:AVX2' -> 'avx2', 'cuda:NVIDIA H200' -> 'nvidia-h200'."""
    return re.sub(r"[^a-z0-9]+", "-", kind.split(":", 1)[-1].lower()).strip("-")


def chapter_costs(profile: str) -> dict:
    plan = book_plan(profile)  # a chapter whose runs are not sized yet counts them as missing
    kind = machine_kind(capability())
    root = runs_dir()
    chapters: dict[str, dict] = {c: {"runs": 0, "stored": 0, "wall_seconds": 0.0, **{p: 0.0 for p in PARTS}}
                                 for c in plan.chapters}
    other_kinds = 0  # stored from another machine kind (same key, same precision): its timings mean nothing here
    threads: set[int] = set()
    stored: list[dict] = []
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
        if machine_kind(m["machine"]) != kind:
            other_kinds += 1
            continue
        row["stored"] += 1
        stored.append(m)
        row["wall_seconds"] += m["wall_seconds"]
        for p in PARTS:
            row[p] += m[p]
        threads.add(m["machine"].get("threads"))
    predicted = predictions(plan, CostModel.fit(manifests(), kind), stored=set())  # as `zsg plan` predicts it before any run
    return {"profile": profile, "machine_kind": kind, "stored_on_other_kinds": other_kinds,
            "threads": sorted(t for t in threads if t),
            "chapters": chapters, "sittings": sittings(stored),
            "predicted_from_empty": {"runs": len(predicted), "unpredicted": sum(v is None for v in predicted.values()),
                                     "unsized": sum(w.runs for w in plan.unsized.values()),
                                     "seconds": round(sum(v for v in predicted.values() if v is not None), 1),
                                     "stored_seconds": round(sum(predicted.get(m["key"]) or 0.0 for m in stored), 1)}}


def sittings(stored: list[dict], gap: float = SITTING_GAP) -> list[dict]:
    """The runs' manifests grouped into sittings by their start and end times."""
    def at(stamp: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(stamp)
    out: list[dict] = []
    for m in sorted(stored, key=lambda m: m["started"]):
        if not out or (at(m["started"]) - at(out[-1]["ended"])).total_seconds() > gap:
            out.append({"started": m["started"], "ended": m["ended"], "runs": 0, "run_seconds": 0.0})
        s = out[-1]
        s["ended"] = max(s["ended"], m["ended"])
        s["runs"] += 1
        s["run_seconds"] = round(s["run_seconds"] + m["wall_seconds"], 1)
    for s in out:
        s["wall_seconds"] = round((at(s["ended"]) - at(s["started"])).total_seconds(), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/book_costs_<profile>_<this machine's kind>.json")
    args = parser.parse_args(argv)
    result = chapter_costs(args.profile)
    out = args.out or Path(__file__).parent / "results" / f"book_costs_{args.profile}_{kind_slug(result['machine_kind'])}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
