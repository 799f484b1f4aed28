"""Every ordering of the paper, as a list of indices into the training list (paper.md E2-E9, section 5).

Nothing here reorders data in place: each function returns positions, and `apply(records, order)`
builds the arranged list. Where the paper's text and its code differ, the code is followed and
the docstring says so.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable, Literal, Sequence

import numpy as np

from .data import task_family
from .embed import Encoder
from .features import check_kind, compute
from .similarity import (
    SimilarityError,
    check_embeddings,
    combine_wsd,
    min_avg_distance,
    ot_cost,
    wsd,
    wsd_weight,
)
from .tma import tma_rounds
from .util import seeded_shuffle

__all__ = ["random_order", "round_robin", "cluster", "nft", "fft", "rt", "ot", "coarse", "tma_rounds", "tma",
           "tma_layout", "tma_round_range", "key_matched", "family_matched", "task_matched",
           "length_matched", "answer_length_bucket", "pool_rounds", "TMA_POOL_SEED", "apply", "Method", "METHODS", "get_method", "arrange_records"]


def _check_tasks(tasks: Sequence[str], n: int | None = None) -> list[str]:
    tasks = list(tasks)
    if not tasks:
        raise SimilarityError("the training set is empty: nothing to arrange")
    if n is not None and len(tasks) != n:
        raise SimilarityError(f"{len(tasks)} task labels for {n} training embeddings")
    return tasks


def random_order(n: int, seed: int = 0) -> list[int]:
    """E2 "random": a seeded shuffle of 0..n-1."""
    if n < 1:
        raise SimilarityError("the training set is empty: nothing to arrange")
    return seeded_shuffle(list(range(n)), seed)


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
    holds exactly the same instances as NFT and FFT. The paper shuffled with pandas
    (`sample(frac=1, random_state=seed)`), zsg with Python's `random`: another permutation for the
    same seed, equally random."""
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
    return seeded_shuffle(order, seed) if direction == "rt" else order


def key_matched(order: Sequence[int], keys: Sequence[str], seed: int = 0) -> list[int]:
    """`order`'s sequence of keys with other instances: position p holds a random instance with
    the key of `order[p]` (each key's instances in a seeded shuffle, each used once). Every prefix
    has exactly `order`'s key counts, but not its instances; the same multiset in another order.
    The controls of the "why nearest-first loses" chapter, each keeping one thing of NFT's:
    its task families (`family_matched`), its tasks (`task_matched`), its answer lengths
    (`length_matched`)."""
    keys = _check_tasks(keys, len(order))
    rng = random.Random(seed)
    queue: dict[str, list[int]] = {}
    for k in sorted(set(keys)):  # sorted: the draw does not depend on set order
        members = [i for i, g in enumerate(keys) if g == k]
        rng.shuffle(members)
        queue[k] = members[::-1]  # pop() from the end takes them in shuffled order
    return [queue[keys[i]].pop() for i in order]


def family_matched(order: Sequence[int], tasks: Sequence[str], seed: int = 0) -> list[int]:
    """`order`'s sequence of task families, a random instance of the family at each position: set
    against `order` it asks whether being the *nearest* matters or only being from the right family."""
    return key_matched(order, [task_family(t) for t in _check_tasks(tasks, len(order))], seed)


def task_matched(order: Sequence[int], tasks: Sequence[str], seed: int = 0) -> list[int]:
    """`order`'s sequence of tasks, a random instance of the task at each position: the same task
    mix at every step (one task's template and answer format), without the nearest instances."""
    return key_matched(order, tasks, seed)


def answer_length_bucket(chars: int) -> str:
    """An answer's length class: floor(log2(characters)), so each class spans a factor of 2 (a
    one-word answer and a sentence fall apart, two sentences of similar length together)."""
    if chars < 0:
        raise SimilarityError(f"an answer length is a count of characters, got {chars}")
    return str(int(np.log2(chars))) if chars > 0 else "empty"


def length_matched(order: Sequence[int], answer_chars: Sequence[int], seed: int = 0) -> list[int]:
    """`order`'s sequence of answer lengths (`answer_length_bucket`), a random instance of that
    length at each position, whatever its task: every prefix teaches `order`'s answer lengths (and
    so where to stop) without its tasks or its nearest instances (the format-and-stopping control)."""
    if len(answer_chars) != len(order):
        raise SimilarityError(f"{len(answer_chars)} answer lengths for {len(order)} training items")
    return key_matched(order, [answer_length_bucket(int(c)) for c in answer_chars], seed)


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


