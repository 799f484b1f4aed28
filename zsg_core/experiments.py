"""The runs behind each of the book's part-2 experiments (paper.md E4-E8), defined once.

A chapter and the findings table call the same function, so both see the same runs (read back
from the run store after the first time). Every function returns groups of runs keyed
(label, seed), as `compare.run_arrangements` does:

    by_split   the headline comparison over task-split seeds (each split its own held-out tasks)
    shuffles   RT's shuffle seeds on the first split (the spread that order alone makes)
    blocked    the same comparison on a family-blocked split (no held-out task has a sibling),
               RT over its shuffle seeds

Nothing here generates text: these chapters compare held-out loss only, so `generate_steps` is
always empty and the runs are shared with `benchmarks/ordering_check.py`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .compare import run_arrangements
from .data import DataError
from .runs import RunResult

Runs = dict[tuple[str, int], RunResult]

QUIET = {"generate_steps": []}
WSD_ORDERS = {"NFT": {"arrangement": "nft"}, "FFT": {"arrangement": "fft"}, "RT": {"arrangement": "rt"}}


def tma_budget(params: Mapping[str, Any], budget: int | None = None) -> int:
    """How many instances TMA selects: `budget`, else as many as the trained steps consume, so each
    run makes one pass over its selection (the paper: one epoch over its 30k) and the FFT layout
    reaches its near half mid-run."""
    if budget is not None:
        return int(budget)
    if params.get("max_steps") is None:
        raise DataError("TMA needs a budget: set tma_budget, or max_steps (budget = max_steps x batch_size)")
    return int(params["max_steps"]) * int(params["batch_size"])


def tma_orders(budget: int | None) -> dict[str, dict[str, Any]]:
    return {label: {"arrangement": f"tma-{label.lower()}", "budget": budget}
            for label in ("NFT", "FFT", "RT", "MIN", "MAX")}


def _quiet(params: Mapping[str, Any]) -> dict[str, Any]:
    return {**params, **QUIET}


def similarity(params: Mapping[str, Any], split_seeds: Sequence[int], seeds: Sequence[int],
               log: Callable[[str], None] = print) -> dict[str, Runs]:
    """E4: NFT / FFT / RT by WSD over split seeds, RT's shuffles, the OT order (E9) on the first
    split, and the family-blocked split."""
    p = _quiet(params)
    first = {**p, "split_seed": split_seeds[0]}
    return {"by_split": run_arrangements(p, WSD_ORDERS, split_seeds, "split_seed", log),
            "shuffles": run_arrangements(first, {"RT": WSD_ORDERS["RT"]}, seeds, log=log),
            "ot": run_arrangements(first, {"OT": {"arrangement": "ot"}}, log=log),
            "blocked": run_arrangements({**first, "family_blocked": True}, WSD_ORDERS, seeds, log=log)}


def granularity(params: Mapping[str, Any], split_seeds: Sequence[int], long_steps: int | None = None,
                log: Callable[[str], None] = print) -> dict[str, Runs]:
    """E5: coarse (task-centroid WSD, tasks contiguous) vs fine (= E4's NFT), both nearest first,
    over split seeds; with `long_steps`, the pair again on the first split for that many steps
    (the paper's curves cross late in its window)."""
    orders = {"fine": WSD_ORDERS["NFT"], "coarse": {"arrangement": "coarse"}}
    out = {"by_split": run_arrangements(_quiet(params), orders, split_seeds, "split_seed", log)}
    if long_steps:
        longer = {**_quiet(params), "split_seed": split_seeds[0], "max_steps": long_steps}
        out["long"] = run_arrangements(longer, orders, log=log)
    return out


def tma(params: Mapping[str, Any], split_seeds: Sequence[int], seeds: Sequence[int], budget: int | None = None,
        log: Callable[[str], None] = print) -> dict[str, Runs]:
    """E6: TMA NFT / FFT / RT over split seeds; MIN and MAX on the first split; NFT / FFT and RT's
    shuffles on the family-blocked split. All select `tma_budget(params, budget)` instances."""
    p = _quiet(params)
    first = {**p, "split_seed": split_seeds[0]}
    orders = tma_orders(tma_budget(params, budget))
    main = {k: orders[k] for k in ("NFT", "FFT", "RT")}
    return {"by_split": run_arrangements(p, main, split_seeds, "split_seed", log),
            "extremes": run_arrangements(first, {k: orders[k] for k in ("MIN", "MAX")}, log=log),
            "blocked": run_arrangements({**first, "family_blocked": True}, main, seeds, log=log)}


def round_groups(params: Mapping[str, Any], width: int, starts: Sequence[int],
                 log: Callable[[str], None] = print) -> Runs:
    """E8: one run per group of TMA (min) rounds [s, s + width) over the whole pool for each start
    s, each from the base model, in round order, for `max_steps` steps or the group's whole epoch
    when it is shorter (a group holds at most one instance per held-out point per round)."""
    from .arrange import arrange_records
    from .runs import run_config
    from .split import load_split

    config = run_config(**_quiet(params))
    split = load_split(config.split, config.model)
    picked_in = [r for _, r in arrange_records(split.train, split.test, "tma-min").rounds.values()]
    variants = {}
    for s in starts:
        size = sum(s <= r < s + width for r in picked_in)
        epoch = -(-size // config.train.batch_size)
        steps = epoch if config.train.max_steps is None else min(config.train.max_steps, epoch)
        variants[round_label(s, width)] = {"arrangement": "tma-min", "rounds": [s, s + width], "max_steps": steps}
    return run_arrangements(_quiet(params), variants, log=log)


def round_label(start: int, width: int) -> str:
    return f"rounds {start}-{start + width - 1}"


def task_free(params: Mapping[str, Any], seeds: Sequence[int], log: Callable[[str], None] = print) -> Runs:
    """E7's analog: held-out instances drawn at random (tasks never consulted), TMA over the whole
    pool (the paper's assumed build), NFT / FFT fixed and RT over `seeds`."""
    p = {**_quiet(params), "held_out": "instances"}
    return run_arrangements(p, {k: v for k, v in tma_orders(None).items() if k in ("NFT", "FFT", "RT")}, seeds, log=log)
