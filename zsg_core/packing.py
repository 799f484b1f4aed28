"""Packing: the items of a step, an evaluation row or a cache row laid end to end in one row.

Every matmul then sees a row of many items' tokens instead of one short item's. Each item keeps
its own positions (0, 1, ...) and attention runs item by item (`attention.packed_attention`), so
there is no padding and no item sees another. A step still consumes exactly the items [kB, (k+1)B) of the
arranged list; only the layout of the matmul changes (tests check the targets each forward got).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .prompt import IGNORE

# Tokens per packed row in evaluation and the frozen cache: longer rows gain nothing once the
# matmuls are large, and the per-item attention grows with the row (benchmarks/bench_cache.py).
PACK_TOKENS = 2048


@dataclass(frozen=True)
class Item:
    """One encoded instance: its position in the list it came from, ids, labels, and cache key."""
    index: int
    id: str
    ids: torch.Tensor
    labels: torch.Tensor
    key: str

    @property
    def targets(self) -> torch.Tensor:
        """The label each position predicts (the next token's), IGNORE at the last position."""
        return torch.cat([self.labels[1:], self.labels.new_full((1,), IGNORE)])


MIN_SHARED_PREFIX = 16  # tokens; shorter common prefixes are not worth a span of their own


@dataclass(frozen=True)
class Pack:
    """Items laid end to end in one row: the arguments of one `ResponseLoss` forward.

    Items that begin with the same tokens (instances of one task share its definition, a large share
    of a split's tokens) share one copy of that prefix: it is computed once
    and each item's own tokens attend to it. The prefix stops before the first position that
    predicts a label, so every loss term still comes from an item's own tokens."""
    inputs: torch.Tensor     # (1, T) token ids, or (1, T, hidden) frozen-bottom outputs
    positions: torch.Tensor  # (1, T): each token's position within its own item
    targets: torch.Tensor    # (T,): the label each position predicts, IGNORE where none
    segments: torch.Tensor   # (T,): which item each position's loss belongs to
    spans: list[tuple[int, int, int, int]]  # attention: (start, end, prefix_start, prefix_end)
    placed: list[tuple[int, int, int, int]]  # item i = row[prefix_start:prefix_end] + row[start:end]

    def args(self) -> tuple:
        return self.inputs, self.positions, self.targets, self.segments, self.spans, len(self.placed)

    def item_rows(self, row: torch.Tensor) -> list[torch.Tensor]:
        """Each item's part of a per-position tensor of this row (e.g. hidden states), in item order."""
        return [torch.cat([row[ps:pe], row[s:e]]) for s, e, ps, pe in self.placed]

    @staticmethod
    def item_targets(args: tuple) -> list[tuple[int, ...]]:
        """The targets of each item in a forward's arguments (how tests see what the model got),
        in the order the items were given, whatever the layout."""
        targets, segments, n = args[2], args[3], args[5]
        return [tuple(targets[segments == i].tolist()) for i in range(n)]


def first_label(item: Item) -> int:
    labelled = (item.labels != IGNORE).nonzero(as_tuple=True)[0]
    return int(labelled[0]) if len(labelled) else len(item.ids)


def _shared_prefixes(items: Sequence[Item], share: bool = True) -> list[tuple[int, list[int]]]:
    """Groups of items (indices) with the length of the prefix they share; 0 for an item alone.
    A prefix is shared only if at least `MIN_SHARED_PREFIX` tokens long and it ends before the
    position that predicts any member's first label. `share=False`: every item alone."""
    if not share:
        return [(0, [i]) for i in range(len(items))]
    by_head: dict[tuple[int, ...], list[int]] = {}
    for i, item in enumerate(items):
        head = tuple(item.ids[:MIN_SHARED_PREFIX].tolist()) if len(item.ids) > MIN_SHARED_PREFIX else (i,)
        by_head.setdefault(head, []).append(i)
    groups: list[tuple[int, list[int]]] = []
    for members in by_head.values():
        first = items[members[0]].ids
        shared = min(first_label(items[i]) for i in members) - 1
        for i in members[1:]:
            other = items[i].ids
            n = min(shared, len(other))
            differ = (first[:n] != other[:n]).nonzero(as_tuple=True)[0]
            shared = int(differ[0]) if len(differ) else n
        if len(members) > 1 and shared >= MIN_SHARED_PREFIX:
            groups.append((shared, members))
        else:
            groups += [(0, [i]) for i in members]
    return groups


def lay_out(items: Sequence[Item], inputs: Sequence[torch.Tensor], share_prefixes: bool = True) -> Pack:
    """`items` in one row, with `inputs[i]` the input of item i (its ids, or its cached bottom
    output), on the inputs' device; shared prefixes once (see `Pack`), unless `share_prefixes` is
    False (every position then belongs to one item alone: per-item gradients need that)."""
    device = inputs[0].device
    pieces, positions, targets, segments = [], [], [], []
    spans: list[tuple[int, int, int, int]] = []
    placed: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * len(items)
    cursor = 0

    def put(values: torch.Tensor, first_position: int, item_targets: torch.Tensor, owner: int) -> tuple[int, int]:
        nonlocal cursor
        n = len(values)
        pieces.append(values)
        positions.append(torch.arange(first_position, first_position + n))
        targets.append(item_targets)
        segments.append(torch.full((n,), owner, dtype=torch.long))
        cursor += n
        return cursor - n, cursor

    for shared, members in _shared_prefixes(items, share_prefixes):
        prefix = (cursor, cursor)
        if shared:
            prefix = put(inputs[members[0]][:shared], 0, items[members[0]].targets[:shared], members[0])
            spans.append((*prefix, cursor - shared, cursor - shared))  # the prefix: causal, alone
        for i in members:
            start, end = put(inputs[i][shared:], shared, items[i].targets[shared:], i)
            spans.append((start, end, *prefix))
            placed[i] = (start, end, *prefix)
    return Pack(inputs=torch.cat(pieces)[None], positions=torch.cat(positions)[None].to(device),
                targets=torch.cat(targets).to(device), segments=torch.cat(segments).to(device),
                spans=spans, placed=placed)


def by_prefix(item: Item) -> tuple[int, ...]:
    """A sort key that puts items with a common beginning next to each other."""
    return tuple(item.ids[:64].tolist())


def rows(items: Sequence[Item], tokens: int) -> list[list[Item]]:
    """Consecutive items grouped into rows of at most `tokens` tokens (a longer item: a row alone)."""
    out: list[list[Item]] = []
    width = 0
    for item in items:
        if not out or width + len(item.ids) > tokens:
            out.append([])
            width = 0
        out[-1].append(item)
        width += len(item.ids)
    return out


def padded(pack: Pack, width: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int, int]]]:
    """(token ids, positions, spans) of a packed row of ids filled up to `width` tokens by a span
    of its own (token 0, attended by nothing else; its output is dropped)."""
    fill = width - pack.inputs.shape[1]
    if fill <= 0:
        return pack.inputs, pack.positions, pack.spans
    end = pack.inputs.shape[1]
    inputs = torch.cat([pack.inputs, pack.inputs.new_zeros((1, fill))], 1)
    positions = torch.cat([pack.positions, torch.arange(fill, device=pack.positions.device)[None]], 1)
    return inputs, positions, [*pack.spans, (end, width, end, end)]
