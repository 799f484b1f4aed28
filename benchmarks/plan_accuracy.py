"""How close the plan's prediction came: fitted only on the runs stored before a moment, it predicts
the runs trained after it; their manifests say what they took.

    .venv/bin/python benchmarks/plan_accuracy.py --profile cpu --chapters 04_similarity --before 2026-12-03T18:43:00+00:00

The runs "after" are the plan's runs whose manifests started at or after `--before`; the cost
model (`zsg_core.costs`) is fitted on the manifests that ended before it, and predicts each of
them as `zsg plan` would have then (a split's first missing run paying for the work its runs
share). Prints JSON and writes `results/plan_accuracy_<profile>.json`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from zsg_core.costs import CostModel, machine_kind, manifests
from zsg_core.plan import book_plan, predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--chapters", nargs="+", default=None)
    parser.add_argument("--before", required=True, help="ISO time: fit on runs ended before it, judge the ones after")
    args = parser.parse_args(argv)
    moment = datetime.datetime.fromisoformat(args.before)
    stored = manifests()
    by_key = {m["key"]: m for m in stored}
    earlier = [m for m in stored if datetime.datetime.fromisoformat(m["ended"]) < moment]
    model = CostModel.fit(earlier)
    plan = book_plan(args.profile, args.chapters)
    later = {r.key for r in plan.runs if r.key in by_key and datetime.datetime.fromisoformat(by_key[r.key]["started"]) >= moment}
    # the store as it was then (the later runs missing), so `predictions` sees what `zsg plan` saw
    predicted = predictions(plan, model, stored=plan.stored() - later)
    rows = [{"key": k, "predicted": predicted.get(k), "measured": by_key[k]["wall_seconds"]} for k in sorted(later)]
    total_p = sum(r["predicted"] or 0.0 for r in rows)
    # the ratio is over the runs it predicted; the others' time is reported apart
    total_m = sum(r["measured"] for r in rows if r["predicted"] is not None)
    unpredicted_m = sum(r["measured"] for r in rows if r["predicted"] is None)
    started = min((by_key[k]["started"] for k in later), default=None)
    ended = max((by_key[k]["ended"] for k in later), default=None)
    elapsed = (datetime.datetime.fromisoformat(ended) - datetime.datetime.fromisoformat(started)).total_seconds() \
        if started else None
    result = {"profile": args.profile, "chapters": args.chapters, "before": args.before,
              "machine_kind": machine_kind(earlier[-1]["machine"]) if earlier else None,
              "fitted_on": model.fitted, "runs": len(rows), "unpredicted": sum(r["predicted"] is None for r in rows),
              "predicted_seconds": round(total_p, 1), "measured_seconds": round(total_m, 1),
              "unpredicted_measured_seconds": round(unpredicted_m, 1),
              "elapsed_seconds": elapsed, "predicted_over_measured": round(total_p / total_m, 3) if total_m else None,
              "per_run": rows}
    out = Path(__file__).parent / "results" / f"plan_accuracy_{args.profile}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_run"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
