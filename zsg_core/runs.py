"""Runs: a frozen, validated config in, a content-addressed folder of results out; never twice.

    run(config) -> RunResult     # trains only if no complete result exists

A run is everything that determines its numbers: the model, the data split, the arrangement and
the training parameters (`RunConfig`). Its folder is `$ZSG_RUNS/<hash of the config>/` (default `$ZSG_CACHE/runs`):

    config.json      the config, written first
    state.pt         resumable training state while it runs (removed at the end)
    train_log.parquet  eval_loss.parquet  generations.parquet  batches.parquet
    manifest.json    versions, git commit, start/end, wall seconds, tokens/s
    complete         written last: only a folder with this marker is a result

Every file is written under a temporary name and renamed. A run killed half-way has no `complete`
marker: the next `run` resumes it from its last checkpoint (or from scratch) and never reports it
as done. Two processes asking for the same run at once: one trains, the other waits and reads.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .data import DataError, from_known_fields
from .split import SplitConfig
from .train import TABLES, TrainConfig
from .util import atomic_file, cache_dir, file_lock, without_late_defaults

RUN_VERSION = 1  # bump when training or evaluation changes what a config produces


@dataclass(frozen=True)
class RunConfig:
    model: str = "smollm2-135m"
    split: SplitConfig = SplitConfig()
    arrangement: str = "random"  # any zsg_core.arrange.METHODS
    arrangement_seed: int = 0  # the shuffle of random / rt / tma-rt
    budget: int | None = None  # tma-*: instances to select
    embed_text: str | None = None  # None: the paper's choice per method
    train: TrainConfig = TrainConfig()
    rounds: tuple[int, int] | None = None  # tma-min/tma-max: train on rounds [a, b) only (E8)

    def __post_init__(self) -> None:
        from .arrange import METHODS, SEEDED

        if not isinstance(self.model, str) or not self.model:
            raise DataError(f"run parameter model must be a model name or folder, got {self.model!r}")
        if self.arrangement not in METHODS:
            raise DataError(f"run parameter arrangement {self.arrangement!r} is unknown; choose one of {', '.join(METHODS)}")
        if not isinstance(self.arrangement_seed, int) or isinstance(self.arrangement_seed, bool):
            raise DataError(f"run parameter arrangement_seed must be an integer, got {self.arrangement_seed!r}")
        if self.arrangement not in SEEDED:  # a fixed order: its seed is no part of its identity (one run, not n)
            object.__setattr__(self, "arrangement_seed", 0)
        if self.budget is not None and (not isinstance(self.budget, int) or self.budget < 1):
            raise DataError(f"run parameter budget must be a positive integer or null, got {self.budget!r}")
        if self.rounds is not None:
            r = self.rounds
            if (not isinstance(r, (list, tuple)) or len(r) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in r)
                    or not 0 <= r[0] < r[1]):
                raise DataError(f"run parameter rounds must be [first, end) with 0 <= first < end, got {r!r}")
            if self.arrangement not in ("tma-min", "tma-max") or self.budget is not None:
                raise DataError("run parameter rounds applies to arrangement tma-min or tma-max without a budget")
            object.__setattr__(self, "rounds", tuple(r))
        if self.embed_text not in (None, "all", "first-turn"):
            raise DataError(f"run parameter embed_text must be 'all', 'first-turn' or null, got {self.embed_text!r}")

    def to_dict(self) -> dict[str, Any]:
        d = without_late_defaults({f.name: getattr(self, f.name) for f in fields(self)}, {"rounds": None})
        if "rounds" in d:
            d["rounds"] = list(d["rounds"])
        return {**d, "split": self.split.identity(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        if isinstance(d.get("split"), dict):
            d["split"] = SplitConfig.from_dict(d["split"])
        if isinstance(d.get("train"), dict):
            d["train"] = TrainConfig.from_dict(d["train"])
        return from_known_fields(cls, d, "run")

    def key(self) -> str:
        """Hash of the config (and, for a model given as a folder, of its weight files' names, sizes
        and times: the same path with new weights is a new run; assets are pinned by sha256)."""
        from .assets import ASSETS, TINY_MODELS

        identity: dict[str, Any] = {"config": self.to_dict(), "version": RUN_VERSION}
        if self.model not in ASSETS and self.model not in TINY_MODELS:
            identity["weights"] = [(p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                   for p in sorted(Path(self.model).expanduser().glob("*.safetensors"))]
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# Flat parameter names (profiles, papermill parameters, the CLI) -> where they live in a RunConfig.
SPLIT_PARAMS = {"split_seed": "seed", "test_tasks": "test_tasks", "train_per_task": "train_per_task",
                "test_per_task": "test_per_task", "max_len": "max_len", "family_blocked": "family_blocked",
                "held_out": "held_out"}
RUN_PARAMS = {"model", "arrangement", "arrangement_seed", "budget", "embed_text", "rounds"}
TRAIN_PARAMS = {f.name for f in fields(TrainConfig)}


def run_config(**params: Any) -> RunConfig:
    """A RunConfig from flat parameters (a profile plus overrides); an unknown name is an error."""
    split, train, top = {}, {}, {}
    for name, value in params.items():
        if name in SPLIT_PARAMS:
            split[SPLIT_PARAMS[name]] = value
        elif name in TRAIN_PARAMS:
            train[name] = value
        elif name in RUN_PARAMS:
            top[name] = value
        else:
            known = sorted(set(SPLIT_PARAMS) | RUN_PARAMS | TRAIN_PARAMS)
            raise DataError(f"unknown run parameter {name!r}; known: {', '.join(known)}")
    return RunConfig(split=SplitConfig(**split), train=TrainConfig.from_dict(train), **top)


def runs_dir() -> Path:
    """Where runs are stored: $ZSG_RUNS, default $ZSG_CACHE/runs."""
    return Path(os.environ["ZSG_RUNS"]) if os.environ.get("ZSG_RUNS") else cache_dir() / "runs"


@dataclass
class RunResult:
    config: RunConfig
    folder: Path
    manifest: dict[str, Any]
    train_log: pd.DataFrame
    eval_loss: pd.DataFrame
    generations: pd.DataFrame
    batches: pd.DataFrame

    def mean_loss(self) -> pd.Series:
        """Held-out loss averaged over all test instances (the paper's micro average), per step."""
        return self.eval_loss.groupby("step").loss.mean()

    def task_loss(self) -> pd.DataFrame:
        """Per-task mean held-out loss: steps x tasks."""
        return self.eval_loss.groupby(["step", "task"]).loss.mean().unstack()


def is_complete(folder: Path) -> bool:
    return (folder / "complete").exists()


def load(folder: Path) -> RunResult:
    """The stored results of a complete run."""
    folder = Path(folder)
    if not is_complete(folder):
        raise DataError(f"{folder} is not a complete run (no 'complete' marker)")
    config = RunConfig.from_dict(json.loads((folder / "config.json").read_text()))
    tables = {t: pd.read_parquet(folder / f"{t}.parquet") for t in TABLES}
    return RunResult(config, folder, json.loads((folder / "manifest.json").read_text()), **tables)


def _git_state() -> dict[str, Any]:
    """The code's commit, and whether the working tree had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"git_commit": head.stdout.strip() or None, "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("zsg", "torch", "transformers", "accelerate", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def arranged_training_list(config: RunConfig, split=None) -> tuple[list, list, dict]:
    """(arranged training records, test records, arrangement summary) of a run."""
    from .arrange import apply, arrange_records
    from .split import load_split

    split = split or load_split(config.split, config.model)
    arrangement = arrange_records(split.train, split.test, config.arrangement, config.budget,
                                  config.arrangement_seed, config.embed_text, rounds=config.rounds)
    return apply(split.train, arrangement.order), split.test, arrangement.summary()


def run(config: RunConfig, log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None,
        root: Path | None = None, checkpoint_every: int = 25) -> RunResult:
    """The results of `config`: read back if complete, else trained (resuming if interrupted)."""
    from .model import process_state

    folder = (root or runs_dir()) / config.key()
    if is_complete(folder):
        return load(folder)
    state = process_state()
    lock = file_lock(folder) if state.is_main_process else contextlib.nullcontext()
    with lock:
        if is_complete(folder):  # another process finished it while we waited
            return load(folder)
        return _train_and_store(config, folder, state, log, on_step, checkpoint_every)


def _train_and_store(config: RunConfig, folder: Path, state, log, on_step, checkpoint_every: int) -> RunResult:
    from .model import TunedLM
    from .train import train

    main = state.is_main_process
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / "config.json") as f:
            json.dump(config.to_dict(), f, indent=1)
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    arranged, test, summary = arranged_training_list(config)
    lm = TunedLM(config.model, config.train.frozen_layers, config.split.max_len, seed=config.train.seed)
    result = train(lm, arranged, test, config.train, workdir=folder, log=log, on_step=on_step,
                   checkpoint_every=checkpoint_every)
    if not main:
        state.wait_for_everyone()
        return load(folder)
    for t in TABLES:
        with atomic_file(folder / f"{t}.parquet", "wb") as f:
            getattr(result, t).to_parquet(f, index=False)
    manifest = {"key": config.key(), "run_version": RUN_VERSION, "versions": _versions(), **_git_state(),
                "started": started.isoformat(timespec="seconds"),
                "ended": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "wall_seconds": round(time.perf_counter() - t0, 2), "cpu_count": os.cpu_count(),
                "model_fingerprint": lm.fingerprint, "arrangement": summary,
                "train_instances": len(arranged), **{k: v for k, v in result.stats.items()}}
    with atomic_file(folder / "manifest.json") as f:
        json.dump(manifest, f, indent=1)
    with atomic_file(folder / "complete") as f:
        f.write(manifest["ended"] + "\n")
    (folder / "state.pt").unlink(missing_ok=True)
    state.wait_for_everyone()
    log(f"run {config.key()} complete: {folder}")
    return load(folder)
