"""Every run the book trains, launched from here: each chapter's groups of runs, defined once.

A chapter, the plan, the findings table and the benchmarks call the same function, so all see the
same runs (read back from the run store after the first time). Each group is keyed (label, seed):

    runs = run_arrangements(params, {"NFT": {"arrangement": "nft"}, "RT": {"arrangement": "rt"}},
                            seeds=[0, 1, 2])          # params: flat run parameters (runs.PARAMETERS)

    early_generalization  E1: random order over arrangement seeds (generating text), one per other split
    permutations          E2, E3: round-robin, cluster and random
    similarity            E4 over task splits (+ E9's OT order, the family-blocked splits)
    nearest_first, regimes  why nearest-first loses: balanced and family-matched orders; other set-ups
    granularity           E5: coarse vs fine over task splits, trained to the paper's reading point
    tma_plan, tma_comparison, round_groups  E6 and E8: sized once (the pool, the budget, E8's group size), then run
    adaptive              orders decided while training (issue 35) against RT and the best static order
    task_free             E7's analog: random-instance hold-outs

A chapter asks for its runs by name, `chapter_runs("04_similarity", globals())`: `BOOK_RUNS` says
once which of these each chapter calls with which of its parameters. Under `planning()` the same
calls train nothing: every run they would read is recorded (`PlannedRun`) and stands in the results
as `Pending`, which is how `zsg plan` lists the book's runs before any of them trains.

Only chapter 2 and 3's random runs generate text: every other group compares held-out loss, so
its runs carry no `generate_steps` (and are shared between chapters and the benchmarks).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from .arrange import TMA_POOL_SEED, pool_rounds
from .config import RunConfig, run_config, run_params
from .data import DataError
from .embed import Encoder, embed_records, embed_text
from .runs import RunResult, run, run_split, stored
from .split import is_cached
from .tma import first_rounds
from .train import comparison_schedule
from .util import text_hash

Runs = dict[tuple[str, int], RunResult]
Log = Callable[[str], None]

SEED_PARAMS = ("arrangement_seed", "split_seed")
PLANNED_ENV = "ZSG_PLAN_TRAINED"  # set by the book runner for its kernels: every run a chapter reads is stored
QUIET = {"generate_steps": []}
WSD_ORDERS = {"NFT": {"arrangement": "nft"}, "FFT": {"arrangement": "fft"}, "RT": {"arrangement": "rt"}}


# -- the plan: the runs a chapter reads, recorded instead of trained ---------------------------------

@dataclass(frozen=True)
class PlannedRun:
    """One run a chapter reads: where it is read (chapter, experiment function, label, seed) and
    what it is (its config)."""
    chapter: str
    experiment: str
    label: str
    seed: int
    seed_param: str
    config: RunConfig

    @property
    def key(self) -> str:
        return self.config.key()


@dataclass(frozen=True)
class Pending:
    """A planned run's place in the results while planning: what the chapter would read there."""
    config: RunConfig


class Unsized(Exception):
    """Planning met a group whose runs are decided by work not yet done (TMA's budget is computed
    from the pools' embeddings): how many runs it holds is known, their configs are not."""
    def __init__(self, experiment: str, runs: int, work: str):
        super().__init__(f"{experiment}: {runs} runs, sized once {work}")
        self.experiment, self.runs, self.work = experiment, runs, work


@dataclass
class Recorder:
    """What `planning()` collects: the runs in the order the chapters ask for them, and whether
    work that sizes runs (embedding TMA's pools) may be done now (`size`)."""
    size: bool = False
    chapter: str = ""
    runs: list[PlannedRun] = field(default_factory=list)


_RECORDER: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("zsg_planning", default=None)
_EXPERIMENT: contextvars.ContextVar[str] = contextvars.ContextVar("zsg_experiment", default="")


@contextlib.contextmanager
def planning(size: bool = False) -> Iterator[Recorder]:
    """Inside, the experiments train nothing and record the runs they would read."""
    recorder = Recorder(size)
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


