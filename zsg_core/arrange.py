"""Every ordering of the paper, as a list of indices into the training list (paper.md E2-E9, section 5).

Nothing here reorders data in place: each function returns positions, and `apply(records, order)`
builds the arranged list. Where the paper's text and its code differ, the code is followed and
the docstring says so.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from .similarity import SimilarityError, check_embeddings, combine_wsd, min_avg_distance, ot_cost, wsd
from .tma import tma_rounds

__all__ = ["random_order", "round_robin", "cluster", "nft", "fft", "rt", "ot", "coarse", "tma_rounds", "tma",
           "tma_layout", "tma_round_groups", "per_task_select", "apply", "METHODS", "arrange_records"]


def _check_tasks(tasks: Sequence[str], n: int | None = None) -> list[str]:
    tasks = list(tasks)
    if not tasks:
        raise SimilarityError("the training set is empty: nothing to arrange")
    if n is not None and len(tasks) != n:
        raise SimilarityError(f"{len(tasks)} task labels for {n} training embeddings")
    return tasks


def _seeded_shuffle(items: list[int], seed: int) -> list[int]:
    """Python's `random.seed(seed); random.shuffle(x)`, as the paper's split_cluster.py."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def random_order(n: int, seed: int = 0) -> list[int]:
    """E2 "random": a seeded shuffle of 0..n-1."""
    if n < 1:
        raise SimilarityError("the training set is empty: nothing to arrange")
    return _seeded_shuffle(list(range(n)), seed)


