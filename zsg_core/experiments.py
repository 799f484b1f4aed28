"""Every run the book trains, launched from here: each chapter's groups of runs, defined once.

A chapter, the findings table and the benchmarks call the same function, so all see the same runs
(read back from the run store after the first time). Each group is keyed (label, seed):

    runs = run_arrangements(params, {"NFT": {"arrangement": "nft"}, "RT": {"arrangement": "rt"}},
                            seeds=[0, 1, 2])          # params: flat run parameters (runs.PARAMETERS)

    early_generalization  E1: random order over arrangement seeds (generating text), one per other split
    permutations          E2, E3: round-robin, cluster and random
    similarity            E4 over task splits (+ E9's OT order, the family-blocked splits)
    nearest_first, regimes  why nearest-first loses: balanced and family-matched orders; other set-ups
    granularity           E5: coarse vs fine over task splits, trained to the paper's reading point
    tma_plan, tma, round_groups   E6 and E8: sized once (the pool, the budget, E8's group size), then run
    task_free             E7's analog: random-instance hold-outs

Only chapter 2 and 3's random runs generate text: every other group compares held-out loss, so
its runs carry no `generate_steps` (and are shared between chapters and the benchmarks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .data import DataError
from .runs import RunResult, run, run_config, run_split, stored
from .train import comparison_schedule

Runs = dict[tuple[str, int], RunResult]
Log = Callable[[str], None]

SEED_PARAMS = ("arrangement_seed", "split_seed")
QUIET = {"generate_steps": []}
WSD_ORDERS = {"NFT": {"arrangement": "nft"}, "FFT": {"arrangement": "fft"}, "RT": {"arrangement": "rt"}}


def run_arrangements(params: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]],
                     seeds: Sequence[int] = (0,), seed_param: str = "arrangement_seed", log: Log = print,
                     train: bool = True) -> Runs:
    """Run (or read back) every variant x seed: `params` shared, each variant's overrides on top.

    `seed_param` is what the seeds vary: the shuffle of the seeded orders (`arrangement_seed`)
    or the task split itself (`split_seed`). A variant the seed does not change (a fixed order
    under arrangement seeds) is one run, reported under the first seed. With `train=False`,
    only what is stored already comes back (a variant x seed not yet run is left out).
    """
    if seed_param not in SEED_PARAMS:
        raise DataError(f"seed_param must be one of {SEED_PARAMS}, got {seed_param!r}")
    if not seeds:
        raise DataError("no seeds given: a comparison needs at least one run per variant")
    out: Runs = {}
    for label, over in variants.items():
        seen: set[str] = set()
        for seed in seeds:
            config = run_config(**{**params, **over, seed_param: seed})
            if config.key() in seen:
                continue
            seen.add(config.key())
            log(f"{label} ({seed_param} {seed}): run {config.key()}")
            result = run(config, log=lambda m: None) if train else stored(config)
            if result is not None:
                out[(label, seed)] = result
    return out


def compared(params: Mapping[str, Any], max_steps: int | None = None) -> dict[str, Any]:
    """A comparison's runs: no generation, and evaluated where a comparison reads them
    (`train.comparison_schedule`: 9 points in 60 steps instead of 19). Power comes from task
    splits (between-split spread ~0.4 in NFT - RT against ~0.02-0.1 from RT's shuffles), not from
    dense evaluation. With `max_steps` the runs train that long instead of the profile's."""
    steps = max_steps if max_steps is not None else params.get("max_steps")
    out = {**params, **QUIET, "max_steps": steps}
    if steps is not None:  # a whole-epoch run (None) keeps the dense schedule: its length is known late
        out["eval_steps"] = list(comparison_schedule(steps))
    return out


def early_generalization(params: Mapping[str, Any], arrangement_seeds: Sequence[int],
                         split_seeds: Sequence[int] = (), log: Log = print) -> dict[str, Runs]:
    """E1: random order over `arrangement_seeds` on the profile's split, generating at the
    profile's `generate_steps` ("shuffles", keyed by arrangement seed); and random order on each
    split of `split_seeds` ("by_split", keyed by split seed: the profile's split is its first
    shuffle, the others one shuffle each, loss only and densely evaluated; chapter 3 compares on
    the same runs)."""
    order = {"random": {"arrangement": "random"}}
    shuffles = run_arrangements(params, order, arrangement_seeds, log=log)
    by_split = {("random", params["split_seed"]): shuffles[("random", arrangement_seeds[0])]}
    return {"shuffles": shuffles, "by_split": by_split | _on_other_splits(params, order, split_seeds, log)}


def _on_other_splits(params: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]],
                     split_seeds: Sequence[int], log: Log) -> Runs:
    """`variants` once on each split of `split_seeds` but the profile's, loss only, densely
    evaluated, keyed (label, split seed): the runs E1, E2 and E3 share."""
    others = [s for s in split_seeds if s != params["split_seed"]]
    return run_arrangements({**params, **QUIET}, variants, others, "split_seed", log) if others else {}


