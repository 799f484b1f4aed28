"""Does the ordering effect survive the speed-ups? NFT / RT / FFT held-out loss, side by side,
for the profile's training set-up (top layers trained over cached frozen ones) and for full
fine-tuning of every layer (the paper's set-up), on the same split and test set.

    .venv/bin/python benchmarks/ordering_check.py [--profile cpu] [--full-lr 2e-5] [--rt-seeds 0,1,2]

The runs are `zsg_core.experiments.ordering_check`'s, the same that the findings chapter shows
when they are stored; stored runs are reused. Full fine-tuning costs ~10x more per step on this
CPU, so it evaluates at fewer steps (every 10). Prints JSON: per set-up, the held-out loss (micro
average) of each order at each evaluated step (RT: per shuffle), the gaps NFT - RT and FFT - RT
(RT: the mean over its shuffles), and the spread (max - min) of RT over its seeds.
"""
from __future__ import annotations

import argparse
import json
import sys

from zsg_core import compare, experiments
from zsg_core.book import load_profile
from zsg_core.runs import run_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--full-lr", type=float, default=2e-5)
    parser.add_argument("--rt-seeds", default="0,1,2")
    args = parser.parse_args()
    params = run_params(load_profile(args.profile))
    seeds = [int(s) for s in args.rt_seeds.split(",")]
    check = experiments.ordering_check(params, args.full_lr, seeds, log=lambda m: print(m, file=sys.stderr))
    gaps = compare.ordering_gaps(check)
    out = {"profile": args.profile, "setups": {}}
    for setup, results in check.items():
        curves = compare.loss_curves(results)
        rt = curves[curves.label == "RT"].pivot_table(index="step", columns="seed", values="loss")
        config = next(iter(results.values())).config
        out["setups"][setup] = {
            "frozen_layers": config.train.frozen_layers, "lr": config.train.lr,
            "heldout_loss": {f"{label.lower()}{'' if label != 'RT' else f'_seed{seed}'}":
                             {int(s): round(float(v), 4) for s, v in r.mean_loss().items()}
                             for (label, seed), r in results.items()},
            **{f"{c.split(' ')[0].lower()}_minus_rt": {int(s): round(float(v), 4) for s, v in gaps[(setup, c)].dropna().items()}
               for c in ("FFT - RT", "NFT - RT")},
            "rt_seed_spread": {int(s): round(float(v), 4) for s, v in (rt.max(axis=1) - rt.min(axis=1)).items()},
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
