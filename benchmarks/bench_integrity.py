"""What the integrity checks cost, each against the same work without the check, same process.

    .venv/bin/python benchmarks/bench_integrity.py [--entries 200]

Prints JSON:
- assets: the full check (every byte of every converted file, what `zsg prepare` and the first
  load in a process do) and the cheap one (sizes and times, what `zsg prepare --list` does), against
  reading the same bytes without hashing them;
- runs: `runs.load` of a stored run (sha256 of its tables, then parquet) against reading the
  parquet tables alone; a tiny-model run is trained into a temporary store if none is given;
- the frozen-layer cache: reading entries with their checksum (`model._read_hidden`) against a
  bare safetensors read of the same files; real SmolLM2 bottom outputs (26 layers, the cpu
  profile's cut) of the first training instances of the smoke split;
- embedding shards: `embed._read_shard` (zip CRCs, shape and value checks) against `np.load`.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from zsg_core import assets  # noqa: E402
from zsg_core.util import damaged_files  # noqa: E402


def _timed(f, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def _read_all(folder: Path, names) -> int:
    n = 0
    for name in names:
        with open(folder / name, "rb") as f:
            while block := f.read(1 << 20):
                n += len(block)
    return n


def bench_assets() -> dict:
    out = {}
    for name in ("bigbench", "smollm2-135m", "minilm-l6"):
        files = assets._ready_files(name)
        folder = assets.get_asset(name).path
        size = sum(f["size"] for f in files.values())
        read = _timed(lambda: _read_all(folder, files), repeat=2)
        full = _timed(lambda: damaged_files(folder, files, full=True), repeat=2)
        cheap = _timed(lambda: damaged_files(folder, files, full=False), repeat=3)
        out[name] = {"files": len(files), "mb": round(size / 1e6, 1), "full_check_s": round(full, 3),
                     "read_only_s": round(read, 3), "full_vs_read": round(full / read, 2),
                     "cheap_check_s": round(cheap, 4), "full_vs_cheap": round(full / cheap, 1)}
    return out


def bench_run(tmp: Path) -> dict:
    from zsg_core.config import run_config
    from zsg_core.runs import load, run
    from zsg_core.train import TABLES

    config = run_config(model="tiny-llama", test_tasks=8, train_per_task=2, test_per_task=1, max_len=128,
                        lr=1e-3, batch_size=4, max_steps=3, frozen_layers=1, arrangement="cluster")
    folder = run(config, root=tmp, log=lambda m: None).folder
    bare = _timed(lambda: [pd.read_parquet(folder / f"{t}.parquet") for t in TABLES], repeat=5)
    checked = _timed(lambda: load(folder), repeat=5)
    return {"tables_kb": round(sum((folder / f"{t}.parquet").stat().st_size for t in TABLES) / 1e3, 1),
            "load_verified_s": round(checked, 4), "parquet_only_s": round(bare, 4),
            "verified_vs_parquet_only": round(checked / bare, 2)}


def bench_hidden(tmp: Path, entries: int) -> dict:
    from safetensors.torch import load_file

    from zsg_core.model import TunedLM, _read_hidden
    from zsg_core.config import run_config

    from zsg_core.runs import run_split

    split = run_split(run_config(model="smollm2-135m", test_tasks=36, train_per_task=4, test_per_task=2, max_len=256))
    lm = TunedLM("smollm2-135m", frozen_layers=26, max_len=256, hidden_cache=tmp)
    items = lm.items(split.train[:entries])
    t0 = time.perf_counter()
    lm.cache_bottom(items)
    compute = time.perf_counter() - t0
    paths = [lm.cache_folder / f"{it.key}.safetensors" for it in items]
    bare = _timed(lambda: [load_file(p)["hidden"] for p in paths])
    checked = _timed(lambda: [_read_hidden(p, len(it.ids)) for p, it in zip(paths, items)])
    return {"entries": len(items), "mb": round(sum(p.stat().st_size for p in paths) / 1e6, 1),
            "read_checked_ms_per_entry": round(1e3 * checked / len(items), 3),
            "read_bare_ms_per_entry": round(1e3 * bare / len(items), 3),
            "checked_vs_bare": round(checked / bare, 2),
            "compute_ms_per_entry": round(1e3 * compute / len(items), 1)}


def bench_shards(tmp: Path) -> dict:
    from zsg_core.embed import _read_shard

    rng = np.random.default_rng(0)
    path = tmp / "shard.npz"
    keys = np.array([f"{i:040x}" for i in range(5000)])
    np.savez(path, keys=keys, vectors=rng.standard_normal((5000, 384)).astype(np.float32))

    def bare():
        with np.load(path) as z:
            return z["keys"].tolist(), z["vectors"]

    t_bare, t_checked = _timed(bare, 5), _timed(lambda: _read_shard(path), 5)
    return {"vectors": 5000, "read_checked_s": round(t_checked, 4), "np_load_s": round(t_bare, 4),
            "checked_vs_np_load": round(t_checked / t_bare, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=200, help="frozen-layer cache entries to read")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        figures = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
                   "assets": bench_assets(), "run_load": bench_run(tmp / "runs"),
                   "hidden_cache": bench_hidden(tmp / "hidden", args.entries),
                   "embedding_shard": bench_shards(tmp)}
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