def _experiment(fn: Callable) -> Callable:
    """Name the runs `fn` asks for after it (the plan's "experiment" column); the outermost wins."""
    @functools.wraps(fn)
    def named(*args: Any, **kwargs: Any) -> Any:
        token = _EXPERIMENT.set(_EXPERIMENT.get() or fn.__name__)
        try:
            return fn(*args, **kwargs)
        finally:
            _EXPERIMENT.reset(token)
    return named


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
    recorder = _RECORDER.get()
    out: Runs = {}
    for label, over in variants.items():
        seen: set[str] = set()
        for seed in seeds:
            config = run_config(**{**params, **over, seed_param: seed})
            if config.key() in seen:
                continue
            seen.add(config.key())
            if recorder is not None:
                recorder.runs.append(PlannedRun(recorder.chapter, _EXPERIMENT.get() or "run_arrangements",
                                                label, seed, seed_param, config))
                out[(label, seed)] = Pending(config)
                continue
            log(f"{label} ({seed_param} {seed}): run {config.key()}")
            if train and os.environ.get(PLANNED_ENV):  # the book trained its plan: a chapter only reads
                result = stored(config)
                if result is None:
                    raise DataError(f"{label} ({seed_param} {seed}): run {config.key()} is not in the run store, "
                                    "though the book's plan was trained: the plan (experiments.BOOK_RUNS) does not "
                                    "list every run this chapter reads")
            else:
                result = run(config, log=lambda m: None) if train else stored(config)
            if result is not None:
                out[(label, seed)] = result
    return out


def compared(params: Mapping[str, Any], max_steps: int | None = None) -> dict[str, Any]:
    """A comparison's runs: no generation, and evaluated where a comparison reads them
    (`train.comparison_schedule`: 9 points in 60 steps instead of 19). Power comes from task
    splits (chapter 4's "Where the noise is" compares the spread between splits with that between
    RT's shuffles), not from dense evaluation. With `max_steps` the runs train that long instead of
    the profile's."""
    steps = max_steps if max_steps is not None else params.get("max_steps")
    out = {**params, **QUIET, "max_steps": steps}
    if steps is not None:  # a whole-epoch run (None) keeps the dense schedule: its length is known late
        out["eval_steps"] = list(comparison_schedule(steps))
    return out


@_experiment
def early_generalization(params: Mapping[str, Any], arrangement_seeds: Sequence[int],
                         split_seeds: Sequence[int] = (), log: Log = print) -> dict[str, Runs]:
    """E1: random order over `arrangement_seeds` on the profile's split, generating at the
    profile's `generate_steps` ("shuffles", keyed by arrangement seed); random order on each
    split of `split_seeds` ("by_split", keyed by split seed: the profile's split is its first
    shuffle, the others one shuffle each, loss only and densely evaluated; chapter 3 compares on
    the same runs); and, so that claim 2 has task splits as its units, one generating random
    order on each of those other splits ("generating", keyed by split seed)."""
    order = {"random": {"arrangement": "random"}}
    shuffles = run_arrangements(params, order, arrangement_seeds, log=log)
    by_split = {("random", params["split_seed"]): shuffles[("random", arrangement_seeds[0])]}
    others = [s for s in split_seeds if s != params["split_seed"]]
    generating = run_arrangements(params, order, others, "split_seed", log) if others else {}
    return {"shuffles": shuffles, "by_split": by_split | _on_other_splits(params, order, split_seeds, log),
            "generating": generating}


def _on_other_splits(params: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]],
                     split_seeds: Sequence[int], log: Log) -> Runs:
    """`variants` once on each split of `split_seeds` but the profile's, loss only, densely
    evaluated, keyed (label, split seed): the runs E1, E2 and E3 share."""
    others = [s for s in split_seeds if s != params["split_seed"]]
    return run_arrangements({**params, **QUIET}, variants, others, "split_seed", log) if others else {}


@_experiment
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


