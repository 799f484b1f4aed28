"""Test-centric Multi-turn Arrangement rounds (paper.md E6, Algorithm 1), exact and fast.

The paper's code (convert_flan_data_job.py, select_min / select_max) computes the whole N x M
distance matrix, then per round takes each test column's argmin (argmax), dedupes the picks
(np.unique: within a round they come in ascending training index, not by distance), and sets
the picked rows to a sentinel. That is O(rounds x N x M): fine for a 30k budget (few rounds:
benchmarks/README, arrange-speed), O(N^2 M) when Algorithm 1 arranges the whole pool as written.

Here the same rounds come from per-test candidate lists. Test j's pick in a round is the first
entry of its list (best score first, ties by lowest index, as argmin/argmax break them) that no
round has removed yet, so a pointer per test replaces the argmin over N. Each list holds every
remaining item whose score is strictly above a per-test threshold theta_j, which a streaming
top-K pass over the pool finds with one chunked N x M product; when a list runs out, the next
items all score <= theta_j and a refill pass over the items still in the pool (for the tests that
ran out, and those about to) finds them. When few items remain, the remaining matrix is small
and is sorted outright. Small problems with few rounds run the paper's own loop (_DirectPicker),
which is fastest there. Identical embeddings (duplicate texts) are scored once per distinct
vector, so their exact ties break by index as in the paper. The result equals the paper's
algorithm round for round (tests/test_arrange.py checks it, ties included; benchmarks/
bench_arrange.py checks it at 20k-1.3M items).
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from .similarity import SimilarityError, check_embeddings, chunk_rows, chunks
from .util import progress_bar

DENSE_ELEMENTS = 1 << 20  # below this many remaining (item, test) pairs, sort the whole matrix
DIRECT_ELEMENTS = 1 << 25  # up to this size (and few rounds), the paper's own loop is fastest


def _candidate_lists(train: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int) -> list[np.ndarray]:
    """For each query row (already signed: higher = picked first), the indices of every item of
    `rows` whose score is above that query's k-th best score, best first, ties by index.

    One streaming pass: a running threshold per query filters each chunk, so only candidates
    (few, after the first chunk) are ever sorted.
    """
    s = len(queries)
    theta = np.full(s, -np.inf, dtype=np.result_type(train.dtype, queries.dtype))
    cand_q, cand_v, cand_i = [], [], []
    buffered = 0
    step = chunk_rows(s)

    def prune() -> None:
        """Raise each query's threshold to the k-th best of its candidates; drop those at or below."""
        nonlocal cand_q, cand_v, cand_i, buffered
        q, v, i = np.concatenate(cand_q), np.concatenate(cand_v), np.concatenate(cand_i)
        counts = np.bincount(q, minlength=s)
        full = counts >= k
        if full.any():  # the k-th best per query: a partition of a padded (query x candidate) matrix
            by_query = np.argsort(q, kind="stable")
            qs = q[by_query]
            pos = np.arange(len(qs)) - np.searchsorted(qs, np.arange(s))[qs]
            padded = np.full((s, counts.max()), -np.inf, dtype=v.dtype)
            padded[qs, pos] = v[by_query]
            kth = np.partition(padded, padded.shape[1] - k, axis=1)[:, padded.shape[1] - k]
            theta[full] = np.maximum(theta[full], kth[full])
        keep = v > theta[q]
        cand_q, cand_v, cand_i = [q[keep]], [v[keep]], [i[keep]]
        buffered = int(keep.sum())

    contiguous = len(rows) > 0 and rows[-1] - rows[0] == len(rows) - 1  # slices, not gathered copies
    for lo in range(0, len(rows), step):
        idx = rows[lo: lo + step]
        block = train[idx[0]: idx[-1] + 1] if contiguous else train[idx]
        sc = queries @ block.T
        if lo == 0 and len(idx) >= k:  # seed the thresholds: the k-th best of a sample of the chunk
            sample = sc[:, : min(len(idx), max(16 * k, 4096))]
            theta = np.partition(sample, sample.shape[1] - k, axis=1)[:, sample.shape[1] - k]
            theta = np.nextafter(theta, theta.dtype.type(-np.inf))  # keep the k-th itself
        flat = np.flatnonzero(sc > theta[:, None])  # much faster than a 2-D np.nonzero
        qq, cc = np.divmod(flat, sc.shape[1])
        cand_q.append(qq.astype(np.int32))  # int32 halves the candidate buffers
        cand_v.append(sc[qq, cc])
        cand_i.append(idx[cc])
        buffered += len(qq)
        if buffered > 2 * s * k:
            prune()
    prune()
    q, v, i = cand_q[0], cand_v[0], cand_i[0]
    order = np.lexsort((i, -v, q))  # per query: best first, ties by index
    q, i = q[order], i[order]
    bounds = np.searchsorted(q, np.arange(s + 1))
    return [i[bounds[j]: bounds[j + 1]] for j in range(s)]


