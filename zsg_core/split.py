"""The experimental split, as in the paper (paper.md section 3): held-out tasks never seen in training.

1. The pool: generative tasks of Natural Instructions v1 and BIG-bench, with at most
   `max_tasks_per_family` tasks from any one BIG-bench family (list_functions and
   mult_data_wrangling have ~250 near-identical subtasks each and would otherwise dominate).
2. Per task, a seeded sample of instances that fit in `max_len` tokens of the model's tokenizer:
   instances are visited in a seeded random order and too-long ones are dropped and counted.
3. A seeded partition of the usable tasks into training and held-out tasks, stratified by source
   so that both NI v1 and BIG-bench have held-out tasks; <= `train_per_task` instances per
   training task, <= `test_per_task` per held-out task.
4. Training instances whose prompt or full text equals a held-out instance's are removed (the
   BIG-bench families share inputs across subtasks), and `check_disjoint` proves the result.

`held_out="instances"` is the task-free variant (E7's analog): no task is held out; instead
`test_tasks x test_per_task` instances are drawn at random from the whole sampled pool without
regard to their tasks, and every other sampled instance trains. Held-out tasks then do appear in
training (that is the point: it is an instance-level, not a task-level, hold-out).
"""
from __future__ import annotations

import functools
import hashlib
import json
import random
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .assets import TINY_MODELS, asset_path, load_tokenizer
from .data import (
    DataError,
    Record,
    from_known_fields,
    load_bigbench,
    load_jsonl,
    task_family,
    write_jsonl,
)
from .prompt import encoded_length
from .util import (
    atomic_dir,
    atomic_file,
    cache_dir,
    checked_record,
    file_digests,
    file_lock,
    without_late_defaults,
)

SPLIT_VERSION = 4  # bump when the split procedure changes, so cached splits are recomputed
# bump when only the validation draw changes: it names the cached splits that have a validation set,
# so the others (every static run's) are not recomputed
VALIDATION_VERSION = 2
VALIDATION_VISIT = 4  # a held-out task's validation draw visits up to this many times val_per_task instances

SOURCES_ORDER = ("natural_instructions", "bigbench")


@dataclass(frozen=True)
class SplitConfig:
    seed: int = 0
    test_tasks: int = 36  # held-out tasks (the paper: 225 of 1,825, ~12%)
    train_per_task: int = 20  # as the paper (E2, E4, E5)
    test_per_task: int = 5  # as the paper
    max_len: int = 512  # tokens of prompt + response in the paper's format, model tokenizer
    max_tasks_per_family: int = 40  # BIG-bench families only
    family_blocked: bool = False  # hold out whole families: no held-out task has a training sibling
    held_out: str = "tasks"  # "tasks" (the paper's zero-shot split) or "instances" (task-free, E7)
    # Training instances sampled per training task when a larger pool is wanted (TMA, E6): None is
    # train_per_task. Which tasks are usable and what is held out never depend on it (`make_split`).
    pool_per_task: int | None = None
    # Instances per held-out task kept apart from the held-out set, for orders that watch the model
    # on the held-out tasks while it trains (as LESS uses a few target examples); 0: none. Drawn
    # after the held-out instances, so the held-out set is the same with or without them.
    val_per_task: int = field(default=0, metadata={
        "why": "0: a split holds no validation set unless an order reads one (the profiles set it for chapter 9)"})

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "pool_per_task" and v is None:
                continue
            if f.name == "family_blocked":
                if not isinstance(v, bool):
                    raise DataError(f"split parameter family_blocked must be true or false, got {v!r}")
                continue
            if f.name == "held_out":
                if v not in HELD_OUT:
                    raise DataError(f"split parameter held_out must be one of {', '.join(HELD_OUT)}, got {v!r}")
                continue
            if not isinstance(v, int) or isinstance(v, bool):
                raise DataError(f"split parameter {f.name} must be an integer, got {v!r}")
            if f.name not in ("seed", "val_per_task") and v < 1:
                raise DataError(f"split parameter {f.name} must be at least 1, got {v}")
            if f.name == "val_per_task" and v < 0:
                raise DataError(f"split parameter val_per_task must be 0 (none) or more, got {v}")

        if self.pool_per_task is not None and self.pool_per_task < self.train_per_task:
            raise DataError(f"split parameter pool_per_task ({self.pool_per_task}) is smaller than train_per_task "
                            f"({self.train_per_task}): the pool holds the training list")
        if self.pool_per_task == self.train_per_task:  # the same split: one identity, one cache entry
            object.__setattr__(self, "pool_per_task", None)
        if self.pool_per_task is not None and self.held_out == "instances":
            raise DataError("split parameters pool_per_task and held_out='instances' exclude each other: the "
                            "task-free hold-out draws from the training instances themselves")
        if self.held_out == "instances" and self.val_per_task:
            raise DataError("split parameters held_out='instances' and val_per_task exclude each other: the "
                            "task-free hold-out has no held-out tasks to keep validation instances of")
        if self.held_out == "instances" and self.family_blocked:
            raise DataError("split parameters held_out='instances' and family_blocked exclude each other: "
                            "an instance-level hold-out keeps every task on the training side")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SplitConfig":
        return from_known_fields(cls, d, "split")

    def identity(self) -> dict[str, Any]:
        """The fields that name this split (cache folders, run keys). Fields added after splits and
        runs were first stored count only when set, so adding one does not orphan the stores."""
        return without_late_defaults(asdict(self), LATE_DEFAULTS)