def permutations(params: Mapping[str, Any], arrangement_seeds: Sequence[int], split_seeds: Sequence[int] = (),
                 log: Log = print) -> dict[str, Runs]:
    """E2 and E3, densely evaluated (they read every window): on the profile's split, round-robin
    and cluster (fixed orders) and random over `arrangement_seeds` (chapter 2's runs, with their
    generations); on each other split of `split_seeds`, cluster and one random order.
    {"first": runs keyed (label, arrangement seed), "by_split": cluster and random keyed
    (label, split seed), the profile's split included}."""
    first = run_arrangements(params, {"round-robin": {"arrangement": "round-robin", **QUIET},
                                      "cluster": {"arrangement": "cluster", **QUIET},
                                      "random": {"arrangement": "random"}}, arrangement_seeds, log=log)
    by_split = {("cluster", params["split_seed"]): first[("cluster", arrangement_seeds[0])],
                ("random", params["split_seed"]): first[("random", arrangement_seeds[0])]}
    variants = {"cluster": {"arrangement": "cluster"}, "random": {"arrangement": "random"}}
    return {"first": first, "by_split": by_split | _on_other_splits(params, variants, split_seeds, log)}


def similarity(params: Mapping[str, Any], split_seeds: Sequence[int], arrangement_seeds: Sequence[int],
               blocked_split_seeds: Sequence[int] = (), log: Log = print) -> dict[str, Runs]:
    """E4: NFT / FFT / RT by WSD on each split of `split_seeds` (RT: one shuffle per split, its
    `arrangement_seeds[0]`); RT's other shuffles and the OT order (E9) on the first split; the
    same three orders on the family-blocked version of each split in `blocked_split_seeds`."""
    p = compared(params)
    first = {**p, "split_seed": split_seeds[0]}
    one = {**p, "arrangement_seed": arrangement_seeds[0]}
    out = {"by_split": run_arrangements(one, WSD_ORDERS, split_seeds, "split_seed", log),
           "shuffles": run_arrangements(first, {"RT": WSD_ORDERS["RT"]}, arrangement_seeds, log=log),
           "ot": run_arrangements(first, {"OT": {"arrangement": "ot"}}, log=log)}
    if blocked_split_seeds:
        out["blocked"] = run_arrangements({**one, "family_blocked": True}, WSD_ORDERS, blocked_split_seeds,
                                          "split_seed", log)
    return out


NEAREST_FIRST_ORDERS = {"NFT": WSD_ORDERS["NFT"], "RT": WSD_ORDERS["RT"],
                        # Algorithm 1's min rounds over the same list, embedded as WSD embeds it: every
                        # held-out point gets its nearest instance in turn, so no family can come first
                        "balanced": {"arrangement": "tma-min", "embed_text": "all"},
                        "family": {"arrangement": "family-nft"}}


def nearest_first(params: Mapping[str, Any], split_seeds: Sequence[int], arrangement_seeds: Sequence[int],
                  log: Log = print) -> Runs:
    """Why nearest-first loses, experiments 1 and 2, on E4's set-up over the same training list:
    WSD-NFT and RT (E4's own runs, read back), coverage-balanced nearest-first ("balanced") and
    NFT's family sequence with random instances of each family ("family"), one run each per split
    (the seeded orders: `arrangement_seeds[0]`). Keyed (label, split seed)."""
    p = {**compared(params), "arrangement_seed": arrangement_seeds[0]}
    return run_arrangements(p, NEAREST_FIRST_ORDERS, split_seeds, "split_seed", log)


