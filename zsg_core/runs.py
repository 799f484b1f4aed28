"""Runs: a frozen, validated config in, a content-addressed folder of results out; never twice.

    run(config) -> RunResult     # trains only if no complete result exists

A run is everything that determines its numbers: the model, the data split, the arrangement and
the training parameters (`RunConfig`). Its folder is `$ZSG_RUNS/<hash of the config>/` (default `$ZSG_CACHE/runs`):

    config.json      the config, written first
    state/           resumable training state while it runs (safetensors + JSON; removed at the end)
    train_log.parquet  eval_loss.parquet  generations.parquet  batches.parquet
    manifest.json    versions, git commit, start/end, wall seconds, tokens/s, the sha256 of
                     config.json and of each table
    complete         written last: only a folder with this marker is a result

Every file is written under a temporary name and renamed. A run killed half-way has no `complete`
marker: the next `run` resumes it from its last checkpoint (or from scratch) and never reports it
as done. Two processes asking for the same run at once: one trains, the other waits and reads.
A complete run is served only if its config and tables still match the sha256 its manifest
recorded: a damaged one (a flipped byte, a truncated file) is named, its results removed and the
run redone.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .adaptive import GradientAligned, Lookahead, LossRounds, nearest_by_task
from .arrange import apply, arrange_records, get_method
from .config import RUN_VERSION, RunConfig
from .data import DataError
from .embed import Encoder, embed_records, texts_encoded
from .features import LMSource, projected_gradients, seconds_computing
from .model import TunedLM, process_state
from .precision import capability
from .split import SplitConfig, load_split
from .train import LEGACY_STATE, STATE, TABLES, Adaptive, step_plan, train
from .util import atomic_file, cache_dir, checked_record, file_digests, file_lock


def run_split(config: RunConfig):
    """The held-out split a run trains and evaluates on (`split.load_split`, cached on disk; runs
    on the same split share one load per process)."""
    return _load_split(config.split, config.model)


@functools.lru_cache(maxsize=8)
def _load_split(split: SplitConfig, model: str):

    return load_split(split, model)


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
    from_store: bool = False  # read back from the run store by this call, not trained by it

    def mean_loss(self) -> pd.Series:
        """Held-out loss averaged over all test instances (the paper's micro average), per step."""
        return self.eval_loss.groupby("step").loss.mean()

    def task_loss(self, measure: str = "loss") -> pd.DataFrame:
        """Per-task mean held-out loss (or another of `LOSS_MEASURES`): steps x tasks."""
        if measure not in LOSS_MEASURES:
            raise DataError(f"unknown loss measure {measure!r}; choose one of {', '.join(LOSS_MEASURES)}")
        t = self.eval_loss
        if measure == "loss":
            values = t.loss
        elif "eos_loss" not in t.columns:
            raise DataError(f"run {self.folder.name} records no EOS loss (stored before run version 5)")
        elif measure == "eos":
            values = t.eos_loss
        else:  # the answer's own tokens: the mean without the EOS term (NaN for an empty answer)
            values = (t.loss * t.tokens - t.eos_loss) / (t.tokens - 1).where(t.tokens > 1)
        return t.assign(value=values).groupby(["step", "task"]).value.mean().unstack()


def is_complete(folder: Path) -> bool:
    return (folder / "complete").exists()


# What a per-instance held-out loss can be read as: the whole (answer tokens and EOS, the book's
# measure), the answer tokens alone, or the EOS alone (where the answer stops).
LOSS_MEASURES = ("loss", "answer", "eos")

CHECKED = ["config.json"] + [f"{t}.parquet" for t in TABLES]  # the files a manifest records the sha256 of


class DamagedRun(DataError):
    """A complete run whose stored files no longer match what was recorded when it finished."""


def verify(folder: Path) -> dict[str, Any]:
    """The manifest of a complete run whose config and tables match their recorded sha256;
    DamagedRun naming each damaged file otherwise (`util.checked_record`; a run stored before
    checksums were kept is sealed on its first successful read)."""
    def readable() -> None:
        for name in CHECKED:
            try:
                pd.read_parquet(folder / name) if name.endswith(".parquet") else \
                    RunConfig.from_dict(json.loads((folder / name).read_text()))
            except Exception as e:
                raise ValueError(f"{name} is unreadable ({type(e).__name__})") from None

    try:
        return checked_record(folder, "manifest.json", CHECKED, readable)
    except ValueError as e:
        raise DamagedRun(f"run {folder}: {e}") from None


class MisfiledRun(DamagedRun):
    """A complete run found under a key that is not its own (a folder copied, synced or renamed
    into another run's place): served under that key it would give another config's numbers."""


def load(folder: Path, key: str | None = None) -> RunResult:
    """The stored results of a complete run, verified against the checksums it recorded and
    against the key it is asked for (default: its folder's name): both its manifest and its config
    must be that key's (`MisfiledRun` otherwise; DamagedRun names any other damage)."""
    folder = Path(folder)
    if not is_complete(folder):
        raise DataError(f"{folder} is not a complete run (no 'complete' marker)")
    manifest = verify(folder)
    config = RunConfig.from_dict(json.loads((folder / "config.json").read_text()))
    key = key or folder.name
    if manifest.get("key") != key:
        raise MisfiledRun(f"run {folder}: stored under key {key} but its manifest is run {manifest.get('key')}'s")
    if config.key() != key:
        raise MisfiledRun(f"run {folder}: stored under key {key} but its config is run {config.key()}'s")
    with contextlib.suppress(OSError):  # an older zsg's pickled checkpoint, planted or left: removed unread
        (folder / LEGACY_STATE).unlink(missing_ok=True)
    tables = {t: pd.read_parquet(folder / f"{t}.parquet") for t in TABLES}
    return RunResult(config, folder, manifest, **tables)


def _discard(folder: Path, damage: DamagedRun, log: Callable[[str], None]) -> None:
    """Withdraw a damaged run: the marker first (so it is never served), then its results."""
    log(f"{damage}; removed its results and running it again")
    (folder / "complete").unlink(missing_ok=True)
    for name in [f"{t}.parquet" for t in TABLES] + ["manifest.json"]:
        (folder / name).unlink(missing_ok=True)


def _git_state() -> dict[str, Any]:
    """The commit of zsg's own source checkout, and whether it had uncommitted changes; None for an
    installed zsg (its version is in `_versions`), even inside someone else's repository: git
    looks up through parent folders, so a site-packages inside a user's project would otherwise
    record the user's commit as zsg's."""
    root = Path(__file__).resolve().parents[1]
    unknown = {"git_commit": None, "git_dirty": None}
    if not (root / ".git").exists() or not _is_zsg_project(root / "pyproject.toml"):
        return unknown
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"git_commit": head.stdout.strip() or None, "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return unknown


def _is_zsg_project(pyproject: Path) -> bool:
    import tomllib

    try:
        return tomllib.loads(pyproject.read_text()).get("project", {}).get("name") == "zsg"
    except (OSError, ValueError):
        return False


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("zsg", "torch", "transformers", "accelerate", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def lm_source(config: RunConfig):
    """The LM a run's hidden / gradient features come from: its own model, cut, precision, and
    its lr and batch size for the gradients' warm-up (`features.LMSource`)."""
    return LMSource(config.model, config.train.frozen_layers, config.train.precision, config.split.max_len,
                    config.train.lr, config.train.batch_size)


def arranged_training_list(config: RunConfig, split=None) -> tuple[list, list, dict]:
    """(arranged training records, test records, arrangement summary) of a run."""
    split = split or run_split(config)
    arrangement = arrange_records(split.train, split.test, config.arrangement, config.budget,
                                  config.arrangement_seed, config.embed_text, rounds=config.rounds,
                                  features=config.features, test_view=config.test_view, source=lm_source(config))
    return apply(split.train, arrangement.order), split.test, arrangement.summary()


def adaptive_order(config: RunConfig, arranged: list, split=None) -> Adaptive | None:
    """The order an adaptive method decides while training, over `arranged` (the seeded list it
    permutes), and the held-out tasks' validation instances it watches; None for a static order."""
    if not get_method(config.arrangement).adaptive:
        return None
    validation = (split or run_split(config)).validation
    batch, every, seed = config.train.batch_size, config.adapt_every, config.arrangement_seed
    if config.arrangement == "adaptive-loss":  # nearness as TMA's: MiniLM on the first turn
        encoder = Encoder()
        nearest = nearest_by_task(embed_records(arranged, "first-turn", encoder),
                                  embed_records(validation, "first-turn", encoder), [r.task for r in validation])
        return Adaptive(LossRounds(nearest, batch, every, seed), validation)
    if config.arrangement == "adaptive-gradient":
        return Adaptive(GradientAligned(len(arranged), sorted({r.task for r in validation}), batch, every, seed,
                                        config.adapt_pool), validation, sketch=projected_gradients)
    return Adaptive(Lookahead(len(arranged), batch, config.lookahead_batches, seed), validation)


def stored(config: RunConfig, root: Path | None = None, log: Callable[[str], None] = print) -> RunResult | None:
    """The stored results of `config` if it has run to completion and is intact, else None (never
    trains; a damaged run is reported through `log` and left for `run` to redo)."""
    folder = (root or runs_dir()) / config.key()
    if not is_complete(folder):
        return None
    try:
        return load(folder)
    except DamagedRun as e:
        log(f"{e}; not served (run it again to redo it)")
        return None


def run(config: RunConfig, log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None,
        root: Path | None = None, checkpoint_every: int | None = None) -> RunResult:
    """The results of `config`: read back if complete and intact (`RunResult.from_store` is then
    True), else trained (resuming if interrupted; a damaged run is redone from scratch).
    `checkpoint_every`: steps between checkpoints (default `train.checkpoint_interval`).

    A run that cannot be trained (an unknown model, too many frozen layers, a TMA budget larger
    than the pool, a disk without room for it) is refused before anything is written: no folder,
    no lock file is left behind for it."""
    root = root or runs_dir()
    folder = root / config.key()
    state = process_state()
    if is_complete(folder):
        try:
            return replace(load(folder), from_store=True)
        except DamagedRun:
            pass  # redone below, under the lock
    work = _prepare(config, root)  # every refusal happens here, before the folder or its lock exists
    lock = file_lock(folder) if state.is_main_process else contextlib.nullcontext()
    with lock:
        if is_complete(folder):  # finished by another process while we waited, or damaged
            try:
                return replace(load(folder), from_store=True)
            except DamagedRun as e:
                if state.is_main_process:  # the others train along with it
                    _discard(folder, e, log)
        return _train_and_store(config, folder, state, work, log, on_step, checkpoint_every)


@dataclass
class _Prepared:
    """What a run trains on, made and checked before its folder is created."""
    arranged: list
    test: list
    summary: dict
    lm: Any  # model.TunedLM
    started: datetime.datetime  # when preparing began: a run's wall time counts arranging and loading too
    t0: float
    texts_embedded: int  # texts arranging had to embed (not cached yet)
    features_seconds: dict  # kind -> seconds arranging spent computing the LM's features (not cached yet)
    adaptive: Adaptive | None = None  # an order decided while training, over `arranged`


def _prepare(config: RunConfig, root: Path) -> _Prepared:
    """Arrange the training list, load the model and check that the run fits its schedule and the
    disk: everything that can refuse a run, done before anything of it is written."""
    started, t0, encoded = datetime.datetime.now(datetime.timezone.utc), time.perf_counter(), texts_encoded()
    computing = seconds_computing()
    arranged, test, summary = arranged_training_list(config)
    adaptive = adaptive_order(config, arranged)
    encoded = texts_encoded() - encoded  # a split's first run embeds its texts; the others read them
    # the first run of a split that measures similarity on the LM's features computes them
    features = {k: round(v - computing.get(k, 0.0), 2) for k, v in seconds_computing().items() if v > computing.get(k, 0.0)}
    lm = TunedLM(config.model, config.train.frozen_layers, config.split.max_len, seed=config.train.seed,
                 autocast=config.train.precision == "bf16")
    steps, _, eval_steps = step_plan(len(arranged), config.train, _world_size())
    _check_free_space(root, _expected_bytes(lm, steps, config.train.batch_size, len(eval_steps), len(test)))
    return _Prepared(arranged, test, summary, lm, started, t0, encoded, features, adaptive)


def _world_size() -> int:
    """How many training processes share a run (torchrun / accelerate launch), 1 alone."""
    return process_state().num_processes


TABLE_ROW_BYTES = 200  # a generous upper bound on one row of a run's parquet tables


def _expected_bytes(lm, steps: int, batch_size: int, evaluations: int, n_test: int) -> int:
    """What a run writes to its folder at most: a checkpoint (the trained weights and AdamW's two
    moments, fp32) and its tables."""
    trained = sum(p.numel() for p in lm.trainable_parameters())
    rows = steps * (1 + batch_size) + evaluations * n_test
    return 3 * 4 * trained + rows * TABLE_ROW_BYTES


def _check_free_space(root: Path, needed: int) -> None:
    """Refuse a run the disk under `root` has no room for, before training (a full disk found when
    the results are written would lose the whole training)."""
    probe = root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DataError(f"{root}: not enough free space for a run (needs about {needed / 1e6:.0f} MB, "
                        f"{free / 1e6:.0f} MB free); free some space or set ZSG_RUNS to another disk")


def _train_and_store(config: RunConfig, folder: Path, state, work: _Prepared, log, on_step,
                     checkpoint_every: int | None) -> RunResult:

    main = state.is_main_process
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / "config.json") as f:
            json.dump(config.to_dict(), f, indent=1)
    started, t0, lm = work.started, work.t0, work.lm
    prepare_seconds = time.perf_counter() - t0  # arranging (embedding a new split's texts) and loading the model
    result = train(lm, work.arranged, work.test, config.train, workdir=folder, log=log, on_step=on_step,
                   checkpoint_every=checkpoint_every, order_seed=config.arrangement_seed, adaptive=work.adaptive)
    if not main:
        state.wait_for_everyone()
        return load(folder)
    for t in TABLES:
        with atomic_file(folder / f"{t}.parquet", "wb") as f:
            getattr(result, t).to_parquet(f, index=False)
    manifest = {"key": config.key(), "run_version": RUN_VERSION, "versions": _versions(), **_git_state(),
                "started": started.isoformat(timespec="seconds"),
                "ended": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "wall_seconds": round(time.perf_counter() - t0, 2), "prepare_seconds": round(prepare_seconds, 2),
                "texts_embedded": work.texts_embedded, "features_seconds": work.features_seconds,
                "cpu_count": os.cpu_count(),
                "machine": capability(),  # CPU kind (or GPU), bf16 support, threads: what the timings mean
                "model_fingerprint": lm.fingerprint, "arrangement": work.summary,
                "train_instances": len(work.arranged), **{k: v for k, v in result.stats.items()}}
    manifest["files"] = file_digests(folder, CHECKED)
    with atomic_file(folder / "manifest.json") as f:
        json.dump(manifest, f, indent=1)
    with atomic_file(folder / "complete") as f:
        f.write(manifest["ended"] + "\n")
    shutil.rmtree(folder / STATE, ignore_errors=True)
    state.wait_for_everyone()
    log(f"run {config.key()} complete: {folder}")
    return load(folder)
