"""The learning-rate sweep behind the profile's default lr (stored runs are reused, not redone).

    .venv/bin/python benchmarks/lr_sweep.py [--profile cpu] [--lrs 3e-5,1e-4,3e-4,1e-3]

Random order on the profile's split; for each lr prints the held-out loss (micro average over
every test instance) at a few steps, the final training loss, and the rule's pick: the smallest
lr whose held-out loss at the last step is within 0.05 of the best lr's. A small lr keeps the
early phase long enough to see order effects (the paper's lr is tiny for its model, paper.md 8.4).
"""
from __future__ import annotations

import argparse
import json
import sys

from zsg_core.config import load_profile
from zsg_core.experiments import run_arrangements
from zsg_core.config import run_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--lrs", default="3e-5,1e-4,3e-4,1e-3")
    args = parser.parse_args()
    params = run_params(load_profile(args.profile))
    lrs = [float(x) for x in args.lrs.split(",")]
    results = run_arrangements(params, {f"lr {lr:g}": {"arrangement": "random", "lr": lr} for lr in lrs},
                               log=lambda m: print(m, file=sys.stderr))
    rows = []
    for lr in lrs:
        result = results[(f"lr {lr:g}", 0)]
        loss = result.mean_loss()
        rows.append({"lr": lr, "heldout_loss": {int(s): round(float(v), 4) for s, v in loss.items()},
                     "final_train_loss_last5": round(float(result.train_log.loss.tail(5).mean()), 4),
                     "wall_seconds": result.manifest["wall_seconds"], "run": result.folder.name})
    last = {r["lr"]: list(r["heldout_loss"].values())[-1] for r in rows}
    best = min(last.values())
    pick = min(lr for lr, v in last.items() if v <= best + 0.05)
    print(json.dumps({"profile": args.profile, "rule": "smallest lr within 0.05 of the best final held-out loss",
                      "pick": pick, "profile_lr": params.get("lr"), "sweep": rows}, indent=1))


if __name__ == "__main__":
    main()