@_experiment
def similarity(params: Mapping[str, Any], split_seeds: Sequence[int], arrangement_seeds: Sequence[int],
               blocked_split_seeds: Sequence[int] = (), log: Log = print) -> dict[str, Runs]:
    """E4: NFT / FFT / RT by WSD on each split of `split_seeds` (RT: one shuffle per split, its
    `arrangement_seeds[0]`), and the OT order (E9) on each split too (one split can only leave E9
    inconclusive); RT's other shuffles on the first split; the same three orders on the
    family-blocked version of each split in `blocked_split_seeds`."""
    p = compared(params)
    first = {**p, "split_seed": split_seeds[0]}
    one = {**p, "arrangement_seed": arrangement_seeds[0]}
    out = {"by_split": run_arrangements(one, WSD_ORDERS, split_seeds, "split_seed", log),
           "shuffles": run_arrangements(first, {"RT": WSD_ORDERS["RT"]}, arrangement_seeds, log=log),
           "ot": run_arrangements(one, {"OT": {"arrangement": "ot"}}, split_seeds, "split_seed", log)}
    if blocked_split_seeds:
        out["blocked"] = run_arrangements({**one, "family_blocked": True}, WSD_ORDERS, blocked_split_seeds,
                                          "split_seed", log)
    return out


NEAREST_FIRST_ORDERS = {"NFT": WSD_ORDERS["NFT"], "RT": WSD_ORDERS["RT"],
                        # Algorithm 1's min rounds over the same list, embedded as WSD embeds it: every
                        # held-out point gets its nearest instance in turn, so no family can come first
                        "balanced": {"arrangement": "tma-min", "embed_text": "all"},
                        "family": {"arrangement": "family-nft"},
                        # NFT's tasks (its task mix and templates) with random instances of each
                        "task": {"arrangement": "task-nft"},
                        # NFT's answer lengths with any task's instances: format and stopping alone
                        "length": {"arrangement": "length-nft"}}


@_experiment
def nearest_first(params: Mapping[str, Any], split_seeds: Sequence[int], arrangement_seeds: Sequence[int],
                  log: Log = print) -> Runs:
    """Why nearest-first loses, experiments 1 and 2, on E4's set-up over the same training list:
    WSD-NFT and RT (E4's own runs, read back), coverage-balanced nearest-first ("balanced"), and
    NFT's sequence of task families, of tasks and of answer lengths with random instances of each
    ("family", "task", "length"), one run each per split (the seeded orders: `arrangement_seeds[0]`).
    Keyed (label, split seed)."""
    p = {**compared(params), "arrangement_seed": arrangement_seeds[0]}
    return run_arrangements(p, NEAREST_FIRST_ORDERS, split_seeds, "split_seed", log)


REPRESENTED_ORDERS = ("NFT", "balanced")  # the nearest-first orders chapter 8 builds from each feature kind


def represented_label(order: str, kind: str) -> str:
    return f"{order} ({kind})"


@_experiment
def representations(params: Mapping[str, Any], kinds: Sequence[str], split_seeds: Sequence[int],
                    arrangement_seeds: Sequence[int], prompt_only_kinds: Sequence[str] = (), log: Log = print) -> Runs:
    """Which similarity orders best: WSD-NFT and coverage-balanced nearest-first
    (`NEAREST_FIRST_ORDERS`) built from each feature kind of `kinds`, and E4's RT (read back), one
    run each per split; for each kind of `prompt_only_kinds`, the balanced order also built from
    the held-out prompts alone (no reference answers: what a user without labels can build).
    Keyed (`represented_label(order, kind)` or "RT", split seed); minilm's runs are chapter 4's
    and chapter 7's own."""
    p = {**compared(params), "arrangement_seed": arrangement_seeds[0]}
    variants = {"RT": WSD_ORDERS["RT"]} | {represented_label(order, kind): {**NEAREST_FIRST_ORDERS[order], "features": kind}
                                           for kind in kinds for order in REPRESENTED_ORDERS}
    variants |= {represented_label("balanced", f"{kind}, prompts only"): {
        **NEAREST_FIRST_ORDERS["balanced"], "features": kind, "test_view": "prompt-only"} for kind in prompt_only_kinds}
    return run_arrangements(p, variants, split_seeds, "split_seed", log)


@_experiment
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


