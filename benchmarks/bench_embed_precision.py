"""MiniLM in bf16 against fp32 (issue 31 item 4): is bf16 faster here, and does it change what the
book computes from the vectors, NFT's order and TMA's rounds, on real task splits?

    .venv/bin/python benchmarks/bench_embed_precision.py [--splits 0 1] [--n 256] [--rounds 2]

Speed: the same `--n` texts encoded afresh in each precision, alternating `--rounds` times in this
process (medians). Agreement: every training and held-out text of each split, both precisions
(fp32 from the shared cache, bf16 into a temporary one): the cosine between each text's two
vectors, and whether NFT's order by WSD and TMA's min rounds (Algorithm 1 over the training list,
the whole list as budget) come out the same. Prints JSON; `results/bench_embed_precision_cpu.json`.
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
import torch  # noqa: E402

from zsg_core.arrange import nft, tma_rounds  # noqa: E402
from zsg_core.embed import Encoder, embed_records, embed_text  # noqa: E402
from zsg_core.split import SplitConfig, load_split  # noqa: E402


def _speed(texts: list[str], rounds: int) -> dict[str, float]:
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for precision in seconds:
            with tempfile.TemporaryDirectory() as tmp:
                encoder = Encoder(cache=Path(tmp), precision=precision)
                encoder._st()  # the model's loading outside the timed part
                t0 = time.perf_counter()
                encoder.encode(texts)
                seconds[precision].append(time.perf_counter() - t0)
    return {p: float(np.median(s)) for p, s in seconds.items()}


def _agreement(seed: int, bf16: Encoder) -> dict:
    split = load_split(SplitConfig(seed=seed))
    fp32 = Encoder()
    out: dict = {"split": seed, "train": len(split.train), "test": len(split.test)}
    for mode in ("all", "first-turn"):  # WSD embeds every message, TMA the first turn
        x32, t32 = embed_records(split.train, mode, fp32), embed_records(split.test, mode, fp32)
        x16, t16 = embed_records(split.train, mode, bf16), embed_records(split.test, mode, bf16)
        cosine = np.concatenate([(x32 * x16).sum(1), (t32 * t16).sum(1)])
        out[f"cosine_{mode}_min"] = round(float(cosine.min()), 6)
        out[f"cosine_{mode}_mean"] = round(float(cosine.mean()), 6)
        if mode == "all":
            a, b = nft(x32, t32), nft(x16, t16)
            out["nft_same_order"] = bool(np.array_equal(a, b))
            out["nft_positions_moved"] = int((np.asarray(a) != np.asarray(b)).sum())
            out["nft_first_480_overlap"] = round(len(set(a[:480]) & set(b[:480])) / 480, 4)  # a 60-step run's items
        else:
            a, b = tma_rounds(x32, t32, "min"), tma_rounds(x16, t16, "min")
            out["tma_same_rounds"] = a == b
            out["tma_rounds"] = [len(a), len(b)]
            first_differs = next((i for i, (r, s) in enumerate(zip(a, b)) if sorted(r) != sorted(s)), None)
            out["tma_first_round_that_differs"] = first_differs
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    texts = list(dict.fromkeys(embed_text(r) for r in load_split().train))[: args.n]
    speed = _speed(texts, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        bf16 = Encoder(cache=Path(tmp), precision="bf16")
        splits = [_agreement(seed, bf16) for seed in args.splits]
    print(json.dumps({
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
        "texts_timed": len(texts), "rounds": args.rounds,
        "fp32_texts_per_s": round(len(texts) / speed["fp32"], 1), "bf16_texts_per_s": round(len(texts) / speed["bf16"], 1),
        "bf16_speedup": round(speed["fp32"] / speed["bf16"], 2),
        "splits": splits,
    }, indent=1))


if __name__ == "__main__":
    main()
