"""The same runs through each executor: one process with every core, worker processes sharing the
cores, and Ray; wall time and the ratio to the in-process baseline, in one process.

    .venv/bin/python benchmarks/bench_executors.py [--runs 4] [--steps 20] [--rounds 2]

The runs are the cpu profile's (SmolLM2-135M, split 0, top 4 layers trained), `--runs` orders
(random under different seeds) of `--steps` steps evaluated at the first and last step, so that
each run is mostly training, as the book's are. A warm-up round fills the split's caches (its
texts' embeddings, the frozen layers' outputs) first, so every executor reads the same caches;
each round trains into an empty run store. Rounds alternate between the executors. Prints JSON and
writes `results/bench_executors_<device>.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from zsg_core.config import load_profile
from zsg_core.execute import Executor, train_missing
from zsg_core.experiments import PlannedRun
from zsg_core.plan import Plan
from zsg_core.precision import capability
from zsg_core.config import run_config, run_params

EXECUTORS = {"in-process, 1 x all cores": Executor("inprocess"),
             "2 processes x half the cores": Executor("processes", workers=2),
             "Ray, 2 tasks x half the cores": Executor("ray", workers=2)}


def plan_of(runs: int, steps: int, seed0: int) -> Plan:
    params = {**run_params(load_profile("cpu")), "generate_steps": [], "max_steps": steps, "eval_steps": [0, steps]}
    planned = [PlannedRun("bench", "executors", "random", s, "arrangement_seed",
                          run_config(**{**params, "arrangement": "random", "arrangement_seed": s}))
               for s in range(seed0, seed0 + runs)]
    return Plan("bench", ["bench"], planned)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    quiet = lambda m: None  # noqa: E731
    # the instances every round reads, cached once: each round's runs use the same seeds
    with tempfile.TemporaryDirectory() as warm:
        train_missing(plan_of(args.runs, args.steps, 0), Executor("inprocess"), quiet, Path(warm))
    walls: dict[str, list[float]] = {name: [] for name in EXECUTORS}
    for _ in range(args.rounds):
        for name, executor in EXECUTORS.items():
            with tempfile.TemporaryDirectory() as root:
                t0 = time.perf_counter()
                train_missing(plan_of(args.runs, args.steps, 0), executor, quiet, Path(root))
                walls[name].append(round(time.perf_counter() - t0, 2))
    base = statistics.median(walls["in-process, 1 x all cores"])
    machine = {**capability(), "cores": os.cpu_count()}
    result = {"machine": machine, "setup": {"profile": "cpu", "runs": args.runs, "steps": args.steps,
                                            "rounds": args.rounds, "split_seed": 0},
              "executors": {name: {"wall_seconds": w, "median": statistics.median(w),
                                   "ratio_to_in_process": round(statistics.median(w) / base, 3)}
                            for name, w in walls.items()}}
    out = Path(__file__).parent / "results" / f"bench_executors_{machine['device']}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