def _top_group(train: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Every remaining item tied at the best score for one query, by index (a >= k-way tie)."""
    sc = np.concatenate([train[rows[s]] @ query for s in chunks(len(rows), 1)])
    return rows[sc == sc.max()]


def _sorted_lists(train: np.ndarray, rows: np.ndarray, queries: np.ndarray) -> list[np.ndarray]:
    """Complete lists: every remaining item for every query, best first, ties by index."""
    sc = queries @ train[rows].T
    order = np.argsort(-sc, axis=1, kind="stable")
    return list(rows[order])


class _Pointers:
    """Per-test candidate lists as one padded array (sentinel n = list end) and a pointer each."""
    def __init__(self, n: int, m: int):
        self.n = n
        self.dtype = np.int32 if n < 2**31 - 1 else np.int64  # halves the lists' memory
        self.lists = np.full((m, 1), n, dtype=self.dtype)
        self.ptr = np.zeros(m, dtype=np.int64)

    def set(self, tests: np.ndarray, new: list[np.ndarray]) -> None:
        width = max(max((len(x) for x in new), default=0) + 1, self.lists.shape[1])
        if width > self.lists.shape[1]:
            grown = np.full((len(self.lists), width), self.n, dtype=self.dtype)
            grown[:, : self.lists.shape[1]] = self.lists
            self.lists = grown
        for t, lst in zip(tests, new):
            self.lists[t] = self.n
            self.lists[t, : len(lst)] = lst
            self.ptr[t] = 0

    def current(self, removed: np.ndarray) -> np.ndarray:
        """Advance every pointer past removed items; return each test's current item (n = none)."""
        rows = np.arange(len(self.lists))
        cur = self.lists[rows, self.ptr]
        for _ in range(8):  # most pointers move a step or two; a few stragglers are searched below
            dead = removed[cur]
            if not dead.any():
                return cur
            self.ptr[dead] += 1
            cur[dead] = self.lists[rows[dead], self.ptr[dead]]
        for t in np.flatnonzero(removed[cur]):
            ahead = ~removed[self.lists[t, self.ptr[t]:]]  # the sentinel is never removed
            self.ptr[t] += int(ahead.argmax())
            cur[t] = self.lists[t, self.ptr[t]]
        return cur

    def remaining(self, removed: np.ndarray) -> np.ndarray:
        """How many live entries each list still holds ahead of its pointer."""
        live = ~removed[self.lists] & (self.lists != self.n)
        live &= np.arange(self.lists.shape[1])[None, :] >= self.ptr[:, None]
        return live.sum(axis=1)


def _by_first_occurrence(first: np.ndarray, inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique's groups renumbered in order of first occurrence: (first row of each, group of each row)."""
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return np.sort(first), rank[inverse.ravel()]


def _duplicate_groups(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group identical rows: (representative row of each group, ascending by first occurrence;
    all row indices ordered by group, then index; start of each group in that order).

    Identical embeddings (duplicate texts are common in instruction data) tie exactly under the
    paper's single matrix product, and argmin then takes the lowest index. Separate chunked
    products can give identical rows scores an ulp apart, so ties are made exact by scoring each
    distinct vector once. Rows are grouped by a 64-bit hash of their first 128 bytes, and every
    grouped row is then compared in full with its group's first row.
    """
    raw = np.ascontiguousarray(x)
    words = raw.view(np.uint8).reshape(len(raw), -1)[:, :128]  # a 128-byte prefix is plenty to hash
    pad = (-words.shape[1]) % 8
    words = np.pad(words, ((0, 0), (0, pad))) if pad else words
    mult = np.random.default_rng(0).integers(1, 2**63, size=words.shape[1] // 8, dtype=np.uint64) | np.uint64(1)
    h = np.zeros(len(raw), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for s in chunks(len(raw), len(mult)):
            h[s] = (np.ascontiguousarray(words[s]).view(np.uint64) * mult).sum(axis=1)
    reps, group = _by_first_occurrence(*np.unique(h, return_index=True, return_inverse=True)[1:])
    copies = np.flatnonzero(reps[group] != np.arange(len(raw)))  # rows grouped under another row
    if len(copies) and not np.array_equal(raw[reps[group[copies]]], raw[copies]):  # a hash collision
        reps, group = _by_first_occurrence(*np.unique(raw, axis=0, return_index=True, return_inverse=True)[1:])
    order = np.argsort(group, kind="stable")
    start = np.searchsorted(group[order], np.arange(len(reps) + 1))
    return reps, order, start


def tma_rounds(train: np.ndarray, test: np.ndarray, direction: Literal["min", "max"] = "min",
               budget: int | None = None) -> list[list[int]]:
    """Algorithm 1: rounds of each test instance's nearest ("min") or farthest ("max") remaining
    training instance, deduplicated, each round in ascending training index (the code's np.unique).

    `budget=None` arranges the whole pool, as Algorithm 1 is written. With a budget, rounds stop
    once at least `budget` items are picked and the last round is kept whole, as select_min /
    select_max do (so the total may exceed the budget by less than one round).
    """
    train, test = check_embeddings(train, test)
    n, m = len(train), len(test)
    if direction not in ("min", "max"):
        raise SimilarityError(f"unknown TMA direction {direction!r}; use 'min' or 'max'")
    if budget is not None:
        if not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < 1:
            raise SimilarityError(f"budget must be a positive integer or None, got {budget!r}")
        if budget > n:
            raise SimilarityError(f"budget {budget} is larger than the training pool ({n} instances)")
    target = n if budget is None else int(budget)
    reps, members, start = _duplicate_groups(train)
    vectors = train if len(reps) == n else train[reps]  # one row per distinct vector
    # `consumed` counts the copies of each distinct vector already picked
    copies = np.diff(start)
    consumed = np.zeros(len(reps), dtype=np.int64)
    n = len(reps)  # from here on, items are distinct vectors
    queries = test if direction == "min" else -test  # signed: the highest score is picked
    picker = (_DirectPicker if n * m <= DIRECT_ELEMENTS and n <= 32 * m else _ListPicker)(vectors, queries, target)
    rounds: list[list[int]] = []
    picked = 0
    bar = progress_bar(target, f"TMA {direction} rounds")
    while picked < target:
        cur = picker.current()
        if cur is None:  # the pool is empty
            break
        picks = np.unique(cur)
        rounds.append(np.sort(members[start[picks] + consumed[picks]]).tolist())  # lowest unused copy
        consumed[picks] += 1
        picker.remove(picks[consumed[picks] == copies[picks]])
        picked += len(picks)
        if bar is not None:
            bar.update(len(picks))
    if bar is not None:
        bar.close()
    return rounds


def first_rounds(rounds: Sequence[Sequence[int]], budget: int) -> list[list[int]]:
    """What `tma_rounds(..., budget)` returns, cut from the whole pool's rounds: Algorithm 1 never
    looks ahead, so a budgeted run is a prefix of the full one, up to the round that reaches
    `budget` (kept whole)."""
    out, picked = [], 0
    for r in rounds:
        if picked >= budget:
            break
        out.append(list(r))
        picked += len(r)
    return out


class _DirectPicker:
    """The paper's own loop, for small problems with few rounds: the whole score matrix, one
    argmax per test per round (first index on ties, like the code's argmin)."""
    def __init__(self, vectors: np.ndarray, queries: np.ndarray, target: int):
        self.scores = queries @ vectors.T  # m x n: each test's row is contiguous
        self.left = len(vectors)

    def current(self) -> np.ndarray | None:
        return self.scores.argmax(axis=1) if self.left else None

    def remove(self, items: np.ndarray) -> None:
        self.scores[:, items] = -np.inf
        self.left -= len(items)


class _ListPicker:
    """Candidate lists with pointers, refilled from the remaining pool when they run out."""
    def __init__(self, vectors: np.ndarray, queries: np.ndarray, target: int):
        n, m = len(vectors), len(queries)
        self.vectors, self.queries, self.n = vectors, queries, n
        self.removed = np.zeros(n + 1, dtype=bool)  # index n is the list-end sentinel, never removed
        self.pointers = _Pointers(n, m)
        self.k = min(n, max(32, 2 * -(-target // m) + 16))  # enough for the expected rounds
        self.pointers.set(np.arange(m), _candidate_lists(vectors, np.arange(n), queries, self.k))

    def current(self) -> np.ndarray | None:
        while True:
            cur = self.pointers.current(self.removed)
            out = cur == self.n
            if not out.any():
                return cur
            alive = np.flatnonzero(~self.removed[: self.n])
            if len(alive) == 0:
                return None
            if len(alive) * len(self.queries) <= DENSE_ELEMENTS:  # small now: sort it all, once
                self.pointers.set(np.arange(len(self.queries)), _sorted_lists(self.vectors, alive, self.queries))
                continue
            # refill the lists that ran out and those about to: twice as deep, but never much deeper
            # than the rounds left can use (~len(alive)/m rounds), which bounds the lists' memory
            self.k = min(len(alive), 2 * self.k, max(64, 4 * -(-len(alive) // len(self.queries))))
            tests = np.flatnonzero(out | (self.pointers.remaining(self.removed) < max(1, self.k // 8)))
            new = _candidate_lists(self.vectors, alive, self.queries[tests], self.k)
            for j, (t, lst) in enumerate(zip(tests, new)):
                if len(lst) == 0:  # a k-way tie at the top: take the whole tied group
                    new[j] = _top_group(self.vectors, alive, self.queries[t])
            self.pointers.set(tests, new)

    def remove(self, items: np.ndarray) -> None:
        self.removed[items] = True
