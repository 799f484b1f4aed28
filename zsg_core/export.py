"""Arranged data out: the training records in their new order, written as `zsg arrange` writes them.

    arrangement = arrange_records(train, test, "tma-nft", tma_budget=30000)
    write_arranged(train, arrangement, "arranged.jsonl")       # or fmt="hf": a `save_to_disk` folder

    arrange_file("train.jsonl", "test.jsonl", "arranged.jsonl", "nft")   # load, check, arrange, write

Each row is the record (`Record.to_dict`) plus `order` (its position in training) and, for TMA,
`round_direction` and `round` (the round that picked it). The output is written atomically: it
appears whole or not at all. An existing one is replaced only with `force`, and only if it is a
previous output of the same kind (a JSONL file; a folder zsg wrote, marked by `HF_MARKER`), so a
mistyped `--out` never deletes anything the user made.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from .arrange import Arrangement, arrange_records, get_method
from .data import DataError, Record, load_records, write_jsonl
from .split import check_disjoint
from .util import atomic_dir

FORMATS = ("jsonl", "hf")


def arranged_rows(train: Sequence[Record], arrangement: Arrangement) -> list[dict]:
    """The records of `train` in the arranged order, each with its `order` (and TMA round)."""
    rows = []
    for position, i in enumerate(arrangement.order):
        row = train[i].to_dict() | {"order": position}
        if arrangement.rounds is not None:
            row["round_direction"], row["round"] = arrangement.rounds[i]
        rows.append(row)
    return rows


HF_MARKER = "zsg_arranged.json"  # inside every HF folder zsg writes: what `force` may replace

# What a previous output of each kind looks like: the only thing `force` may replace.
_PREVIOUS = {
    "jsonl": ("a JSON Lines file", lambda p: p.is_file() and _is_jsonl(p)),
    "hf": (f"a dataset folder written by zsg (no {HF_MARKER})", lambda p: p.is_dir() and (p / HF_MARKER).is_file()),
    "npy": ("a .npy array file", lambda p: p.is_file() and _starts_with(p, b"\x93NUMPY")),  # `zsg embed`
}


def check_out(out: str | Path, kind: str = "jsonl", force: bool = False, inputs: Sequence[str | Path] = ()) -> Path:
    """Refuse, before any work, an output that cannot or must not be written: one of the `inputs`,
    an existing path without `force`, with `force` anything but a previous output of the same
    `kind` (jsonl, hf, npy), or a folder this process cannot write in."""
    out = Path(out)
    if kind not in _PREVIOUS:
        raise DataError(f"unknown output kind {kind!r}; choose one of {', '.join(_PREVIOUS)}")
    for given in inputs:
        if out.exists() and Path(given).exists() and os.path.samefile(out, given):
            raise DataError(f"{out}: the output would overwrite the input {given}; choose another output")
    if out.exists():
        if not force:
            raise DataError(f"{out} exists; pass --force (force=True) to overwrite it")
        what, is_previous = _PREVIOUS[kind]
        if not is_previous(out):
            raise DataError(f"{out} is not {what}; force replaces only a previous output of that kind, never "
                            "anything else. Choose another output, or remove it yourself")
    check_writable(out)
    return out


def check_writable(out: str | Path) -> None:
    """Refuse an output whose folder (or nearest existing ancestor) this process cannot write in,
    before the work that would produce it."""
    folder = Path(out).resolve().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise DataError(f"{out}: cannot write in {folder} (a file, not a folder)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"{out}: cannot write in {folder} (permission denied)")


def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise DataError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


def _is_jsonl(path: Path) -> bool:
    """Empty, or its first non-blank line is a JSON object: what a JSONL output looks like."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    return isinstance(json.loads(line), dict)
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, or nested past reading: not ours
        return False
    return True


def write_arranged(train: Sequence[Record], arrangement: Arrangement, out: str | Path, fmt: str = "jsonl",
                   force: bool = False) -> Path:
    """Write the arranged records to `out`: JSON Lines, or with fmt="hf" a Hugging Face
    `save_to_disk` folder. Returns `out`. With `force`, a previous output of the same kind is
    replaced atomically (readers see the old one or the new one); nothing else is ever replaced."""
    out = check_out(out, _format(fmt), force)
    rows = arranged_rows(train, arrangement)
    if fmt == "hf":
        import datasets

        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_dir(out) as tmp:
            datasets.Dataset.from_list([{k: r.get(k) for k in keys} for r in rows]).save_to_disk(str(tmp))
            (tmp / HF_MARKER).write_text(json.dumps(arrangement.summary(), indent=1))
    else:
        write_jsonl(rows, out)
    return out


def arrange_file(train: str | Path, test: str | Path, out: str | Path, method: str, tma_budget: int | None = None,
                 arrangement_seed: int = 0, rounds: tuple[int, int] | None = None, embed_text: str | None = None,
                 fmt: str = "jsonl", allow_overlap: bool = False, force: bool = False,
                 processes: int = 1, features: str = "minilm", test_view: str = "with-answer",
                 source=None, embed_precision: str = "fp32") -> Arrangement:
    """Load any supported training and test files, refuse a test set that is not unseen (shared
    tasks, ids or texts) unless `allow_overlap`, arrange with `method` and write `out`;
    `processes` encoders embed the texts in `embed_precision` (`embed.Encoder`); `features`, `test_view` and `source`
    (a `features.LMSource` for hidden / gradient) as in `arrange.arrange_records`."""
    if get_method(method).adaptive:  # before any work: there is no list to write
        raise DataError(f"{method} is decided while training, from the model's own signals, so there is no list to "
                        f"write: train with `zsg train --arrangement {method}`, or plug zsg_core.adaptive.BatchSampler "
                        "into your trainer (README, \"Orders that watch the model\")")
    check_out(out, _format(fmt), force, inputs=(train, test))  # before any work
    train_records, test_records = load_records(train), load_records(test)
    if not allow_overlap:
        try:
            check_disjoint(train_records, test_records)
        except DataError as e:
            raise DataError(f"{e}. The test set must be unseen; pass --allow-overlap (allow_overlap=True) to arrange "
                            "anyway") from None
    arrangement = arrange_records(train_records, test_records, method, tma_budget, arrangement_seed, embed_text,
                                  rounds=rounds, processes=processes, features=features, test_view=test_view,
                                  source=source, embed_precision=embed_precision)
    write_arranged(train_records, arrangement, out, fmt, force)
    return arrangement