HELD_OUT = ("tasks", "instances")
LATE_DEFAULTS = {"held_out": "tasks", "pool_per_task": None, "val_per_task": 0}  # field -> default that is left out of `identity`


@dataclass
class Split:
    train: list[Record]
    test: list[Record]
    report: pd.DataFrame  # one row per pool task: side, available, examined, too_long, leak_removed, kept
    config: SplitConfig
    validation: list[Record] = field(default_factory=list)  # `SplitConfig.val_per_task` per held-out task

    def summary(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "train_tasks": len({r.task for r in self.train}),
            "test_tasks": len({r.task for r in self.test}),
            "train_instances": len(self.train),
            "test_instances": len(self.test),
            **({"validation_instances": len(self.validation)} if self.config.val_per_task else {}),
            "dropped_too_long": int(self.report.too_long.sum()),
            "removed_as_leaks": int(self.report.leak_removed.sum()),
        }

    def save(self, folder: Path) -> None:
        """train.jsonl, test.jsonl and the per-task report.csv in `folder`, then `SPLIT_MARKER`: what
        `zsg split --force` may replace later (a folder of the user's never has it)."""
        write_jsonl(self.train, folder / "train.jsonl")
        write_jsonl(self.test, folder / "test.jsonl")
        if self.config.val_per_task:
            write_jsonl(self.validation, folder / VALIDATION_FILE)
        with atomic_file(folder / "report.csv") as f:
            self.report.to_csv(f, index=False)
        with atomic_file(folder / SPLIT_MARKER) as f:
            files = list(SPLIT_FILES) + ([VALIDATION_FILE] if self.config.val_per_task else [])
            json.dump({"written_by": "zsg split", "files": files, "summary": self.summary()}, f, indent=1)


SPLIT_FILES = ("train.jsonl", "test.jsonl", "report.csv")
VALIDATION_FILE = "validation.jsonl"  # written only for a split with validation instances
SPLIT_MARKER = "zsg_split.json"  # in every folder `zsg split` writes


def is_previous_split(folder: Path) -> bool:
    """A folder `zsg split` wrote (it holds `SPLIT_MARKER`): the only kind `--force` replaces into."""
    return (Path(folder) / SPLIT_MARKER).is_file()


def cap_families(records: list[Record], max_tasks_per_family: int) -> list[Record]:
    """Keep the first `max_tasks_per_family` tasks (by name) of each BIG-bench family."""
    tasks_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.source == "bigbench":
            tasks_of[task_family(r.task)].add(r.task)
    dropped = {t for ts in tasks_of.values() for t in sorted(ts)[max_tasks_per_family:]}
    return [r for r in records if r.task not in dropped]


