"""Speed of the arrangement library against the paper's algorithm and the bare product, same process.

    .venv/bin/python benchmarks/bench_arrange.py [--sizes 20000 60000 200000 1300000] [--paper-max 200000] [--out FILE]

Synthetic unit vectors (d=384, float32, seed 0), M=1,125 test points (Flan-mini's 225 x 5).
Prints a JSON line per N as it goes, then one JSON object (written to `--out`, default
results/bench_arrange_cpu.json; `tables.py` builds benchmarks/README's "arrange-speed" table from it):
the machine, then a row per N with the time of
  - product_s: one bare N x M product, chunked and discarded: the floor no exact method beats;
  - wsd_s, tma_budget_s (budget = min(30k, N)), tma_full_s (budget=None, Algorithm 1 as written);
  - paper_* : the paper code's algorithm (full N x M distance matrix, per-round argmin over
    axis 0, picked rows set to a sentinel), and paper_tm_*: the same with the matrix stored
    test-major (argmin over contiguous memory, much faster per round), where each finishes in
    reasonable time; their rounds are checked equal to ours (*_equal);
  - peak_mb: the peak traced allocation of our tma_rounds(budget=None) (tracemalloc), next to
    input_mb, the training embeddings themselves.
`extrapolated` estimates each baseline's whole-pool time at the largest N from its growth between
the two largest N where it ran (an estimate, labelled as such).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")

from report import report  # noqa: E402

from zsg_core.precision import capability  # noqa: E402
from zsg_core.similarity import chunks, wsd  # noqa: E402
from zsg_core.tma import tma_rounds  # noqa: E402

M, DIM, BUDGET = 1125, 384, 30_000


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def paper_rounds(train: np.ndarray, test: np.ndarray, budget: int | None, layout: str = "code") -> list[list[int]]:
    """The paper's select_min, straightforwardly: the full distance matrix, then per round each test
    point's argmin, np.unique, and the picked rows set above the maximum.

    layout="code" is convert_flan_data_job.py as written: D is N x M and argmin runs over axis 0
    (strided memory). layout="test-major" stores D transposed so the argmin runs along contiguous
    memory: the same algorithm, the fastest way to run it on a CPU, and a stricter baseline.
    """
    target = len(train) if budget is None else budget
    rounds, picked = [], 0
    if layout == "code":
        dist = -(train @ test.T)
        big = dist.max() + 1
        while picked < target:
            new = np.unique(dist.argmin(axis=0))
            dist[new, :] = big
            rounds.append(new.tolist())
            picked += len(new)
    else:
        dist = -(test @ train.T)
        big = dist.max() + 1
        while picked < target:
            new = np.unique(dist.argmin(axis=1))
            dist[:, new] = big
            rounds.append(new.tolist())
            picked += len(new)
    return rounds


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def bare_product(train: np.ndarray, test: np.ndarray) -> None:
    for s in chunks(len(train), len(test)):
        test @ train[s].T


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 60_000, 200_000, 1_300_000])
    parser.add_argument("--paper-max", type=int, default=200_000,
                        help="largest N for the test-major paper algorithm on the whole pool")
    parser.add_argument("--code-max", type=int, default=200_000, help="largest N for the paper code with a budget")
    parser.add_argument("--code-full-max", type=int, default=60_000,
                        help="largest N for the paper code on the whole pool (O(N^2 M), strided argmin)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_arrange_cpu.json")
    args = parser.parse_args()
    figures: dict = {"machine": {**capability(), "cores": os.cpu_count(), "numpy": np.__version__},
                     "sizes": [], "extrapolated": []}
    rng = np.random.default_rng(0)
    test = unit(rng, M)
    paper_full = {}
    for n in args.sizes:
        train = unit(rng, n)
        budget = min(BUDGET, n)
        row: dict = {"N": n, "M": M, "d": DIM, "budget": budget}
        _, row["product_s"] = timed(bare_product, train, test)
        _, row["wsd_s"] = timed(wsd, train, test)
        ours_budget, row["tma_budget_s"] = timed(tma_rounds, train, test, "min", budget)
        ours_full, row["tma_full_s"] = timed(tma_rounds, train, test, "min", None)
        tracemalloc.start()  # a separate run: tracing slows allocations down
        tma_rounds(train, test, "min", None)
        row["peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
        row["input_mb"] = round(train.nbytes / 2**20)
        row["rounds_budget"], row["rounds_full"] = len(ours_budget), len(ours_full)
        fits = n * M * 4 <= 8 * 2**30  # the paper's full matrix must fit in memory
        for layout, budget_max, full_max in (("code", args.code_max, args.code_full_max),
                                             ("test-major", n, args.paper_max)):
            tag = "paper" if layout == "code" else "paper_tm"
            if fits and n <= budget_max:
                paper, row[f"{tag}_budget_s"] = timed(paper_rounds, train, test, budget, layout)
                row[f"{tag}_budget_equal"] = paper == ours_budget
            if fits and n <= full_max:
                paper, row[f"{tag}_full_s"] = timed(paper_rounds, train, test, None, layout)
                row[f"{tag}_full_equal"] = paper == ours_full
                paper_full.setdefault(tag, {})[n] = row[f"{tag}_full_s"]
        for key in list(row):
            if key.endswith("_s"):
                row[key] = round(row[key], 3)
        row["tma_budget_over_product"] = round(row["tma_budget_s"] / row["product_s"], 2)
        row["tma_full_over_product"] = round(row["tma_full_s"] / row["product_s"], 2)
        for tag in ("paper", "paper_tm"):
            for kind in ("budget", "full"):
                if f"{tag}_{kind}_s" in row:
                    row[f"{tag}_{kind}_over_tma"] = round(row[f"{tag}_{kind}_s"] / row[f"tma_{kind}_s"], 1)
        print(json.dumps(row), flush=True)  # as it goes: the largest N takes minutes
        figures["sizes"].append(row)
        last = row
    for tag, times in paper_full.items():
        if len(times) >= 2 and last["N"] not in times:
            (n0, t0), (n1, t1) = sorted(times.items())[-2:]
            exponent = math.log(t1 / t0) / math.log(n1 / n0)
            est = t1 * (last["N"] / n1) ** exponent
            figures["extrapolated"].append({"baseline": tag, "N": last["N"], "from_N": [n0, n1],
                                            "growth_exponent": round(exponent, 2), "full_s_estimate": round(est),
                                            "tma_full_s": last["tma_full_s"],
                                            "speedup_estimate": round(est / last["tma_full_s"])})
    report(figures, args.out)


if __name__ == "__main__":
    main()