TMA_POOL_SEED = 0  # the pool's one shuffle before TMA indexes it (recorded in `Arrangement.summary`)


def pool_rounds(train: np.ndarray, test: np.ndarray, direction: str, budget: int | None,
                 pool_seed: int) -> list[list[int]]:
    """Algorithm 1's rounds over the pool shuffled once by `pool_seed`, as indices of `train`.

    Within a round the paper's code keeps ascending pool index (np.unique). Its pool order is its
    dataset's own, unrelated to the test set; ours is sorted by task name, which would put every
    bb/ task before every ni/ one inside a round. So the pool is shuffled once before indexing, and
    a round comes in ascending shuffled position."""
    perm = np.random.default_rng(pool_seed).permutation(len(train))
    return [perm[r].tolist() for r in tma_rounds(train[perm], test, direction, budget)]


def tma(train: np.ndarray, test: np.ndarray, variant: Literal["nft", "fft", "rt", "min", "max"] = "nft",
        budget: int | None = None, seed: int = 0, pool_seed: int = TMA_POOL_SEED) -> list[int]:
    """E6 arrangements built from TMA rounds (convert_flan_data_job.py), flattened.

    - "min": the nearest rounds for `budget` items (cos_earth_min); "max": the farthest rounds.
    - "nft": the min-max file: min rounds for budget/2 items followed by the REVERSED max rounds
      for budget/2, duplicates dropped keeping the first (cos_earth_min-max). So it is nearest
      first for its first half only, then runs from moderately far to the farthest.
    - "fft": the max-min file: max rounds for budget/2 followed by the reversed min rounds,
      duplicates dropped (cos_earth_max-min). It is the reverse of "nft" unless the two halves
      share instances; either way it holds the same set as "nft".
    - "rt": a seeded shuffle of the "nft" list (same set). The paper shuffled with pandas
      (`sample(frac=1, random_state=seed)`), zsg with Python's `random`: another permutation for
      the same seed, equally random.
    With `budget=None` the whole pool is arranged by Algorithm 1 as written: "nft" is then the
    min rounds over the whole pool (each item once, nearest rounds first), "fft" its reverse,
    "rt" its shuffle, "min"/"max" the full min/max rounds. Within a round, items come in the
    order of the pool shuffled once by `pool_seed` (see `pool_rounds`).
    """
    return tma_layout(train, test, variant, budget, seed, pool_seed)[0]