def default_pool(max_tasks_per_family: int = SplitConfig.max_tasks_per_family, root: Path | None = None) -> list[Record]:
    """The default task pool: generative NI v1 + BIG-bench tasks from the prepared bigbench asset.
    Parsed once per process (the slow part of a split): a chapter that builds several splits pays for one."""
    if root is None:

        root = asset_path("bigbench")
    return list(_parsed_pool(Path(root), max_tasks_per_family))


@functools.lru_cache(maxsize=2)
def _parsed_pool(root: Path, max_tasks_per_family: int) -> tuple[Record, ...]:
    return tuple(cap_families(load_bigbench(root), max_tasks_per_family))  # records are frozen: safe to share


def _texts(r: Record) -> tuple[str, str]:
    return r.prompt.strip(), "\n".join(m["content"].strip() for m in r.messages)


def _held_out_texts(test: list[Record]) -> tuple[set[str], set[str]]:
    prompts, full = zip(*map(_texts, test))
    return set(prompts), set(full)


def _repeats(r: Record, held: tuple[set[str], set[str]]) -> bool:
    """Does a training record repeat a held-out prompt or a whole held-out instance?"""
    prompt, full = _texts(r)
    return prompt in held[0] or full in held[1]


def check_disjoint(train: list[Record], test: list[Record], by_family: bool = False, by_task: bool = True) -> None:
    """Raise DataError if any held-out task (with `by_family`, any task family), id or instance
    text also appears on the training side. `by_task=False` (an instance-level hold-out) checks
    ids and texts only."""
    if not test:
        raise DataError("the held-out set is empty")
    if not train:
        raise DataError("the training set is empty")
    if by_task and (shared := sorted({r.task for r in train} & {r.task for r in test})):
        raise DataError(f"{len(shared)} held-out task(s) also in training, e.g. {shared[:3]}")
    if by_family and (shared := sorted({task_family(r.task) for r in train} & {task_family(r.task) for r in test})):
        raise DataError(f"{len(shared)} held-out task famil(ies) also in training, e.g. {shared[:3]}")
    if shared := sorted({r.id for r in train} & {r.id for r in test}):
        raise DataError(f"{len(shared)} id(s) on both sides, e.g. {shared[:3]}")
    held = _held_out_texts(test)
    for r in train:
        if _repeats(r, held):
            prompt = _texts(r)[0]
            raise DataError(f"training instance {r.id!r} (task {r.task!r}) repeats the text of a held-out "
                            f"instance: {prompt[:80]!r}")


EXAMINE_FACTOR = 20  # a task is given up after 20 x k visited instances fill fewer than k slots


def _sample_task(records: list[Record], k: int, max_len: int, tokenizer, rng: random.Random) -> tuple[list[Record], int, int]:
    """Up to k instances that fit in max_len, visited in seeded random order: (kept, examined, too_long).

    At most EXAMINE_FACTOR * k instances are visited, which bounds the tokenizing work on tasks
    whose instances are nearly all too long (a few NI v1 tasks carry 1k-token definitions).
    """
    order = list(range(len(records)))
    rng.shuffle(order)
    kept, examined = [], 0
    for i in order[: EXAMINE_FACTOR * k]:
        if len(kept) == k:
            break
        examined += 1
        if tokenizer is None or encoded_length(records[i], tokenizer) <= max_len:
            kept.append(records[i])
    return kept, examined, examined - len(kept)


def _stratified_test_tasks(tasks: list[str], source_of: dict[str, str], n: int, rng: random.Random,
                           by_family: bool = False) -> set[str]:
    """About n held-out tasks, each source contributing in proportion to its size. With
    `by_family`, whole families are drawn (in seeded order, each taken if it still fits in its
    source's share), so no held-out task keeps a sibling on the training side."""
    groups: dict[str, list[str]] = defaultdict(list)
    for t in sorted(tasks):
        groups[source_of[t]].append(t)
    names = sorted(groups, key=lambda s: (SOURCES_ORDER.index(s) if s in SOURCES_ORDER else 99, s))
    chosen: set[str] = set()
    left = n
    for i, s in enumerate(names):
        share = left if i == len(names) - 1 else round(n * len(groups[s]) / len(tasks))
        share = min(share, len(groups[s]))
        if by_family:
            families: dict[str, list[str]] = defaultdict(list)
            for t in groups[s]:
                families[task_family(t)].append(t)
            picked: list[str] = []
            for fam in rng.sample(sorted(families), len(families)):
                if len(picked) + len(families[fam]) <= share:
                    picked += families[fam]
            chosen |= set(picked)
            left -= len(picked)
        else:
            chosen |= set(rng.sample(groups[s], share))
            left -= share
    return chosen