def _task_keys(tasks: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each item's task rank (tasks in order of first appearance) and its rank within its task."""
    first: dict[str, int] = {}
    seen: dict[str, int] = {}
    task_rank, within = np.empty(len(tasks), np.int64), np.empty(len(tasks), np.int64)
    for i, t in enumerate(tasks):
        task_rank[i] = first.setdefault(t, len(first))
        within[i] = seen.get(t, 0)
        seen[t] = within[i] + 1
    return task_rank, within


def round_robin(tasks: Sequence[str]) -> list[int]:
    """E2 "round_robin": sweep r takes the r-th instance of every task, tasks in order of first
    appearance (the paper: its fixed train_key_list order), so each batch mixes many tasks."""
    task_rank, within = _task_keys(_check_tasks(tasks))
    return np.lexsort((task_rank, within)).tolist()


def cluster(tasks: Sequence[str]) -> list[int]:
    """E2 "cluster": each task's instances contiguous, tasks in order of first appearance."""
    task_rank, within = _task_keys(_check_tasks(tasks))
    return np.lexsort((within, task_rank)).tolist()


def nft(train: np.ndarray, test: np.ndarray) -> list[int]:
    """E4 nearest-first: ascending Weighted Similarity Distance (w_min = 1, the code's w_avg),
    ties by index (a stable sort)."""
    return _wsd_order(wsd(train, test), "nft")


def fft(train: np.ndarray, test: np.ndarray) -> list[int]:
    """E4 farthest-first: the exact reverse of `nft` (sft_job.py reverses the NFT file)."""
    return _wsd_order(wsd(train, test), "fft")


def rt(train: np.ndarray, test: np.ndarray, seed: int = 0) -> list[int]:
    """E4 random: a seeded shuffle of the NFT list (sft_job.py reshuffles the NFT rows), so it
    holds exactly the same instances as NFT and FFT."""
    return _wsd_order(wsd(train, test), "rt", seed)


def ot(train: np.ndarray, test: np.ndarray) -> list[int]:
    """E9 `method="ot"`: ascending per-item transport cost to the test set under the exact
    uniform EMD plan (`similarity.ot_cost`, p = 1), ties by index. Items the plan moves little
    mass from cost ~0 and come first, so this is "cheapest to move first", not nearest first."""
    return np.argsort(ot_cost(train, test), kind="stable").tolist()


def _wsd_order(score: np.ndarray, direction: str, seed: int = 0) -> list[int]:
    """The one definition of E4's three orders, from per-item WSD scores."""
    order = np.argsort(score, kind="stable").tolist()
    if direction == "fft":
        return order[::-1]
    return _seeded_shuffle(order, seed) if direction == "rt" else order


def coarse(train: np.ndarray, test: np.ndarray, tasks: Sequence[str],
           direction: Literal["nft", "fft"] = "nft") -> list[int]:
    """E5 coarse granularity: tasks ordered by the WSD of their centroid, instances contiguous.

    As split_data_coarse_job.py: a task's embedding is the mean of its instances' (normalised
    again here; cosine does not care), w_avg = mean(MD)/mean(AD) over the task centroids, tasks
    in ascending WSD (nearest first), each task's instances in their given order. The paper's
    text says task clusters are "then shuffled"; its code and figure use this NFT order.
    """
    train, test = check_embeddings(train, test)
    tasks = _check_tasks(tasks, len(train))
    if direction not in ("nft", "fft"):
        raise SimilarityError(f"unknown direction {direction!r}; use 'nft' or 'fft'")
    task_rank, within = _task_keys(tasks)
    n_tasks = int(task_rank.max()) + 1
    centroids = np.zeros((n_tasks, train.shape[1]), dtype=np.float64)
    np.add.at(centroids, task_rank, train)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    order_of_tasks = np.argsort(wsd(centroids.astype(train.dtype), test), kind="stable")
    if direction == "fft":
        order_of_tasks = order_of_tasks[::-1]
    position = np.empty(n_tasks, np.int64)
    position[order_of_tasks] = np.arange(n_tasks)
    return np.lexsort((within, position[task_rank])).tolist()


def _unique_in_order(seq: Sequence[int]) -> list[int]:
    return list(dict.fromkeys(seq))


def tma(train: np.ndarray, test: np.ndarray, variant: Literal["nft", "fft", "rt", "min", "max"] = "nft",
        budget: int | None = None, seed: int = 0) -> list[int]:
    """E6 arrangements built from TMA rounds (convert_flan_data_job.py), flattened.

    - "min": the nearest rounds for `budget` items (cos_earth_min); "max": the farthest rounds.
    - "nft": the min-max layout, min rounds for budget/2 items followed by the REVERSED max rounds
      for budget/2, duplicates dropped keeping the first (cos_earth_min-max). So it is nearest
      first for its first half only, then runs from moderately far to the farthest.
    - "fft": the exact reverse of "nft"; "rt": a seeded shuffle of the "nft" list (same set).
    With `budget=None` the whole pool is arranged by Algorithm 1 as written: "nft" is then the
    min rounds over the whole pool (each item once, nearest rounds first), "fft" its reverse,
    "rt" its shuffle, "min"/"max" the full min/max rounds.
    """
    return tma_layout(train, test, variant, budget, seed)[0]


def tma_layout(train: np.ndarray, test: np.ndarray, variant: str = "nft", budget: int | None = None,
               seed: int = 0) -> tuple[list[int], dict[int, tuple[str, int]]]:
    """`tma`'s order and, for each arranged item, the round that picked it: ("min"|"max", round)."""
    if variant not in ("nft", "fft", "rt", "min", "max"):
        raise SimilarityError(f"unknown TMA variant {variant!r}; use nft, fft, rt, min or max")

    def labelled(direction: str, b: int | None) -> tuple[list[int], dict[int, tuple[str, int]]]:
        rounds = tma_rounds(train, test, direction, b)
        return [i for r in rounds for i in r], {i: (direction, k) for k, r in enumerate(rounds) for i in r}

    if variant in ("min", "max"):
        return labelled(variant, budget)
    if budget is None:
        base, label = labelled("min", None)
    else:
        if not isinstance(budget, (int, np.integer)) or budget < 2:
            raise SimilarityError(f"budget must be an integer >= 2 for the min-max layout, got {budget!r}")
        near, near_label = labelled("min", budget // 2)
        far, far_label = labelled("max", budget // 2)
        base = _unique_in_order(near + far[::-1])
        label = {**far_label, **near_label}  # an item in both halves sits in the near half
    if variant == "fft":
        base = base[::-1]
    elif variant == "rt":
        base = _seeded_shuffle(base, seed)
    return base, {i: label[i] for i in base}


def tma_round_range(train: np.ndarray, test: np.ndarray, first: int, end: int,
                    direction: Literal["min", "max"] = "min") -> tuple[list[int], dict[int, tuple[str, int]]]:
    """E8: the items that rounds [first, end) of Algorithm 1 over the whole pool pick, in round
    order, with each item's round. The paper trains on each such group separately."""
    rounds = tma_rounds(train, test, direction, None)
    if not 0 <= first < end:
        raise SimilarityError(f"rounds must be [first, end) with 0 <= first < end, got [{first}, {end})")
    if first >= len(rounds):
        raise SimilarityError(f"rounds [{first}, {end}) asked for, but the pool gives only {len(rounds)} rounds")
    picked = rounds[first:end]
    return [i for r in picked for i in r], {i: (direction, first + k) for k, r in enumerate(picked) for i in r}


def tma_round_groups(rounds: Sequence[Sequence[int]], width: int = 5) -> list[list[int]]:
    """E8: the items of rounds [0, width), [width, 2 width), ... as separate training sets, each
    in round order (the paper does not say; its figure is consistent with round order)."""
    if width < 1:
        raise SimilarityError(f"width must be at least 1, got {width}")
    if not rounds:
        raise SimilarityError("no TMA rounds to group")
    return [[i for r in rounds[g: g + width] for i in r] for g in range(0, len(rounds), width)]


def per_task_select(train: np.ndarray, test: np.ndarray, tasks: Sequence[str],
                    mode: Literal["polar", "uniform"] = "polar", k: int = 20) -> list[int]:
    """E9 (choose_flan_per_task_job.py): within each task, rank instances by WSD to the test set;
    "polar" keeps the k/2 nearest and k/2 farthest, "uniform" every floor(n/k)-th (which can keep
    more than k, as in the code). Tasks with at most k instances are kept whole. The union is
    then ordered globally by WSD, nearest first."""
    train, test = check_embeddings(train, test)
    tasks = _check_tasks(tasks, len(train))
    if mode not in ("polar", "uniform"):
        raise SimilarityError(f"unknown mode {mode!r}; use 'polar' or 'uniform'")
    if k < 2:
        raise SimilarityError(f"k must be at least 2, got {k}")
    score = wsd(train, test)
    members: dict[str, list[int]] = {}
    for i, t in enumerate(tasks):
        members.setdefault(t, []).append(i)
    chosen: list[int] = []
    for idx in members.values():
        ranked = [idx[j] for j in np.argsort(score[idx], kind="stable")]
        if len(ranked) <= k:
            chosen += ranked
        elif mode == "polar":
            chosen += ranked[: k // 2] + ranked[len(ranked) - (k - k // 2):]
        else:
            chosen += ranked[:: len(ranked) // k]
    chosen = sorted(set(chosen))
    return [chosen[j] for j in np.argsort(score[chosen], kind="stable")]


def apply(items: Sequence, order: Sequence[int]) -> list:
    """The arranged list: items[order[0]], items[order[1]], ... (each index at most once)."""
    if len(set(order)) != len(order):
        raise SimilarityError("an arrangement must not repeat an index")
    if order and (min(order) < 0 or max(order) >= len(items)):
        raise SimilarityError(f"an arrangement index is outside 0..{len(items) - 1}")
    return [items[i] for i in order]


# ---------------------------------------------------------------------------------------------
# Records in, arranged records out: what `zsg arrange` runs.

METHODS = ("random", "round-robin", "cluster", "nft", "fft", "rt", "ot", "coarse",
           "tma-nft", "tma-fft", "tma-rt", "tma-min", "tma-max")
SEEDED = {"random", "rt", "tma-rt"}  # the orders that a seed changes; every other one is fixed by its data
NEEDS_EMBEDDINGS = {"nft", "fft", "rt", "ot", "coarse", "tma-nft", "tma-fft", "tma-rt", "tma-min", "tma-max"}


@dataclass
class Arrangement:
    order: list[int]  # positions into the training list, in training order
    method: str
    rounds: dict[int, tuple[str, int]] | None = None  # TMA: item -> (direction, round)
    nearest_distance: np.ndarray | None = None  # per training item: min distance to the test set

    def summary(self) -> dict:
        out: dict = {"method": self.method, "instances": len(self.order)}
        if self.rounds is not None:
            out["rounds"] = {d: 1 + max(r for dd, r in self.rounds.values() if dd == d)
                             for d in sorted({d for d, _ in self.rounds.values()})}
        if self.nearest_distance is not None and self.order:
            tenth = max(1, len(self.order) // 10)
            md = self.nearest_distance[self.order]
            out["mean_nearest_distance_first_tenth"] = round(float(md[:tenth].mean()), 4)
            out["mean_nearest_distance_last_tenth"] = round(float(md[-tenth:].mean()), 4)
        return out


def arrange_records(train: Sequence, test: Sequence, method: str, budget: int | None = None, seed: int = 0,
                    embed_text: str | None = None, encoder=None, rounds: tuple[int, int] | None = None) -> Arrangement:
    """Order training records for a test set with any method of the paper.

    `embed_text` defaults to the paper's choice per method: all messages joined for the WSD
    methods (E4, E5, OT), the first user turn and response for TMA (E6). `rounds=(a, b)` with
    tma-min / tma-max keeps only what rounds [a, b) over the whole pool pick (E8).
    """
    from .embed import Encoder, embed_records

    if method not in METHODS:
        raise SimilarityError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if budget is not None and not method.startswith("tma-"):
        raise SimilarityError(f"--budget applies to the tma-* methods only, not {method!r}")
    if rounds is not None and (method not in ("tma-min", "tma-max") or budget is not None):
        raise SimilarityError("--rounds applies to tma-min and tma-max without a budget")
    tasks = [r.task for r in train]
    if method == "random":
        return Arrangement(random_order(len(train), seed), method)
    if method == "round-robin":
        return Arrangement(round_robin(tasks), method)
    if method == "cluster":
        return Arrangement(cluster(tasks), method)
    mode = embed_text or ("first-turn" if method.startswith("tma-") else "all")
    encoder = encoder or Encoder()  # one encoder (one model load, one cache) for both sets
    x = embed_records(train, mode, encoder)
    t = embed_records(test, mode, encoder)
    md, ad = min_avg_distance(x, t)  # one pass serves the WSD orders and the summary
    if rounds is not None:
        order, labels = tma_round_range(x, t, rounds[0], rounds[1], method[4:])
        return Arrangement(order, method, labels, md)
    if method.startswith("tma-"):
        order, labels = tma_layout(x, t, method[4:], budget, seed)
        return Arrangement(order, method, labels, md)
    if method == "ot":
        return Arrangement(ot(x, t), method, None, md)
    if method == "coarse":
        return Arrangement(coarse(x, t, tasks), method, None, md)
    return Arrangement(_wsd_order(combine_wsd(md, ad), method, seed), method, None, md)
