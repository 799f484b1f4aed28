"""What a history-independent frozen-layer cache costs: the cache's computation before (rows of
missing items packed as they come, sharing task prefixes) against now (`TunedLM.bottom_outputs`:
rows of a fixed width, no shared prefix) and against one item at a time, in one process.

    .venv/bin/python benchmarks/bench_cache.py [--profile cpu] [--items 120] [--rounds 3] [--out FILE]

Prints one JSON object: the machine (CPU kind, threads, precision), seconds per instance of each
way (median of `rounds` alternating rounds, each round listed), the ratios now / before and
alone / now, and for each way how many entries differ between two fill histories (the items in
two overlapping halves) and from the item computed alone: the property bought with the time.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from report import report

from zsg_core.config import load_profile
from zsg_core.model import TunedLM
from zsg_core.packing import PACK_TOKENS, by_prefix, lay_out, rows
from zsg_core.precision import capability
from zsg_core.config import run_config, run_params


from zsg_core.runs import run_split


def before(lm: TunedLM, items) -> dict[str, torch.Tensor]:
    """The cache's computation until this change: packed as they come, shared prefixes."""
    out = {}
    with torch.no_grad():
        for row in rows(sorted(items, key=by_prefix), PACK_TOKENS):
            pack = lay_out(row, [it.ids for it in row])
            with lm.precision():
                hidden = lm.bottom(input_ids=pack.inputs, position_ids=pack.positions, zsg_spans=pack.spans,
                                   use_cache=False).last_hidden_state[0]
            out.update((it.key, h.to(lm.cache_dtype)) for it, h in zip(row, pack.item_rows(hidden)))
    return out


def now(lm: TunedLM, items) -> dict[str, torch.Tensor]:
    return {it.key: h.to(lm.cache_dtype) for it, h in lm.bottom_outputs(items)}


def alone(lm: TunedLM, items) -> dict[str, torch.Tensor]:
    out = {}
    with torch.no_grad(), lm.precision():
        for it in items:
            out[it.key] = lm.bottom(input_ids=it.ids[None], use_cache=False).last_hidden_state[0].to(lm.cache_dtype)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    config = run_config(**run_params(load_profile(args.profile)))
    split = run_split(config)
    lm = TunedLM(config.model, config.train.frozen_layers, config.split.max_len,
                 autocast=config.train.precision == "bf16")
    half = args.items // 2  # test instances share task definitions, as in a real fill
    items = lm.items(list(split.train[:half]) + list(split.test[:args.items - half]))
    ways = {"before": before, "now": now, "alone": alone}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    values: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, way in ways.items():
            t = time.perf_counter()
            values[name] = way(lm, items)
            seconds[name].append((time.perf_counter() - t) / len(items))
    first, second = items[: 2 * len(items) // 3], items[len(items) // 3:]  # overlapping fill histories
    common = {it.key for it in first} & {it.key for it in second}
    figures = {"machine": capability(), "model": config.model, "frozen_layers": config.train.frozen_layers,
               "items": len(items), "pack_tokens": PACK_TOKENS}
    for name, way in ways.items():
        a, b = way(lm, first), way(lm, second)
        figures[name] = {"s_per_instance": round(statistics.median(seconds[name]), 4),
                         "rounds": [round(s, 4) for s in seconds[name]],
                         "differ_between_histories": sum(not torch.equal(a[k], b[k]) for k in common),
                         "of": len(common),
                         "differ_from_alone": sum(not torch.equal(values[name][k], values["alone"][k])
                                                  for k in values[name])}
    figures["now_over_before"] = round(figures["now"]["s_per_instance"] / figures["before"]["s_per_instance"], 3)
    figures["alone_over_now"] = round(figures["alone"]["s_per_instance"] / figures["now"]["s_per_instance"], 3)
    report(figures, args.out)


if __name__ == "__main__":
    main()