def _instance_hold_out(sample: dict[str, list[Record]], usable: list[str],
                       config: SplitConfig) -> tuple[list[Record], list[Record]]:
    """(held-out, training candidates) of the task-free variant: `test_tasks x test_per_task`
    instances drawn at random from every task's sample, tasks never consulted in the draw."""
    pool = [r for t in sorted(usable) for r in sample[t][: config.train_per_task]]
    n = config.test_tasks * config.test_per_task
    if n >= len(pool):
        raise DataError(f"held_out='instances' asks for {n} held-out instances from a pool of {len(pool)}")
    chosen = set(random.Random(f"{config.seed}:instances").sample(range(len(pool)), n))
    return [pool[i] for i in sorted(chosen)], [r for i, r in enumerate(pool) if i not in chosen]


def make_split(records: list[Record], config: SplitConfig = SplitConfig(), tokenizer=None) -> Split:
    """Partition tasks into training and held-out, sample instances, filter by length, prove no leak.

    Without a tokenizer no length filter is applied (the report says so by too_long = 0).
    """
    if not records:
        raise DataError("the task pool is empty")
    by_task: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_task[r.task].append(r)
    k = max(config.train_per_task, config.test_per_task)
    pool_k = config.pool_per_task or config.train_per_task
    rows, sample, pooled = [], {}, {}
    for task in sorted(by_task):
        # One generator per task, seeded by (seed, task): a task's sample does not depend on
        # which other tasks are in the pool. Which tasks are usable and which instances are held
        # out are decided on the first k slots alone: a larger pool visits more instances, and
        # could otherwise find a usable instance where k slots found none and so move the held-out set.
        kept, examined, too_long = _sample_task(by_task[task], k, config.max_len, tokenizer,
                                                random.Random(f"{config.seed}:{task}"))
        sample[task] = kept
        pooled[task] = kept if pool_k <= k else \
            _sample_task(by_task[task], pool_k, config.max_len, tokenizer, random.Random(f"{config.seed}:{task}"))[0]
        rows.append({"task": task, "family": task_family(task), "source": by_task[task][0].source or "",
                     "available": len(by_task[task]), "examined": examined, "too_long": too_long})
    usable = [t for t in sample if sample[t]]
    if config.held_out == "tasks" and config.test_tasks >= len(usable):
        raise DataError(f"test_tasks={config.test_tasks} leaves no training task: only {len(usable)} tasks "
                        f"have instances within max_len={config.max_len}")
    if config.held_out == "instances":
        test, candidates = _instance_hold_out(sample, usable, config)
        test_tasks: set[str] = set()
    else:
        source_of = {row["task"]: row["source"] for row in rows}
        test_tasks = _stratified_test_tasks(usable, source_of, config.test_tasks, random.Random(config.seed),
                                            config.family_blocked)
        test = [r for t in sorted(test_tasks) for r in sample[t][: config.test_per_task]]
        candidates = [r for t in sorted(set(usable) - test_tasks) for r in pooled[t][:pool_k]]
    held = _held_out_texts(test)
    train, removed = [], defaultdict(int)
    for r in candidates:
        if _repeats(r, held):
            removed[r.task] += 1
        else:
            train.append(r)
    validation = _validation(by_task, sorted(test_tasks), test, train, config, tokenizer) if config.val_per_task else []
    check_disjoint(train, test, by_family=config.family_blocked, by_task=config.held_out == "tasks")
    if validation:
        check_disjoint(train, validation, by_family=config.family_blocked, by_task=True)
    kept_count, tested = defaultdict(int), {r.task for r in test}
    for r in train + test:
        kept_count[r.task] += 1
    for row in rows:
        t = row["task"]
        if config.held_out == "instances":
            row["side"] = ("train+test" if t in tested else "train") if sample[t] else "unused"
        else:
            row["side"] = "test" if t in test_tasks else ("train" if sample[t] else "unused")
        row["leak_removed"] = removed[t]
        row["kept"] = kept_count[t]
    return Split(train, test, pd.DataFrame(rows), config, validation)