@_experiment
def granularity(params: Mapping[str, Any], split_seeds: Sequence[int], long_steps: int | None = None,
                log: Log = print) -> Runs:
    """E5: coarse (task-centroid WSD, tasks contiguous) vs fine (instance WSD, E4's NFT order),
    both nearest first over the same training list, on each split, trained `long_steps` steps
    (None: the profile's `max_steps`) so that they reach the paper's late reading point
    (`findings.PAPER["E5"]`, after its curves cross). The fine runs' first `max_steps` steps are E4's NFT runs
    (same order, same schedule): E4 and E5 share that prefix and are not independent evidence.
    RT, on the same schedule, is what each granularity is read against: "coarse < fine" could come
    from NFT's own penalty (chapter 7) rather than from coarse order helping."""
    orders = {"fine": WSD_ORDERS["NFT"], "coarse": {"arrangement": "coarse"}, "RT": WSD_ORDERS["RT"]}
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
             round_width: int = 0, round_starts: Sequence[int] = (), log: Log = print) -> TmaPlan:
    """Size E6 and E8 on `split_seeds` from TMA's min rounds over each split's pool (embeddings
    are cached, so the runs' own arrangements compute nothing again).

    The budget is twice the largest size of the first `near_rounds` rounds over the splits: the
    near half of NFT's min-max list then spans at least `near_rounds` rounds on every split (the
    paper's plotted half spans ~13). E8's groups [s, s + round_width) all train on their first
    `group_size` instances, the smallest group's size over splits rounded down to a batch, so every
    group trains the same steps under the same schedule."""
    if near_rounds < 1:
        raise DataError(f"tma_near_rounds must be at least 1, got {near_rounds}")
    if pool_per_task < params["train_per_task"]:
        raise DataError(f"tma_pool_per_task {pool_per_task} is smaller than train_per_task "
                        f"{params['train_per_task']}: the TMA pool holds the other orders' training list")
    encoder = Encoder()
    rounds, pool, embedded = {}, {}, {}
    for i, seed in enumerate(split_seeds):
        split = run_split(run_config(**{**_tma_params(params, pool_per_task), "split_seed": seed,
                                        "arrangement": "tma-min"}))
        before = encoder.n_encoded
        x, t = embed_records(split.train, "first-turn", encoder), embed_records(split.test, "first-turn", encoder)
        if encoder.n_encoded > before:  # sizing from cold caches takes long: say where it is (silent once cached)
            log(f"TMA pool of split {seed} ({i + 1} of {len(split_seeds)}): {len(split.train)} instances, "
                f"{encoder.n_encoded - before} texts embedded")
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


@_experiment
def tma_comparison(params: Mapping[str, Any], plan: TmaPlan, split_seeds: Sequence[int], arrangement_seeds: Sequence[int],
        whole_on: Sequence[int] | None = None, log: Log = print) -> dict[str, Runs]:
    """E6: TMA NFT / FFT / RT on each split of `split_seeds` (RT: one shuffle per split); all select
    `plan.budget` instances from the pool of `plan.pool_per_task` per task under the schedule of
    one pass over them.

    On the splits of `whole_on` (default: the first of `split_seeds`) NFT, FFT, RT and MIN, MAX
    train the whole pass: chapter 6's picture of the five orders, where FFT meets MAX after its far
    half. On the others NFT, FFT and RT stop where NFT leaves its near half (`near_half_stop`):
    chapter 6 reads them there and before (its reading point lies inside the near half), and a
    pass's first steps do not depend on where it stops (the schedule's horizon is the pass)."""
    whole_on = split_seeds[:1] if whole_on is None else whole_on
    p = {**_tma_params(params, plan.pool_per_task), "tma_budget": plan.budget, "arrangement_seed": arrangement_seeds[0]}
    by_split, extremes = {}, {}
    for seed in split_seeds:  # each split's own epoch, so each its own evaluation schedule
        stop = None if seed in whole_on else near_half_stop(plan, seed, p["batch_size"])
        one = {**p, "split_seed": seed, "max_steps": stop, "eval_steps": _tma_schedule(p, plan, seed, "tma-nft", stop)}
        by_split |= run_arrangements(one, tma_orders(("NFT", "FFT", "RT")), [seed], "split_seed", log)
    for seed in whole_on:
        for label in ("MIN", "MAX"):
            one = {**p, "split_seed": seed, "eval_steps": _tma_schedule(p, plan, seed, f"tma-{label.lower()}")}
            extremes |= run_arrangements(one, tma_orders((label,)), [seed], "split_seed", log)
    return {"by_split": by_split, "extremes": extremes}


