"""Arranged data out: the training records in their new order, written as `zsg arrange` writes them.

    arrangement = arrange_records(train, test, "tma-nft", tma_budget=30000)
    write_arranged(train, arrangement, "arranged.jsonl")       # or fmt="hf": a `save_to_disk` folder

    arrange_file("train.jsonl", "test.jsonl", "arranged.jsonl", "nft")   # load, check, arrange, write

Each row is the record (`Record.to_dict`) plus `order` (its position in training) and, for TMA,
`round_direction` and `round` (the round that picked it). The file is written atomically: it
appears whole or not at all, and an existing one is replaced only with `force`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .arrange import Arrangement, arrange_records
from .data import DataError, Record, load_records, write_jsonl

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


def _check_out(out: Path, fmt: str, force: bool) -> None:
    if fmt not in FORMATS:
        raise DataError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if out.exists() and not force:
        raise DataError(f"{out} exists; set force to overwrite it")


def write_arranged(train: Sequence[Record], arrangement: Arrangement, out: str | Path, fmt: str = "jsonl",
                   force: bool = False) -> Path:
    """Write the arranged records to `out`: JSON Lines, or with fmt="hf" a Hugging Face
    `save_to_disk` folder. Returns `out`."""
    from .util import atomic_dir

    out = Path(out)
    _check_out(out, fmt, force)
    rows = arranged_rows(train, arrangement)
    if fmt == "hf":
        import datasets

        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_dir(out) as tmp:
            datasets.Dataset.from_list([{k: r.get(k) for k in keys} for r in rows]).save_to_disk(str(tmp))
    else:
        write_jsonl(rows, out)
    return out


def arrange_file(train: str | Path, test: str | Path, out: str | Path, method: str, tma_budget: int | None = None,
                 arrangement_seed: int = 0, rounds: tuple[int, int] | None = None, embed_text: str | None = None,
                 fmt: str = "jsonl", allow_overlap: bool = False, force: bool = False) -> Arrangement:
    """Load any supported training and test files, refuse a test set that is not unseen (shared
    tasks, ids or texts) unless `allow_overlap`, arrange with `method` and write `out`."""
    from .split import check_disjoint

    _check_out(Path(out), fmt, force)  # before any work
    train_records, test_records = load_records(train), load_records(test)
    if not allow_overlap:
        try:
            check_disjoint(train_records, test_records)
        except DataError as e:
            raise DataError(f"{e}. The test set must be unseen; set allow_overlap to arrange anyway") from None
    arrangement = arrange_records(train_records, test_records, method, tma_budget, arrangement_seed, embed_text,
                                  rounds=rounds)
    write_arranged(train_records, arrangement, out, fmt, force)
    return arrangement
