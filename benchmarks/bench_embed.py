"""MiniLM embedding throughput: encoding (cold) vs the on-disk cache (warm), and one process vs
`--processes` (sentence-transformers' multi-process pool), same process, same texts.

    .venv/bin/python benchmarks/bench_embed.py [--n 512] [--processes 2]

Prints JSON: texts per second for each, and the hours a 100k and a 1M pool would take at the
best measured rate (a straight extrapolation: encoding is linear in the number of texts). The
texts are the first n training instances of the default split ("all" text). MiniLM runs in fp32
(sentence-transformers' default), whatever `precision` the training uses.
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

from zsg_core.embed import Encoder, embed_text  # noqa: E402
from zsg_core.split import load_split  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    texts = list(dict.fromkeys(embed_text(r) for r in load_split().train))[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        cold = Encoder(cache=Path(tmp))
        cold._st()  # load the model outside the timed region
        t0 = time.perf_counter()
        cold.encode(texts)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = Encoder(cache=Path(tmp))  # a new process's view: reads the shards from disk
        warm.encode(texts)
        t_warm = time.perf_counter() - t0
        pooled = Encoder(cache=Path(tmp) / "pooled", processes=args.processes)
        pooled._st()
        t0 = time.perf_counter()
        pooled.encode(texts)  # includes starting the pool: what a user's call costs
        t_pooled = time.perf_counter() - t0
    best = max(len(texts) / t_cold, len(texts) / t_pooled)
    import torch

    print(json.dumps({
        "texts": len(texts), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(), "precision": "fp32 (MiniLM)",
        "encode_texts_per_s": round(len(texts) / t_cold, 1),
        f"encode_texts_per_s_{args.processes}_processes": round(len(texts) / t_pooled, 1),
        "processes_speedup": round(t_cold / t_pooled, 2),
        "cached_texts_per_s": round(len(texts) / t_warm, 1),
        "cache_speedup": round(t_cold / t_warm, 1),
        "warm_encoded": warm.n_encoded,
        "hours_100k_at_best": round(100_000 / best / 3600, 2), "hours_1m_at_best": round(1_000_000 / best / 3600, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