REPRESENTED_ORDERS = ("NFT", "balanced")  # the nearest-first orders chapter 8 builds from each feature kind


def represented_label(order: str, kind: str) -> str:
    return f"{order} ({kind})"


def representations(params: Mapping[str, Any], kinds: Sequence[str], split_seeds: Sequence[int],
                    arrangement_seeds: Sequence[int], log: Log = print) -> Runs:
    """Which similarity orders best: WSD-NFT and coverage-balanced nearest-first
    (`NEAREST_FIRST_ORDERS`) built from each feature kind of `kinds`, and E4's RT (read back), one
    run each per split. Keyed (`represented_label(order, kind)` or "RT", split seed); minilm's
    runs are chapter 4's and chapter 7's own."""
    p = {**compared(params), "arrangement_seed": arrangement_seeds[0]}
    variants = {"RT": WSD_ORDERS["RT"]} | {represented_label(order, kind): {**NEAREST_FIRST_ORDERS[order], "features": kind}
                                           for kind in kinds for order in REPRESENTED_ORDERS}
    return run_arrangements(p, variants, split_seeds, "split_seed", log)


def regimes(params: Mapping[str, Any], setups: Mapping[str, Mapping[str, Any]], split_seeds: Sequence[int],
            arrangement_seeds: Sequence[int], log: Log = print, train: bool = True) -> dict[str, Runs]:
    """E4's NFT / FFT / RT (RT: `arrangement_seeds[0]`) on each split under each set-up of `setups`
    (a name -> run-parameter overrides: another lr, every layer trained, another model, fewer
    steps: a slow set-up may train only to the reading point, since the first steps of the
    epoch's schedule do not depend on where a run stops); the profile's own set-up under
    "profile" (E4's runs). With `train=False`, only stored runs."""
    seeded = {"arrangement_seed": arrangement_seeds[0]}
    out = {"profile": run_arrangements({**compared(params), **seeded}, WSD_ORDERS, split_seeds, "split_seed", log, train)}
    for name, over in setups.items():
        if "arrangement" in over or "split_seed" in over:
            raise DataError(f"regime {name!r} may change the set-up, not the order or the split: {sorted(over)}")
        out[name] = run_arrangements({**compared({**params, **over}), **seeded}, WSD_ORDERS, split_seeds,
                                     "split_seed", log, train)
    return out


def granularity(params: Mapping[str, Any], split_seeds: Sequence[int], long_steps: int | None = None,
                log: Log = print) -> Runs:
    """E5: coarse (task-centroid WSD, tasks contiguous) vs fine (instance WSD, E4's NFT order),
    both nearest first over the same training list, on each split, trained `long_steps` steps
    (None: the profile's `max_steps`) so that they reach the paper's reading point (its step 800
    of 1,797, after its curves cross). The fine runs' first `max_steps` steps are E4's NFT runs
    (same order, same schedule): E4 and E5 share that prefix and are not independent evidence."""
    orders = {"fine": WSD_ORDERS["NFT"], "coarse": {"arrangement": "coarse"}}
    return run_arrangements(compared(params, long_steps), orders, split_seeds, "split_seed", log)


TMA_LABELS = ("NFT", "FFT", "RT", "MIN", "MAX")


def tma_orders(labels: Sequence[str] = TMA_LABELS) -> dict[str, dict[str, Any]]:
    """The TMA layouts by label; each selects the run's `tma_budget` instances."""
    return {label: {"arrangement": f"tma-{label.lower()}"} for label in labels}