def tma_layout(train: np.ndarray, test: np.ndarray, variant: str = "nft", budget: int | None = None,
               seed: int = 0, pool_seed: int = TMA_POOL_SEED) -> tuple[list[int], dict[int, tuple[str, int]]]:
    """`tma`'s order and, for each arranged item, the round that picked it: ("min"|"max", round);
    an item both halves picked carries the label of the half it sits in."""
    if variant not in ("nft", "fft", "rt", "min", "max"):
        raise SimilarityError(f"unknown TMA variant {variant!r}; use nft, fft, rt, min or max")

    def labelled(direction: str, b: int | None) -> tuple[list[int], dict[int, tuple[str, int]]]:
        rounds = pool_rounds(train, test, direction, b, pool_seed)
        return [i for r in rounds for i in r], {i: (direction, k) for k, r in enumerate(rounds) for i in r}

    if variant in ("min", "max"):
        return labelled(variant, budget)
    if budget is None:
        base, label = labelled("min", None)
        if variant == "fft":
            base = base[::-1]
    else:
        if not isinstance(budget, (int, np.integer)) or budget < 2:
            raise SimilarityError(f"budget must be an integer >= 2 for the min-max layout, got {budget!r}")
        near, near_label = labelled("min", budget // 2)
        far, far_label = labelled("max", budget // 2)
        if variant == "fft":  # the max-min file
            base, label = _unique_in_order(far + near[::-1]), {**near_label, **far_label}
        else:  # the min-max file (and rt's set)
            base, label = _unique_in_order(near + far[::-1]), {**far_label, **near_label}
    if variant == "rt":
        base = seeded_shuffle(base, seed)
    return base, {i: label[i] for i in base}


def tma_round_range(train: np.ndarray, test: np.ndarray, first: int, end: int,
                    direction: Literal["min", "max"] = "min", size: int | None = None,
                    pool_seed: int = TMA_POOL_SEED) -> tuple[list[int], dict[int, tuple[str, int]]]:
    """E8: the items that rounds [first, end) of Algorithm 1 over the whole pool pick, in round
    order, with each item's round; with `size`, only the first `size` of them (so that every group
    trains the same number of items under the same schedule). The paper trains on each group
    separately."""
    rounds = pool_rounds(train, test, direction, None, pool_seed)
    if not 0 <= first < end:
        raise SimilarityError(f"rounds must be [first, end) with 0 <= first < end, got [{first}, {end})")
    if first >= len(rounds):
        raise SimilarityError(f"rounds [{first}, {end}) asked for, but the pool gives only {len(rounds)} rounds")
    picked = [(i, first + k) for k, r in enumerate(rounds[first:end]) for i in r]
    if size is not None:
        if size > len(picked):
            raise SimilarityError(f"rounds [{first}, {end}) pick {len(picked)} instances, fewer than the "
                                  f"{size} asked for (tma_budget)")
        picked = picked[:size]
    return [i for i, _ in picked], {i: (direction, k) for i, k in picked}


def apply(items: Sequence, order: Sequence[int]) -> list:
    """The arranged list: items[order[0]], items[order[1]], ... (each index at most once)."""
    if len(set(order)) != len(order):
        raise SimilarityError("an arrangement must not repeat an index")
    if order and (min(order) < 0 or max(order) >= len(items)):
        raise SimilarityError(f"an arrangement index is outside 0..{len(items) - 1}")
    return [items[i] for i in order]


# ---------------------------------------------------------------------------------------------
# Records in, arranged records out: what runs and `zsg arrange` call.
#
# A method is declared once, in METHODS: its name, what it needs and one function. The CLI's
# choices, `RunConfig`'s validation and `arrange_records` all read that declaration, so adding a
# method is one function plus one entry.


@dataclass(frozen=True)
class Inputs:
    """What a method's function may use: the training tasks, and (for a method with `features`)
    the embeddings of both sides with each training item's min / avg distance to the test set."""
    tasks: list[str]
    seed: int = 0
    answer_chars: list[int] | None = None  # each training item's answer (first assistant turn) in characters
    tma_budget: int | None = None
    rounds: tuple[int, int] | None = None
    train: np.ndarray | None = None
    test: np.ndarray | None = None
    min_distance: np.ndarray | None = None
    avg_distance: np.ndarray | None = None
    wsd_weight: float | None = None  # WSD's w_avg for these distances (`similarity.wsd_weight`), computed once


Order = tuple[list[int], dict[int, tuple[str, int]] | None]  # positions, and TMA's item -> (direction, round)


@dataclass(frozen=True)
class Method:
    name: str
    order: Callable[[Inputs], Order]
    help: str  # one line: the paper's experiment and what the order is
    features: bool = True  # needs embeddings of both sides
    seeded: bool = False  # `seed` changes the order (else it is fixed by the data: one run, not n)
    takes_tma_budget: bool = False  # selects `tma_budget` items
    takes_rounds: bool = False  # can keep only rounds [a, b) of the whole pool (E8); with tma_budget, their first that many
    embed_text: str = "all"  # the paper's text to embed: all messages (WSD), or the first turn (TMA)
    min_tma_budget: int = 1  # the min-max layout splits the budget in two halves of at least 1
    version: int = 1  # bumped when the method's order changes, so that runs stored under the old order are not served
    wsd: bool = False  # orders by WSD (its weight goes into the summary)
    adaptive: bool = False  # decided while training (zsg_core.adaptive): `order` gives only the list it permutes

    def check(self, tma_budget: int | None = None, rounds: Sequence[int] | None = None,
              embed_text: str | None = None, pool_size: int | None = None) -> None:
        """Refuse a parameter this method does not take, or a malformed one (the one place these
        rules live: runs and `arrange_records` call it, the CLI's choices come from METHODS).
        With `pool_size` (the training list's length), a budget larger than the pool is refused
        too, before any embedding is computed."""
        if tma_budget is not None:
            if not self.takes_tma_budget:
                raise SimilarityError(f"tma_budget applies to the tma-* methods only, not {self.name!r}")
            if not isinstance(tma_budget, (int, np.integer)) or isinstance(tma_budget, bool) \
                    or tma_budget < self.min_tma_budget:
                raise SimilarityError(f"tma_budget of {self.name} must be an integer >= {self.min_tma_budget} "
                                      f"or None, got {tma_budget!r}")
            if pool_size is not None and tma_budget > pool_size:
                raise SimilarityError(f"tma_budget {tma_budget} is larger than the training pool ({pool_size} "
                                      "instances); choose at most that many, or leave it unset to arrange the whole pool")
        if rounds is not None:
            if not self.takes_rounds:
                takers = ", ".join(n for n, m in METHODS.items() if m.takes_rounds)
                raise SimilarityError(f"rounds applies to {takers} only, not {self.name!r}")
            if (not isinstance(rounds, (list, tuple)) or len(rounds) != 2 or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in rounds) or not 0 <= rounds[0] < rounds[1]):
                raise SimilarityError(f"rounds must be [first, end) with 0 <= first < end, got {rounds!r}")
        if embed_text is not None:
            if embed_text not in EMBED_TEXT:
                raise SimilarityError(f"embed_text must be one of {', '.join(EMBED_TEXT)} or None, got {embed_text!r}")
            if not self.features:
                raise SimilarityError(f"embed_text applies to the methods that embed, not {self.name!r}")


def _wsd_method(direction: str) -> Callable[[Inputs], Order]:
    def order(a: Inputs) -> Order:
        return _wsd_order(combine_wsd(a.min_distance, a.avg_distance, w_avg=a.wsd_weight), direction, a.seed), None
    return order


def _nft_order(a: Inputs) -> list[int]:
    return _wsd_order(combine_wsd(a.min_distance, a.avg_distance, w_avg=a.wsd_weight), "nft")


def _family_method(a: Inputs) -> Order:
    return family_matched(_nft_order(a), a.tasks, a.seed), None


def _task_method(a: Inputs) -> Order:
    return task_matched(_nft_order(a), a.tasks, a.seed), None


def _length_method(a: Inputs) -> Order:
    if a.answer_chars is None:
        raise SimilarityError("length-nft needs each training item's answer length (arrange_records gives it)")
    return length_matched(_nft_order(a), a.answer_chars, a.seed), None


def _tma_method(variant: str) -> Callable[[Inputs], Order]:
    def order(a: Inputs) -> Order:
        if a.rounds is not None:
            return tma_round_range(a.train, a.test, a.rounds[0], a.rounds[1], variant, size=a.tma_budget)
        return tma_layout(a.train, a.test, variant, a.tma_budget, a.seed)
    return order


_TMA_HELP = {"nft": "min rounds for half the budget, then the reversed max rounds (the paper's min-max file)",
             "fft": "max rounds for half the budget, then the reversed min rounds (the paper's max-min file)",
             "rt": "tma-nft's list shuffled",
             "min": "the nearest rounds only", "max": "the farthest rounds only"}

METHODS: dict[str, Method] = {m.name: m for m in [
    Method("random", lambda a: (random_order(len(a.tasks), a.seed), None), "E2: a seeded shuffle",
           features=False, seeded=True),
    Method("round-robin", lambda a: (round_robin(a.tasks), None), "E2: one instance of every task per sweep",
           features=False),
    Method("cluster", lambda a: (cluster(a.tasks), None), "E2: each task's instances contiguous", features=False),
    Method("nft", _wsd_method("nft"), "E4: nearest first by Weighted Similarity Distance", wsd=True),
    Method("fft", _wsd_method("fft"), "E4: farthest first (the reverse of nft)", wsd=True),
    Method("rt", _wsd_method("rt"), "E4: nft's list shuffled", seeded=True, wsd=True),
    Method("family-nft", _family_method, "nft's sequence of task families, each family's instances in random order",
           seeded=True, wsd=True),
    Method("task-nft", _task_method, "nft's sequence of tasks, each task's instances in random order",
           seeded=True, wsd=True),
    Method("length-nft", _length_method, "nft's sequence of answer lengths (factors of 2), any task's instance of "
           "each length in random order", seeded=True, wsd=True),
    Method("ot", lambda a: (ot(a.train, a.test), None), "E9: cheapest to move to the test set first (optimal transport)"),
    # Orders decided while training (zsg_core.adaptive), each a permutation of this seeded list;
    # 2: the validation draw skips training repeats, the gradient round robin resumes where it stopped
    Method("adaptive-loss", lambda a: (random_order(len(a.tasks), a.seed), None),
           "TMA's rounds over the held-out tasks, the highest validation loss first, re-ranked every adapt_every steps",
           features=False, adaptive=True, version=2),  # decided by the data and the model alone: one run, not one per seed
    Method("adaptive-gradient", lambda a: (random_order(len(a.tasks), a.seed), None),
           "every adapt_every steps, the instances whose gradient aligns best with a held-out task's, round robin",
           features=False, seeded=True, adaptive=True, version=2),
    Method("adaptive-lookahead", lambda a: (random_order(len(a.tasks), a.seed), None),
           "each step, the one of lookahead_batches random batches whose step lowers validation loss most",
           features=False, seeded=True, adaptive=True, version=2),
    Method("coarse", lambda a: (coarse(a.train, a.test, a.tasks), None), "E5: whole tasks, nearest centroid first"),
    *[Method(f"tma-{v}", _tma_method(v), f"E6: Test-centric Multi-turn Arrangement, {_TMA_HELP[v]}",
             seeded=v == "rt", takes_tma_budget=True, takes_rounds=v in ("min", "max"), embed_text="first-turn",
             min_tma_budget=1 if v in ("min", "max") else 2, version=2)  # 2: shuffled pool, the paper's max-min file
      for v in ("nft", "fft", "rt", "min", "max")],
]}

EMBED_TEXT = ("all", "first-turn")


def get_method(name: str) -> Method:
    """The declared method called `name`."""
    if name not in METHODS:
        raise SimilarityError(f"unknown arrangement method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


@dataclass
class Arrangement:
    order: list[int]  # positions into the training list, in training order
    method: str
    rounds: dict[int, tuple[str, int]] | None = None  # TMA: item -> (direction, round)
    nearest_distance: np.ndarray | None = None  # per training item: min distance to the test set
    wsd_weight: tuple[float, str] | None = None  # WSD orders: (w_avg, the rule that gave it), `similarity.wsd_weight`

    def summary(self) -> dict:
        out: dict = {"method": self.method, "instances": len(self.order)}
        if self.wsd_weight is not None:
            out["wsd_w_avg"], out["wsd_weight_rule"] = float(f"{self.wsd_weight[0]:.6g}"), self.wsd_weight[1]
        if self.rounds is not None:
            out["pool_seed"] = TMA_POOL_SEED
            out["rounds"] = {d: 1 + max(r for dd, r in self.rounds.values() if dd == d)
                             for d in sorted({d for d, _ in self.rounds.values()})}
        if self.nearest_distance is not None and self.order:
            tenth = max(1, len(self.order) // 10)
            md = self.nearest_distance[self.order]
            out["mean_nearest_distance_first_tenth"] = round(float(md[:tenth].mean()), 4)
            out["mean_nearest_distance_last_tenth"] = round(float(md[-tenth:].mean()), 4)
        return out


def arrange_records(train: Sequence, test: Sequence, method: str, tma_budget: int | None = None, arrangement_seed: int = 0,
                    embed_text: str | None = None, encoder=None, rounds: tuple[int, int] | None = None,
                    processes: int = 1, features: str = "minilm", test_view: str = "with-answer",
                    source=None, log: Callable[[str], None] = print, embed_precision: str = "fp32") -> Arrangement:
    """Order training records for a test set with any method in METHODS.

    `features` names what "similar" means (`features.FEATURES`: the paper's minilm, or the LM's
    hidden states or gradients, which need `source`, a `features.LMSource`); `test_view` whether
    held-out features see the reference answer. `embed_text` (minilm) defaults to the paper's
    choice per method (`Method.embed_text`). `rounds=(a, b)` with tma-min / tma-max keeps only
    what rounds [a, b) over the whole pool pick (E8). Without an `encoder`, one is made with
    `processes` encoding processes in `embed_precision` (`embed.Encoder`; bf16 is faster where the
    CPU has it and moves the orders slightly: benchmarks/README, "bench_embed_precision").
    """
    m = get_method(method)
    m.check(tma_budget, rounds, embed_text, pool_size=len(train))
    check_kind(features, test_view)
    inputs = Inputs(tasks=_check_tasks([r.task for r in train]), seed=arrangement_seed, tma_budget=tma_budget,
                    answer_chars=[len(r.response) for r in train],
                    rounds=tuple(rounds) if rounds is not None else None)
    if not m.features:
        return Arrangement(m.order(inputs)[0], method)

    if features == "minilm":
        encoder = encoder or Encoder(processes=processes, precision=embed_precision)  # one for both sets
    x, t = compute(train, test, features, text=embed_text or m.embed_text, test_view=test_view, source=source,
                   encoder=encoder, log=log)
    md, ad = min_avg_distance(x, t)  # one pass serves the WSD orders and the summary
    weight = wsd_weight(md, ad) if m.wsd else None  # one weight orders and is recorded
    order, labels = m.order(replace(inputs, train=x, test=t, min_distance=md, avg_distance=ad,
                                    wsd_weight=weight[0] if weight else None))
    return Arrangement(order, method, labels, md, weight)
