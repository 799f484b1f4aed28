"""What each feature kind costs: seconds per 1,000 instances for minilm, hidden and gradient, next
to a bare forward (hidden's baseline) and a bare forward + backward (gradient's) of the same model
over the same items, all in one process; and the features' size on disk.

    .venv/bin/python benchmarks/bench_features.py [--n 200] [--profile cpu]

The items are the first n training instances of the profile's split 0; the LM, its frozen cut and
precision are the profile's (the cpu profile: SmolLM2-135M, 26 of 30 layers frozen). The frozen
bottom's outputs are computed first, outside the timings, as every run has them cached; the
gradient's warm-up (`features.WARMUP_STEPS` training steps) is timed on its own.
Prints JSON with the CPU kind.
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

import torch  # noqa: E402

from zsg_core import features  # noqa: E402
from zsg_core.config import load_profile  # noqa: E402
from zsg_core.embed import Encoder, embed_text  # noqa: E402
from zsg_core.model import TunedLM  # noqa: E402
from zsg_core.packing import PACK_TOKENS, rows  # noqa: E402
from zsg_core.config import run_config, run_params  # noqa: E402
from zsg_core.runs import lm_source, run_split  # noqa: E402


def _say(message: str) -> None:  # progress on stderr; the figures go to stdout as JSON
    import sys

    print(message, file=sys.stderr, flush=True)


def _per_1000(seconds: float, n: int) -> float:
    return round(seconds / n * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    config = run_config(**{**run_params(load_profile(args.profile)), "split_seed": 0, "arrangement": "nft"})
    split = run_split(config)
    records, test = split.train[: args.n], split.test
    source = lm_source(config)
    out: dict = {"instances": len(records), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                 "threads": torch.get_num_threads(), "model": source.model, "frozen_layers": source.frozen_layers,
                 "precision": source.precision}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        encoder = Encoder(cache=cache / "embeddings")
        encoder._st()  # the model load is not the encoding
        _say(f"minilm on {len(records)} texts")
        t0 = time.perf_counter()
        encoder.encode([embed_text(r, "all") for r in records])
        out["minilm_s_per_1000"] = _per_1000(time.perf_counter() - t0, len(records))

        lm = TunedLM(source.model, source.frozen_layers, source.max_len, autocast=source.precision == "bf16")
        items = lm.items(records)
        lm.cache_bottom(items, log=lambda m: None)
        lm.model.eval()
        _say("bare forward, hidden, bare forward + backward, gradient")
        t0 = time.perf_counter()
        with torch.no_grad(), lm.precision():  # a bare forward through the trained top, packed as the features run it
            for row in rows(items, PACK_TOKENS):
                lm.top_states(lm.pack(row))
        bare_forward = time.perf_counter() - t0
        t0 = time.perf_counter()
        features.pooled_hidden(lm, items)
        hidden = time.perf_counter() - t0
        t0 = time.perf_counter()
        for row in rows(items, PACK_TOKENS):  # a bare forward + backward of the loss, weight gradients included
            with lm.precision():
                sums, counts, _ = lm.loss(*lm.pack(row, share_prefixes=False).args())
            (sums / counts.clamp(min=1)).sum().backward()
            lm.model.zero_grad(set_to_none=True)
        bare_backward = time.perf_counter() - t0
        t0 = time.perf_counter()
        gradients = features.projected_gradients(lm, items)
        gradient = time.perf_counter() - t0
        out |= {"forward_s_per_1000": _per_1000(bare_forward, len(items)),
                "hidden_s_per_1000": _per_1000(hidden, len(items)),
                "hidden_vs_forward": round(hidden / bare_forward, 2),
                "forward_backward_s_per_1000": _per_1000(bare_backward, len(items)),
                "gradient_s_per_1000": _per_1000(gradient, len(items)),
                "gradient_vs_forward_backward": round(gradient / bare_backward, 2),
                "gradient_dims": int(gradients.shape[1])}

        _say("gradient features, whole call (warm-up, training and held-out sides)")
        t0 = time.perf_counter()
        features.compute(records, test, "gradient", source=source, cache=cache, log=lambda m: None)
        out["gradient_call_with_warmup_s"] = round(time.perf_counter() - t0, 1)
        features.compute(records, test, "hidden", source=source, cache=cache, log=lambda m: None)
        t0 = time.perf_counter()
        features.compute(records, test, "hidden", source=source, cache=cache, log=lambda m: None)
        out["hidden_cached_call_s"] = round(time.perf_counter() - t0, 2)
        for kind, folder in (("minilm", cache / "embeddings"), ("hidden", cache / "features"),
                             ("gradient", cache / "features")):
            size = sum(f.stat().st_size for f in folder.rglob("*.npz") if kind == "minilm" or f"/{kind}-" in str(f))
            out[f"{kind}_disk_bytes_per_instance"] = round(size / (len(records) + (len(test) if kind != "minilm" else 0)))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