def near_half_stop(plan: TmaPlan, split_seed: int, batch_size: int) -> int:
    """The step at which NFT's last near-half instance has been trained on, on one split."""
    return -(-plan.near_end[split_seed] // batch_size)


def _tma_schedule(params: Mapping[str, Any], plan: TmaPlan, split_seed: int, arrangement: str,
                  stop: int | None = None) -> list[int]:
    """The comparison schedule over one pass of a TMA selection on one split, up to `stop` (and at it)."""
    schedule = comparison_schedule(-(-plan.selected[split_seed][arrangement] // params["batch_size"]))
    return list(schedule) if stop is None else sorted({s for s in schedule if s <= stop} | {stop})


def round_label(start: int, width: int) -> str:
    """A group of TMA rounds as a page names it: "rounds 0-4", or "round 2" for a group of one."""
    return f"round {start}" if width == 1 else f"rounds {start}-{start + width - 1}"


@_experiment
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


ADAPTIVE_ORDERS = {"loss-driven": {"arrangement": "adaptive-loss"}, "gradient-aligned": {"arrangement": "adaptive-gradient"}}
LOOKAHEAD = {"lookahead (greedy)": {"arrangement": "adaptive-lookahead"}}
# chapter 9's static reference, chosen before its runs as the strongest static candidate:
# coverage-balanced nearest-first by gradients (chapter 8)
BEST_STATIC = "balanced (gradient)"


@_experiment
def adaptive(params: Mapping[str, Any], split_seeds: Sequence[int], arrangement_seeds: Sequence[int],
             lookahead_split_seeds: Sequence[int] = (), log: Log = print) -> Runs:
    """Orders that watch the model (issue 35), on E4's set-up: RT (E4's own runs, read back), the
    best static order (`BEST_STATIC`) and the loss-driven and gradient-aligned orders on each split
    of `split_seeds`; the one-step lookahead bound on `lookahead_split_seeds` (each of its steps
    tries several). The seeded orders take `arrangement_seeds[0]`. Keyed (label, split seed)."""
    p = {**compared(params), "arrangement_seed": arrangement_seeds[0]}
    variants = {"RT": WSD_ORDERS["RT"], BEST_STATIC: {**NEAREST_FIRST_ORDERS["balanced"], "features": "gradient"},
                **ADAPTIVE_ORDERS}
    runs = run_arrangements(p, variants, split_seeds, "split_seed", log)
    return runs | (run_arrangements(p, LOOKAHEAD, lookahead_split_seeds, "split_seed", log) if lookahead_split_seeds else {})


@_experiment
def task_free(params: Mapping[str, Any], split_seeds: Sequence[int], arrangement_seeds: Sequence[int],
              log: Log = print) -> Runs:
    """E7's analog: held-out instances drawn at random (tasks never consulted; each split seed
    draws another set), TMA over the whole pool (the paper's assumed build), NFT / FFT and one
    RT shuffle (`arrangement_seeds[0]`) on each split."""
    p = {**compared(params), "held_out": "instances", "tma_budget": None, "arrangement_seed": arrangement_seeds[0]}
    return run_arrangements(p, tma_orders(("NFT", "FFT", "RT")), split_seeds, "split_seed", log)


# -- the chapters' runs: which experiments each chapter calls, with which of its parameters ----------

def tma_chapter(params: Mapping[str, Any], split_seeds: Sequence[int], side_split_seeds: Sequence[int],
                arrangement_seeds: Sequence[int], pool_per_task: int, near_rounds: int, round_width: int,
                round_starts: Sequence[int], log: Log = print) -> tuple[TmaPlan, dict[str, Runs], Runs]:
    """Chapter 6: E6 and E8 sized on every split either uses (`tma_plan`), then run: (plan, E6's
    runs, E8's runs). Planning without `size` cannot size them until the pools are embedded:
    `Unsized` then says how many runs wait on that."""
    seeds = sorted(set(split_seeds) | set(side_split_seeds))
    recorder = _RECORDER.get()
    if recorder is not None and not recorder.size and not _pools_embedded(params, seeds, pool_per_task):
        runs = 3 * len(split_seeds) + 2 + len(round_starts) * len(side_split_seeds)
        raise Unsized("tma_comparison", runs, f"the TMA pools of splits {seeds} are embedded")
    plan = tma_plan(params, seeds, pool_per_task, near_rounds, round_width, round_starts, log)
    return (plan, tma_comparison(params, plan, split_seeds, arrangement_seeds, log=log),
            round_groups(params, plan, round_width, round_starts, side_split_seeds, log))


def _pools_embedded(params: Mapping[str, Any], split_seeds: Sequence[int], pool_per_task: int) -> bool:
    """Whether `tma_plan` would only read caches: every pool split cached and all its texts embedded."""
    encoder = Encoder()
    for seed in split_seeds:
        config = run_config(**{**_tma_params(params, pool_per_task), "split_seed": seed, "arrangement": "tma-min"})
        if not is_cached(config.split, config.model):
            return False
        split = run_split(config)
        texts = [embed_text(r, "first-turn") for r in split.train + split.test]
        if encoder.store.missing([text_hash(t) for t in texts]):
            return False
    return True


def _regimes_and_orders(p: Mapping[str, Any]) -> tuple[Runs, dict[str, Runs]]:
    params = run_params(p)
    return (nearest_first(params, p["split_seeds"], p["arrangement_seeds"]),
            regimes(params, p["regimes"], p["split_seeds"], p["arrangement_seeds"]))


# chapter -> its runs from its parameters (a profile, or a notebook's globals): what it reads
BOOK_RUNS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "02_early_generalization": lambda p: early_generalization(run_params(p), p["arrangement_seeds"], p["side_split_seeds"]),
    "03_permutations": lambda p: permutations(run_params(p), p["arrangement_seeds"], p["side_split_seeds"]),
    "04_similarity": lambda p: similarity(run_params(p), p["split_seeds"], p["arrangement_seeds"], p["side_split_seeds"]),
    "05_granularity": lambda p: granularity(run_params(p), p["side_split_seeds"], p["long_steps"]),
    # and chapter 4's runs on the same splits, read back: E6 set against E4 like with like
    "06_tma": lambda p: (*tma_chapter(run_params(p), p["split_seeds"], p["side_split_seeds"], p["arrangement_seeds"],
                                      p["tma_pool_per_task"], p["tma_near_rounds"], p["round_width"], p["round_starts"]),
                         similarity(run_params(p), p["split_seeds"], p["arrangement_seeds"])["by_split"]),
    "07_nearest_first": _regimes_and_orders,
    "08_representations": lambda p: (representations(run_params(p), p["feature_kinds"], p["side_split_seeds"],
                                                     p["arrangement_seeds"], p["prompt_only_orders"]),  # and chapter 3's cluster and random runs
                                     permutations(run_params(p), p["arrangement_seeds"][:1], p["side_split_seeds"])["by_split"]),
    "09_adaptive": lambda p: adaptive(run_params(p), p["split_seeds"], p["arrangement_seeds"], p["lookahead_split_seeds"]),
    "10_task_free": lambda p: task_free(run_params(p), p["side_split_seeds"], p["arrangement_seeds"]),
}


def chapter_runs(chapter: str, params: Mapping[str, Any]) -> Any:
    """The runs `chapter` reads, trained if missing (or recorded, under `planning()`), from its
    parameters: a profile, or the notebook's `globals()`."""
    if chapter not in BOOK_RUNS:
        raise DataError(f"no runs are declared for chapter {chapter!r}; chapters with runs: {', '.join(BOOK_RUNS)}")
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.chapter = chapter
    return BOOK_RUNS[chapter](_ChapterParams(chapter, params))


class _ChapterParams(Mapping[str, Any]):
    """A chapter's parameters; one it needs and lacks is named (not a KeyError from deep inside)."""
    def __init__(self, chapter: str, params: Mapping[str, Any]):
        self.chapter, self.params = chapter, params

    def __getitem__(self, name: str) -> Any:
        if name not in self.params:
            raise DataError(f"chapter {self.chapter}: parameter {name!r} is not set")
        return self.params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)
