"""What the default profile's first build would cost under smaller profiles (issue 31 item 5):
the plan of each variant, predicted from an empty store by the cost model fitted on every stored
manifest of this machine's kind, as `zsg plan` would predict it before any run.

    .venv/bin/python benchmarks/profile_variants.py [--out results/profile_variants_cpu.json]

A variant is the cpu profile with some parameters changed (`VARIANTS`); each change also names
the evidence it gives up, since a verdict may need it. Chapter 6's TMA runs are counted, not
predicted, until their pools are embedded (`zsg plan --size`); runs of a set-up or method no
stored run has are counted as unpredicted. Builds a table in benchmarks/README.md (`tables.py`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from report import report

from zsg_core.costs import CostModel, machine_kind, manifests
from zsg_core.plan import book_plan, predictions
from zsg_core.precision import capability

# name -> (changes to the cpu profile, what the change gives up)
VARIANTS: dict[str, tuple[dict, str]] = {
    "cpu (as shipped)": ({}, "nothing"),
    "no lr/10 regime": ({"regimes": {}}, "chapter 7's regime test"),
    "5 headline splits": ({"split_seeds": [0, 1, 2, 3, 4]}, "the 8 splits the power analysis asked for"),
    "3 headline splits": ({"split_seeds": [0, 1, 2]}, "most of the headline parts' power"),
    "E5 at 120 steps": ({"long_steps": 120}, "E5's late reading point (the paper's 44.5% of an epoch)"),
    "3 splits, no regime, E5 at 120": ({"split_seeds": [0, 1, 2], "regimes": {}, "long_steps": 120},
                                       "all three of the above"),
}


def predict(changes: dict, model: CostModel) -> dict:
    """The variant's plan from an empty store: runs, predicted seconds, unpredicted and unsized runs."""
    plan = book_plan("cpu", changes=changes)
    predicted = predictions(plan, model, stored=set())
    by_chapter: dict[str, float] = {}
    for r in plan.runs:
        by_chapter[r.chapter] = by_chapter.get(r.chapter, 0.0) + (predicted.get(r.key) or 0.0)
    return {"runs": len(plan.runs), "predicted_seconds": round(sum(v for v in predicted.values() if v), 1),
            "unpredicted": sum(v is None for v in predicted.values()),
            "unsized": sum(w.runs for w in plan.unsized.values()),
            "by_chapter_seconds": {c: round(s, 1) for c, s in by_chapter.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "profile_variants_cpu.json")
    args = parser.parse_args(argv)
    model = CostModel.fit(manifests())
    figures = {"machine_kind": machine_kind(capability()), "fitted_on": model.fitted,
               "variants": {name: {"changes": changes, "gives_up": gives_up, **predict(changes, model)}
                            for name, (changes, gives_up) in VARIANTS.items()}}
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
