"""Does the ordering effect survive the speed-ups? NFT / RT / FFT held-out loss, side by side,
for the profile's training set-up (top layers trained over cached frozen ones) and for full
fine-tuning of every layer (the paper's set-up), on the same split and test set.

    .venv/bin/python benchmarks/ordering_check.py [--profile cpu] [--full-lr 2e-5] [--rt-seeds 0,1,2]

Stored runs are reused. Full fine-tuning costs ~10x more per step on this CPU, so it evaluates
at fewer steps (every 10). Prints JSON: per set-up and arrangement, the held-out loss (micro
average) at each evaluated step; the gaps FFT - RT and NFT - RT at the common steps, and the
spread (max - min) of RT over its seeds.
"""
from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from zsg_core.book import load_profile
from zsg_core.runs import SPLIT_PARAMS, RUN_PARAMS, TRAIN_PARAMS, run, run_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--full-lr", type=float, default=2e-5)
    parser.add_argument("--rt-seeds", default="0,1,2")
    parser.add_argument("--only", choices=["fast", "full"], default=None, help="run one set-up only")
    args = parser.parse_args()
    names = set(SPLIT_PARAMS) | RUN_PARAMS | TRAIN_PARAMS
    params = {k: v for k, v in load_profile(args.profile).items() if k in names}
    params["generate_steps"] = []  # held-out loss only: generating changes no number compared here
    steps = params.get("max_steps") or 60
    setups = {
        "fast": dict(params),
        "full": {**params, "frozen_layers": 0, "lr": args.full_lr,
                 "eval_steps": sorted({0, 5, *range(10, steps + 1, 10), steps})},
    }
    rt_seeds = [int(s) for s in args.rt_seeds.split(",")]
    out = {"profile": args.profile, "setups": {}}
    for name, setup in setups.items():
        if args.only and name != args.only:
            continue
        curves = {}
        for arrangement, seed in [("nft", 0), ("fft", 0)] + [("rt", s) for s in (rt_seeds if name == "fast" else rt_seeds[:1])]:
            config = run_config(**{**setup, "arrangement": arrangement, "arrangement_seed": seed})
            result = run(config, log=lambda m: print(m, file=sys.stderr))
            curves[f"{arrangement}{'' if arrangement != 'rt' else f'_seed{seed}'}"] = result.mean_loss()
        table = pd.DataFrame(curves)
        rt = table[[c for c in table if c.startswith("rt")]]
        out["setups"][name] = {
            "frozen_layers": setup.get("frozen_layers", 0), "lr": setup["lr"],
            "heldout_loss": {c: {int(s): round(float(v), 4) for s, v in table[c].items()} for c in table},
            "fft_minus_rt": {int(s): round(float(v), 4) for s, v in (table.fft - rt.mean(axis=1)).items()},
            "nft_minus_rt": {int(s): round(float(v), 4) for s, v in (table.nft - rt.mean(axis=1)).items()},
            "rt_seed_spread": {int(s): round(float(v), 4) for s, v in (rt.max(axis=1) - rt.min(axis=1)).items()},
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
