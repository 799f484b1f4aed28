"""Training a plan's missing runs: in this process, in local worker processes, or as Ray tasks.

    train_missing(plan)                                  # one after another, here
    train_missing(plan, Executor("processes", workers=2))
    train_missing(plan, Executor("ray", workers=2))      # a local Ray; address= joins a cluster

Every executor stores through `runs.run`, so the store's guarantees hold whoever trains: results
are written atomically under the run's lock, a run is stored once (content-addressed; a second
process asking for it waits and reads), and a run cut off half-way (a killed worker, a lost Ray
node) is resumed or redone by whoever asks next. Ray retries a task whose node died.

**The store is one folder every worker sees** ($ZSG_RUNS, default $ZSG_CACHE/runs): on one
machine that is given; on a cluster it is a path every node mounts, and so is $ZSG_CACHE (the
assets, splits, embeddings and frozen-layer caches the runs share). Each task checks, before it
trains, that it sees the same store as the driver (a token the driver writes there) and refuses
otherwise: results written to a node's own disk would be lost to the driver.

**Work a split's runs share** (its texts' embeddings, its frozen-layer cache entries) is done by the
split's first run: the executors start one run per split first, and the split's other runs once it
is done, so two workers never compute the same split's caches at once.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import RunConfig
from .costs import CostModel, manifests
from .data import DataError
from .experiments import PlannedRun
from .findings import counted
from .plan import Plan, _split_of, duration, predictions
from .runs import run, runs_dir
from .util import atomic_file, cache_dir, progress_bar

EXECUTORS = ("inprocess", "processes", "ray")
STORE_TOKEN = ".zsg-store-id"  # written by the driver in the run store; every task must read the same


@dataclass(frozen=True)
class Executor:
    kind: str = "inprocess"  # one of EXECUTORS
    workers: int = 1  # runs at once (processes, ray)
    threads: int | None = None  # torch threads per run; default: the cores shared among the workers
    ray_address: str | None = None  # an existing Ray cluster ("auto", "ray://host:10001"); None starts a local one
    gpus_per_run: float = 0.0  # a GPU share per run on Ray (0.25: four small runs per GPU)

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise DataError(f"executor must be one of {EXECUTORS}, got {self.kind!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise DataError(f"workers must be a whole number >= 1, got {self.workers!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise DataError(f"threads must be a whole number >= 1, got {self.threads!r}")
        if not 0 <= self.gpus_per_run <= 1:
            raise DataError(f"gpus_per_run must be between 0 and 1, got {self.gpus_per_run!r}")

    def run_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)


def waves(runs: list[PlannedRun]) -> list[list[PlannedRun]]:
    """The runs in two waves: each split's first run, then the rest (plan order kept in each), so
    that the work a split's runs share is done once, by its first run, before the others start."""
    first: dict[tuple, PlannedRun] = {}
    for r in runs:
        first.setdefault(_split_of(r), r)
    leaders = {r.key for r in first.values()}
    return [w for w in ([r for r in runs if r.key in leaders], [r for r in runs if r.key not in leaders]) if w]


def train_missing(plan: Plan, executor: Executor = Executor(), log: Callable[[str], None] = print,
                  root: Path | None = None) -> dict[str, float]:
    """Train every run of `plan` the store lacks; returns key -> wall seconds of each run trained
    here (a run another process finished meanwhile counts 0)."""
    root = root or runs_dir()
    todo = plan.missing(root)
    if not todo:
        log(f"all {len(plan.runs)} runs of the plan are stored")
        return {}
    bar = _Progress(plan, todo, root, executor.workers if executor.kind != "inprocess" else 1, log)
    walls: dict[str, float] = {}
    if executor.kind == "inprocess":
        for wave in waves(todo):
            for r in wave:
                walls[r.key] = _train_here(r.config.to_dict(), str(root), executor.threads)
                bar.done(r)
    elif executor.kind == "processes":
        _in_processes(todo, executor, root, bar, walls)
    else:
        _on_ray(todo, executor, root, bar, walls)
    bar.close()
    return walls


def _train_here(config: dict[str, Any], root: str, threads: int | None = None) -> float:
    """Train (or read back) one run in this process; its wall seconds, 0 if it was stored already."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    result = run(RunConfig.from_dict(config), log=lambda m: None, root=Path(root))
    return 0.0 if result.from_store else time.perf_counter() - t0


def _in_processes(todo: list[PlannedRun], executor: Executor, root: Path, bar: "_Progress",
                  walls: dict[str, float]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a fresh interpreter per worker (no forked torch thread pools); one thread count each
    with ProcessPoolExecutor(executor.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for wave in waves(todo):
            futures = {pool.submit(_train_here, r.config.to_dict(), str(root), executor.run_threads()): r for r in wave}
            for future in as_completed(futures):
                walls[futures[future].key] = future.result()
                bar.done(futures[future])


def _store_token(root: Path) -> str:
    """The run store's identity, written once by the driver: a task that reads another (or none)
    is not looking at the driver's store."""
    path = root / STORE_TOKEN
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as f:
            f.write(uuid.uuid4().hex)
    return path.read_text().strip()