def _validation(by_task: dict[str, list[Record]], test_tasks: list[str], test: list[Record], train: list[Record],
                config: SplitConfig, tokenizer) -> list[Record]:
    """Up to `val_per_task` instances of each held-out task: the task's next instances in the same
    seeded visit order that drew its held-out ones (`_sample_task`), so they come after them and
    neither the held-out set nor the training list moves. An instance that repeats the prompt or
    the text of a held-out or a training instance is passed over (BIG-bench tasks repeat texts
    across tasks), and so is one beyond the first `VALIDATION_VISIT` times `val_per_task` the visit
    reaches: a task left with fewer has fewer."""
    tested = {r.id for r in test}
    held, seen = _held_out_texts(test), _held_out_texts(train)
    out = []
    for task in test_tasks:
        more, _, _ = _sample_task(by_task[task], config.test_per_task + VALIDATION_VISIT * config.val_per_task,
                                  config.max_len, tokenizer, random.Random(f"{config.seed}:{task}"))
        out += [r for r in more if r.id not in tested and not _repeats(r, held) and not _repeats(r, seen)][
            : config.val_per_task]
    return out


def _cached_folder(config: SplitConfig, model: str) -> tuple[Path, str]:
    """Where a split is cached, and the tokenizer that measures it (tiny models share SmolLM2's)."""
    tokens_of = "smollm2-135m" if model in TINY_MODELS else model
    named = {"config": config.identity(), "model": tokens_of, "version": SPLIT_VERSION}
    if config.val_per_task:
        named["validation"] = VALIDATION_VERSION
    key = json.dumps(named, sort_keys=True)
    return cache_dir() / "splits" / hashlib.sha1(key.encode()).hexdigest()[:16], tokens_of


def is_cached(config: SplitConfig, model: str = "smollm2-135m") -> bool:
    """Whether `load_split` would read the split back instead of computing it."""
    return (_cached_folder(config, model)[0] / "summary.json").exists()


def load_split(config: SplitConfig = SplitConfig(), model: str = "smollm2-135m",
               log: Callable[[str], None] = print) -> Split:
    """The split of the default pool, measured with `model`'s tokenizer, cached on disk.

    Computing it parses the whole bigbench sdist (`default_pool`); the cached copy loads far faster.
    The cached files' sha256 are recorded in its summary.json: a damaged copy is named through
    `log`, removed and computed again.
    """
    folder, tokens_of = _cached_folder(config, model)
    names = list(SPLIT_FILES) + ([VALIDATION_FILE] if config.val_per_task else [])
    with file_lock(folder):  # two notebooks asking at once compute it once
        if (folder / "summary.json").exists():
            try:
                checked_record(folder, "summary.json", names, readable=lambda: None)  # the load below reads them
                return Split(load_jsonl(folder / "train.jsonl"), load_jsonl(folder / "test.jsonl"),
                             pd.read_csv(folder / "report.csv", keep_default_na=False), config,
                             load_jsonl(folder / VALIDATION_FILE) if config.val_per_task else [])
            except Exception as e:  # damaged: never used
                log(f"cached split {folder} is damaged ({e}); removed it, computing it again")
                shutil.rmtree(folder, ignore_errors=True)
        tokenizer = load_tokenizer(model)
        split = make_split(default_pool(config.max_tasks_per_family), config, tokenizer)
        with atomic_dir(folder) as tmp:
            split.save(tmp)
            summary = {**split.summary(), "model": tokens_of, "files": file_digests(tmp, names)}
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
        return split
