"""MiniLM embedding throughput: encoding (cold) vs the on-disk cache (warm), same process.

    .venv/bin/python benchmarks/bench_embed.py [--n 512]

Prints JSON. The texts are the first n training instances of the default split ("all" text).
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
    print(json.dumps({
        "texts": len(texts),
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
        "encode_texts_per_s": round(len(texts) / t_cold, 1),
        "cached_texts_per_s": round(len(texts) / t_warm, 1),
        "cache_speedup": round(t_cold / t_warm, 1),
        "warm_encoded": warm.n_encoded,
    }, indent=1))


if __name__ == "__main__":
    main()