def _ray_task(config: dict[str, Any], root: str, token: str, threads: int) -> float:
    """One run as a Ray task: refuses a store that is not the driver's, then trains in it."""
    path = Path(root) / STORE_TOKEN
    seen = path.read_text().strip() if path.exists() else None
    if seen != token:
        import socket

        raise DataError(f"node {socket.gethostname()} does not see the driver's run store at {root} "
                        f"({'another store' if seen else 'no store'} there): on a cluster, ZSG_RUNS and ZSG_CACHE "
                        "must be paths every node mounts")
    return _train_here(config, root, threads)


def _on_ray(todo: list[PlannedRun], executor: Executor, root: Path, bar: "_Progress", walls: dict[str, float]) -> None:
    import ray

    token = _store_token(root)
    threads = executor.run_threads()
    env = {"ZSG_CACHE": str(cache_dir()), "ZSG_RUNS": str(root), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
           "OMP_NUM_THREADS": str(threads)}
    started_here = not ray.is_initialized()
    if started_here:
        local = {} if executor.ray_address else {"num_cpus": executor.workers * threads}
        ray.init(address=executor.ray_address, runtime_env={"env_vars": env}, include_dashboard=False,
                 log_to_driver=False, logging_level="warning", **local)
    # a task whose worker or node dies is retried (elsewhere, if its node is gone); an error the run
    # raises (bad input, a damaged asset) is not: it would fail the same way again
    task = ray.remote(_ray_task).options(num_cpus=threads, num_gpus=executor.gpus_per_run, max_retries=3,
                                         retry_exceptions=False)
    try:
        for wave in waves(todo):
            pending = {task.remote(r.config.to_dict(), str(root), token, threads): r for r in wave}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                r = pending.pop(ready[0])
                walls[r.key] = ray.get(ready[0])
                bar.done(r)
    finally:
        if started_here:
            ray.shutdown()


class _Progress:
    """Runs done of the total, elapsed, and the time left: a tqdm bar on a terminal, a line per run
    otherwise. The time left is the cost model's, refitted after every run on the manifests stored
    so far (on a fresh machine the plan prices nothing; after a set-up's first run it prices its
    kind) and divided among the workers, plus the wall time per run so far for the runs it cannot
    price yet."""
    def __init__(self, plan: Plan, todo: list[PlannedRun], root: Path, workers: int, log: Callable[[str], None]):
        self.plan, self.todo, self.root, self.workers, self.log = plan, todo, root, workers, log
        self.count, self.t0 = 0, time.perf_counter()
        self.bar = progress_bar(len(todo), "runs", unit="run")
        if self.bar is not None:  # tqdm's own estimate (the rate so far) would be a second, different one
            self.bar.bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def left(self) -> tuple[float, int]:
        """Predicted seconds until the plan is trained, and how many of its runs that counts at the
        rate so far because the refitted cost model cannot price them yet."""
        predicted = predictions(self.plan, CostModel.fit(manifests(self.root)), self.root)
        waiting = [predicted[r.key] for r in self.todo if r.key in predicted]
        rate = (time.perf_counter() - self.t0) / max(self.count, 1)  # wall per run done: the workers already in it
        blind = sum(s is None for s in waiting)
        at_once = max(1, min(self.workers, len(waiting)))  # one run left is not done faster by two workers
        return sum(s for s in waiting if s is not None) / at_once + blind * rate, blind

    def done(self, r: PlannedRun) -> None:
        self.count += 1
        try:
            seconds, blind = self.left()
            left = f"about {duration(seconds)} left" + (f" ({counted(blind, 'run')} at the rate so far)" if blind else "")
        except Exception as e:  # an estimate never stops training: a manifest it cannot read costs only the estimate
            left = f"time left unknown ({type(e).__name__})"
        if self.bar is not None:
            self.bar.set_postfix_str(left, refresh=False)
            self.bar.update(1)
            return
        elapsed = time.perf_counter() - self.t0
        self.log(f"run {self.count}/{len(self.todo)} done ({r.chapter}, {r.label}, {r.seed_param} {r.seed}): "
                 f"{duration(elapsed)} elapsed, {left}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def add_arguments(parser) -> None:
    """The executor's command-line options (`zsg plan --train`, `python -m zsg_core.book`), declared once."""
    parser.add_argument("--workers", type=int, default=1,
                        help="runs trained at once, each in its own process with its share of the cores (default 1: "
                             "one after another in this process)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / workers)")
    parser.add_argument("--ray", action="store_true", help="train the runs as Ray tasks on a local Ray (with --workers)")
    parser.add_argument("--ray-address", default=None,
                        help="train on this Ray cluster ('auto', 'ray://head:10001'); every node must mount ZSG_CACHE "
                             "and ZSG_RUNS")
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray: the GPU share of each run (0.25: four per GPU)")


def from_arguments(args) -> Executor:
    ray = args.ray or args.ray_address is not None
    kind = "ray" if ray else "processes" if args.workers > 1 else "inprocess"
    return Executor(kind, args.workers, args.threads, args.ray_address, args.gpus_per_run)