@dataclass(frozen=True)
class TmaPlan:
    """How E6 and E8 are sized on a set of task splits, decided before any run (`tma_plan`)."""
    pool_per_task: int  # the TMA pool: up to this many instances of every training task
    budget: int  # instances the min-max layout selects, the same on every split
    near_rounds: dict[int, int]  # split seed -> nearest rounds in the near half (>= the asked-for number)
    pool: dict[int, int]  # split seed -> pool size
    min_rounds: dict[int, list[list[int]]]  # split seed -> Algorithm 1's min rounds over the whole pool (pool indices)
    group_size: int  # E8: instances every group of rounds trains on (a multiple of the batch)
    selected: dict[int, dict[str, int]]  # split seed -> TMA arrangement -> instances it selects at `budget`
    near_end: dict[int, int]  # split seed -> position in NFT's list where its near half ends
    fft_near_start: dict[int, int]  # split seed -> position in FFT's list where its near half begins


def _tma_params(params: Mapping[str, Any], pool_per_task: int) -> dict[str, Any]:
    """A TMA run's parameters: the larger pool, and one pass over the whole selection, so that
    NFT, FFT and RT train on the same instances under the same schedule."""
    return {**params, **QUIET, "pool_per_task": pool_per_task, "max_steps": None}


def tma_plan(params: Mapping[str, Any], split_seeds: Sequence[int], pool_per_task: int, near_rounds: int,
             round_width: int = 0, round_starts: Sequence[int] = ()) -> TmaPlan:
    """Size E6 and E8 on `split_seeds` from TMA's min rounds over each split's pool (embeddings
    are cached, so the runs' own arrangements compute nothing again).

    The budget is twice the largest size of the first `near_rounds` rounds over the splits: the
    near half of NFT's min-max list then spans at least `near_rounds` rounds on every split (the
    paper's plotted half spans ~13). E8's groups [s, s + round_width) all train on their first
    `group_size` instances, the smallest group's size over splits rounded down to a batch, so every
    group trains the same steps under the same schedule."""
    from .arrange import TMA_POOL_SEED, pool_rounds
    from .embed import Encoder, embed_records
    from .tma import first_rounds

    if near_rounds < 1:
        raise DataError(f"tma_near_rounds must be at least 1, got {near_rounds}")
    if pool_per_task < params["train_per_task"]:
        raise DataError(f"tma_pool_per_task {pool_per_task} is smaller than train_per_task "
                        f"{params['train_per_task']}: the TMA pool holds the other orders' training list")
    encoder = Encoder()
    rounds, pool, embedded = {}, {}, {}
    for seed in split_seeds:
        split = run_split(run_config(**{**_tma_params(params, pool_per_task), "split_seed": seed,
                                        "arrangement": "tma-min"}))
        x, t = embed_records(split.train, "first-turn", encoder), embed_records(split.test, "first-turn", encoder)
        embedded[seed] = x, t
        rounds[seed] = pool_rounds(x, t, "min", None, TMA_POOL_SEED)
        pool[seed] = len(split.train)
        if len(rounds[seed]) < 2 * near_rounds:
            raise DataError(f"split {seed}: the pool of {pool[seed]} gives {len(rounds[seed])} min rounds, "
                            f"fewer than the {2 * near_rounds} a near half of {near_rounds} rounds needs; raise "
                            "tma_pool_per_task or lower tma_near_rounds")
    sizes = {seed: [len(r) for r in rs] for seed, rs in rounds.items()}
    budget = 2 * max(sum(s[:near_rounds]) for s in sizes.values())
    group_size = 0
    if round_starts:
        last = max(round_starts) + round_width
        short = [seed for seed, s in sizes.items() if len(s) < last]
        if short:
            raise DataError(f"E8 asks for rounds up to {last}; split(s) {short} give fewer")
        smallest = min(sum(s[a: a + round_width]) for s in sizes.values() for a in round_starts)
        group_size = smallest // params["batch_size"] * params["batch_size"]
        if group_size == 0:
            raise DataError(f"E8's smallest group of rounds holds {smallest} instances, less than a batch")
    spans, selected, near_end, fft_near_start = {}, {}, {}, {}
    for seed, (x, t) in embedded.items():  # the layouts the runs will train on (arrange.tma_layout), from the rounds
        near = [i for r in first_rounds(rounds[seed], budget // 2) for i in r]  # NFT's first half
        farthest = pool_rounds(x, t, "max", budget, TMA_POOL_SEED)  # MAX; its prefix is FFT's first half
        far = [i for r in first_rounds(farthest, budget // 2) for i in r]
        both = len(set(near) | set(far))  # NFT, FFT and RT hold the two halves, each instance once
        spans[seed] = len(first_rounds(rounds[seed], budget // 2))
        selected[seed] = {"tma-nft": both, "tma-fft": both, "tma-rt": both,
                          "tma-min": sum(map(len, first_rounds(rounds[seed], budget))),
                          "tma-max": sum(map(len, farthest))}
        near_end[seed] = len(near)  # NFT: the near half first, whole
        fft_near_start[seed] = len(far)  # FFT: the far half first, then what the near half adds
    return TmaPlan(pool_per_task, budget, spans, pool, rounds, group_size, selected, near_end, fft_near_start)


def tma(params: Mapping[str, Any], plan: TmaPlan, split_seeds: Sequence[int], side_split_seeds: Sequence[int],
        arrangement_seeds: Sequence[int], log: Log = print) -> dict[str, Runs]:
    """E6: TMA NFT / FFT / RT on each split of `split_seeds` (RT: one shuffle per split), MIN and
    MAX on each of `side_split_seeds`; all select `plan.budget` instances from the pool of
    `plan.pool_per_task` per task and train one pass over them."""
    p = {**_tma_params(params, plan.pool_per_task), "tma_budget": plan.budget, "arrangement_seed": arrangement_seeds[0]}
    by_split, extremes = {}, {}
    for seed in split_seeds:  # each split's own epoch, so each its own evaluation schedule
        one = {**p, "split_seed": seed, "eval_steps": _tma_schedule(p, plan, seed, "tma-nft")}
        by_split |= run_arrangements(one, tma_orders(("NFT", "FFT", "RT")), [seed], "split_seed", log)
    for seed in side_split_seeds:
        for label in ("MIN", "MAX"):
            one = {**p, "split_seed": seed, "eval_steps": _tma_schedule(p, plan, seed, f"tma-{label.lower()}")}
            extremes |= run_arrangements(one, tma_orders((label,)), [seed], "split_seed", log)
    return {"by_split": by_split, "extremes": extremes}


def _tma_schedule(params: Mapping[str, Any], plan: TmaPlan, split_seed: int, arrangement: str) -> list[int]:
    """The comparison schedule over one pass of a TMA selection on one split."""
    return list(comparison_schedule(-(-plan.selected[split_seed][arrangement] // params["batch_size"])))


def round_label(start: int, width: int) -> str:
    return f"rounds {start}-{start + width - 1}"


def round_groups(params: Mapping[str, Any], plan: TmaPlan, width: int, starts: Sequence[int],
                 split_seeds: Sequence[int], log: Log = print) -> Runs:
    """E8: on each split, one run per group of TMA min rounds [s, s + width) over the whole pool,
    from the base model, in round order, each on the group's first `plan.group_size` instances
    (one pass: the same steps and schedule for every group). Keyed (label, split seed)."""
    steps = plan.group_size // params["batch_size"]
    p = {**_tma_params(params, plan.pool_per_task), "tma_budget": plan.group_size,
         "eval_steps": list(comparison_schedule(steps))}
    variants = {round_label(s, width): {"arrangement": "tma-min", "rounds": [s, s + width]} for s in starts}
    return run_arrangements(p, variants, split_seeds, "split_seed", log)


def task_free(params: Mapping[str, Any], split_seeds: Sequence[int], arrangement_seeds: Sequence[int],
              log: Log = print) -> Runs:
    """E7's analog: held-out instances drawn at random (tasks never consulted; each split seed
    draws another set), TMA over the whole pool (the paper's assumed build), NFT / FFT and one
    RT shuffle (`arrangement_seeds[0]`) on each split."""
    p = {**compared(params), "held_out": "instances", "tma_budget": None, "arrangement_seed": arrangement_seeds[0]}
    return run_arrangements(p, tma_orders(("NFT", "FFT", "RT")), split_seeds, "split_seed", log)
