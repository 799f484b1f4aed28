"""Every ordering: hand-checkable cases, and properties against straightforward implementations."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zsg_core.similarity as similarity_module
import zsg_core.tma as tma_module
from zsg_core.arrange import (
    TMA_POOL_SEED,
    apply,
    cluster,
    coarse,
    family_matched,
    fft,
    nft,
    ot,
    pool_rounds,
    random_order,
    round_robin,
    rt,
    tma,
    tma_layout,
    tma_round_range,
    tma_rounds,
)
from zsg_core.similarity import SimilarityError, wsd


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def paper_select(train: np.ndarray, test: np.ndarray, direction: str, budget: int | None) -> list[list[int]]:
    """The paper code's select_min / select_max, written out: full matrix, per-round argmin/argmax."""
    d = -(train @ test.T)
    target = len(train) if budget is None else budget
    rounds, picked = [], 0
    while picked < target:
        if direction == "min":
            new = np.unique(d.argmin(axis=0))
            d[new, :] = d.max() + 1
        else:
            new = np.unique(d.argmax(axis=0))
            d[new, :] = d.min() - 1
        rounds.append(new.tolist())
        picked += len(new)
    return rounds


# --- E2 -------------------------------------------------------------------------------------

def test_round_robin_and_cluster_by_hand():
    tasks = ["a", "a", "b", "c", "b", "a"]
    assert round_robin(tasks) == [0, 2, 3, 1, 4, 5]  # a0 b0 c0, a1 b1, a2
    assert cluster(tasks) == [0, 1, 5, 2, 4, 3]  # a a a, b b, c
    assert sorted(random_order(6, seed=1)) == list(range(6)) and random_order(6, 1) == random_order(6, 1)
    assert random_order(6, 1) != random_order(6, 2)
    with pytest.raises(SimilarityError, match="empty"):
        round_robin([])


# --- E4 -------------------------------------------------------------------------------------

S = math.sqrt(0.5)
TRAIN = np.array([[0.0, 1.0], [S, S], [1.0, 0.0], [-1.0, 0.0]])
TEST = np.array([[1.0, 0.0], [0.8, 0.6]])


def test_nft_fft_rt_by_hand():
    # nearest to the test points first: (1,0), then the diagonal, then (0,1), then (-1,0)
    assert nft(TRAIN, TEST) == [2, 1, 0, 3]
    assert fft(TRAIN, TEST) == [3, 0, 1, 2]
    assert sorted(rt(TRAIN, TEST, seed=0)) == [0, 1, 2, 3]
    assert rt(TRAIN, TEST, seed=0) == rt(TRAIN, TEST, seed=0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 60), m=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_nft_fft_rt_properties(n, m, seed):
    rng = np.random.default_rng(seed)
    x, t = unit(rng, n, 6), unit(rng, m, 6)
    order = nft(x, t)
    assert sorted(order) == list(range(n))
    assert fft(x, t) == order[::-1]
    assert sorted(rt(x, t, seed)) == sorted(order)
    w = wsd(x, t)
    assert all(w[a] <= w[b] for a, b in zip(order, order[1:]))


# --- E5 -------------------------------------------------------------------------------------

def test_coarse_by_hand():
    tasks = ["far", "near", "far", "near"]
    train = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [S, S]])
    test = np.array([[1.0, 0.0]])
    assert coarse(train, test, tasks) == [1, 3, 0, 2]
    assert coarse(train, test, tasks, direction="fft") == [0, 2, 1, 3]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 50), n_tasks=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_coarse_keeps_tasks_contiguous(n, n_tasks, seed):
    rng = np.random.default_rng(seed)
    x, t = unit(rng, n, 5), unit(rng, 3, 5)
    tasks = [f"t{k}" for k in rng.integers(0, n_tasks, n)]
    order = coarse(x, t, tasks)
    assert sorted(order) == list(range(n))
    seq = [tasks[i] for i in order]
    blocks = [k for j, k in enumerate(seq) if j == 0 or seq[j - 1] != k]
    assert len(blocks) == len(set(seq))  # each task appears as one block
    for task in set(tasks):  # within a task, the given order
        assert [i for i in order if tasks[i] == task] == [i for i in range(n) if tasks[i] == task]


def test_family_matched_keeps_every_prefix_family_count_but_not_the_instances():
    from collections import Counter

    from zsg_core.data import task_family

    tasks = [f"bb/list_functions/c{i:03d}" for i in range(10)] + [f"ni/subtask{i:03d}_qa" for i in range(10)] \
        + ["bb/arithmetic/x"] * 5
    order = list(np.random.default_rng(0).permutation(len(tasks)))
    got = family_matched(order, tasks, seed=1)
    assert sorted(got) == list(range(len(tasks)))  # a permutation: every instance once
    for k in range(1, len(order) + 1):
        assert Counter(task_family(tasks[i]) for i in got[:k]) == Counter(task_family(tasks[i]) for i in order[:k])
    assert got != order and family_matched(order, tasks, seed=1) == got and family_matched(order, tasks, seed=2) != got
    with pytest.raises(SimilarityError, match="3 task labels for 25"):
        family_matched(order, tasks[:3])


def test_family_matched_is_the_order_stored_runs_were_trained_on():
    """key_matched generalizes family_matched; the family-nft runs already stored keep their order
    (the list below is what the implementation before the generalization gave)."""
    tasks = [f"bb/list_functions/c{i:03d}" for i in range(10)] + [f"ni/subtask{i:03d}_qa" for i in range(10)] \
        + ["bb/arithmetic/x"] * 5
    order = [int(i) for i in np.random.default_rng(0).permutation(len(tasks))]
    assert family_matched(order, tasks, seed=1) == [18, 2, 17, 14, 22, 6, 23, 4, 11, 24, 0, 20, 1, 3, 21, 12, 13, 15,
                                                     5, 8, 10, 19, 9, 7, 16]


def test_task_matched_keeps_every_prefix_task_count_and_changes_the_instances():
    from collections import Counter

    from zsg_core.arrange import task_matched

    tasks = [f"t{i % 4}" for i in range(24)]
    order = list(np.random.default_rng(3).permutation(len(tasks)))
    got = task_matched(order, tasks, seed=0)
    assert sorted(got) == list(range(len(tasks)))
    for k in range(1, len(order) + 1):
        assert Counter(tasks[i] for i in got[:k]) == Counter(tasks[i] for i in order[:k])
    assert got != order and task_matched(order, tasks, seed=0) == got and task_matched(order, tasks, seed=1) != got


def test_length_matched_keeps_the_answer_lengths_and_mixes_the_tasks():
    """NFT's sequence of answer-length classes with any task's instance of each length: same
    lengths at every prefix, other tasks (the format-and-stopping control of issue 32 item 7)."""
    from collections import Counter

    from zsg_core.arrange import answer_length_bucket, length_matched

    assert [answer_length_bucket(c) for c in (0, 1, 2, 3, 4, 7, 8, 300)] == ["empty", "0", "1", "1", "2", "2", "3", "8"]
    with pytest.raises(SimilarityError, match="count of characters"):
        answer_length_bucket(-1)
    # two tasks with short answers, two with long ones: the first items of the order are task a's
    tasks = ["a"] * 6 + ["b"] * 6 + ["c"] * 6 + ["d"] * 6
    chars = [2] * 6 + [3] * 6 + [40] * 6 + [50] * 6
    order = list(range(24))
    got = length_matched(order, chars, seed=0)
    assert sorted(got) == list(range(24))
    for k in range(1, 25):
        assert Counter(answer_length_bucket(chars[i]) for i in got[:k]) == \
            Counter(answer_length_bucket(chars[i]) for i in order[:k])
    assert {tasks[i] for i in got[:6]} == {"a", "b"}  # the short answers first, from both short tasks
    assert length_matched(order, chars, seed=0) == got and length_matched(order, chars, seed=1) != got
    with pytest.raises(SimilarityError, match="3 answer lengths for 24"):
        length_matched(order, chars[:3])


def test_the_matched_orders_are_arranged_from_records():
    """task-nft and length-nft through `arrange_records`: permutations of the list, NFT's tasks /
    answer lengths at every prefix, reproducible from the seed."""
    from collections import Counter

    from zsg_core.arrange import answer_length_bucket, arrange_records
    from zsg_core.data import Record

    rng = np.random.default_rng(0)
    train = [Record(f"i{i}", f"task{i % 5}", [{"role": "user", "content": f"question {i} " + "x" * int(rng.integers(1, 50))},
                                             {"role": "assistant", "content": "y" * int(rng.integers(1, 300))}])
             for i in range(40)]
    test = [Record(f"h{i}", "held", [{"role": "user", "content": f"held-out {i}"}, {"role": "assistant", "content": "z"}])
            for i in range(4)]
    class HashEncoder:  # the arrangement, not MiniLM, is under test: a fixed unit vector per text
        def encode(self, texts):
            vectors = np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=8) for t in texts])
            return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    encoder = HashEncoder()
    nft_order = arrange_records(train, test, "nft", encoder=encoder).order
    for method, key in (("task-nft", lambda r: r.task), ("length-nft", lambda r: answer_length_bucket(len(r.response)))):
        got = arrange_records(train, test, method, arrangement_seed=2, encoder=encoder).order
        assert sorted(got) == list(range(40)) and got != nft_order
        for k in (1, 7, 20, 40):
            assert Counter(key(train[i]) for i in got[:k]) == Counter(key(train[i]) for i in nft_order[:k])
        assert arrange_records(train, test, method, arrangement_seed=2, encoder=encoder).order == got


# --- E6 / Algorithm 1 --------------------------------------------------------------------------

def test_tma_rounds_by_hand():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [S, S], [-1.0, 0.0]])
    test = np.array([[1.0, 0.0], [0.0, 1.0]])
    # round 1: x->0, y->1; round 2: both pick the diagonal 2 (deduped); round 3: 3
    assert tma_rounds(train, test, "min") == [[0, 1], [2], [3]]
    # farthest: x's is -x (3); y's are x and -x at distance 0, the lowest index (0) wins; then
    # from {y, diagonal}: x's farthest is y (1), y's is the diagonal (2)
    assert tma_rounds(train, test, "max") == [[0, 3], [1, 2]]
    assert tma_rounds(train, test, "min", budget=1) == [[0, 1]]  # the last round is kept whole


def test_tma_layouts_by_hand():
    """The paper's files over the pool shuffled once: min-max (NFT), max-min (FFT), the same set."""
    rng = np.random.default_rng(3)
    x, t = unit(rng, 40, 4), unit(rng, 3, 4)
    near = [i for r in pool_rounds(x, t, "min", 10, TMA_POOL_SEED) for i in r]
    far = [i for r in pool_rounds(x, t, "max", 10, TMA_POOL_SEED) for i in r]
    assert tma(x, t, "nft", budget=20) == list(dict.fromkeys(near + far[::-1]))
    assert tma(x, t, "fft", budget=20) == list(dict.fromkeys(far + near[::-1]))
    assert sorted(tma(x, t, "fft", budget=20)) == sorted(tma(x, t, "nft", budget=20))
    assert sorted(tma(x, t, "rt", budget=20, seed=4)) == sorted(tma(x, t, "nft", budget=20))
    assert tma(x, t, "min", budget=10) == near and tma(x, t, "max", budget=10) == far
    assert sorted(tma(x, t, "nft")) == list(range(40))  # whole pool: every item once
    assert tma(x, t, "fft") == tma(x, t, "nft")[::-1]


def test_fft_is_the_max_min_file_not_the_reverse_when_the_halves_share_items():
    """Two test points on opposite sides: one's nearest items are the other's farthest, so the
    halves share items, and the max-min file differs from NFT reversed (as in the paper's code)."""
    rng = np.random.default_rng(0)
    x, t = unit(rng, 30, 2), np.array([[1.0, 0.0], [-1.0, 0.0]])
    nft, fft = tma(x, t, "nft", budget=20), tma(x, t, "fft", budget=20)
    near = {i for r in pool_rounds(x, t, "min", 10, TMA_POOL_SEED) for i in r}
    far = {i for r in pool_rounds(x, t, "max", 10, TMA_POOL_SEED) for i in r}
    assert near & far  # the case in question
    assert fft != nft[::-1] and sorted(fft) == sorted(nft)
    _, labels = tma_layout(x, t, "fft", budget=20)
    assert all(labels[i][0] == "max" for i in fft[: len(far)])  # FFT's head is its far half


def test_within_a_round_the_order_is_the_shuffled_pool_not_the_task_names():
    """A pool sorted by task name (every bb/ before every ni/, as zsg's lists are): inside a round
    the picks follow the pool shuffled once by the recorded seed, so the two sources interleave."""
    rng = np.random.default_rng(1)
    x, t = unit(rng, 400, 8), unit(rng, 60, 8)
    source = np.array(["bb"] * 200 + ["ni"] * 200)
    rounds = pool_rounds(x, t, "min", None, TMA_POOL_SEED)
    first = source[rounds[0]]
    assert {"bb", "ni"} <= set(first)
    assert list(first) != sorted(first)  # not all bb/ first
    rank = np.argsort(np.random.default_rng(TMA_POOL_SEED).permutation(len(x)))
    assert all(list(rank[r]) == sorted(rank[r]) for r in rounds)  # ascending shuffled position
    assert sorted(i for r in rounds for i in r) == list(range(len(x)))
    assert pool_rounds(x, t, "min", None, 1) != rounds  # another seed, another within-round order
    assert [sorted(r) for r in pool_rounds(x, t, "min", None, 1)] == [sorted(r) for r in rounds]  # same rounds


@pytest.mark.parametrize("mode", ["direct", "lists", "lists-dense-tail"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 300), m=st.integers(1, 12), dup=st.integers(0, 3), budget_frac=st.floats(0.05, 1.0),
       whole=st.booleans(), direction=st.sampled_from(["min", "max"]), seed=st.integers(0, 10_000))
def test_tma_rounds_equal_the_paper_algorithm(monkeypatch, mode, n, m, dup, budget_frac, whole, direction, seed):
    monkeypatch.setattr(tma_module, "DIRECT_ELEMENTS", 1 << 30 if mode == "direct" else 0)
    monkeypatch.setattr(tma_module, "DENSE_ELEMENTS", 1 << 30 if mode == "direct" else
                        (0 if mode == "lists" else 64))
    monkeypatch.setattr(similarity_module, "CHUNK_ELEMENTS", 97)  # many chunks, odd sizes
    rng = np.random.default_rng(seed)
    x = unit(rng, n, 5)
    if dup:  # exact duplicates tie: the paper's argmin takes the lowest index
        x = x[rng.integers(0, max(1, n // (2 * dup)), n)]
    t = unit(rng, m, 5)
    budget = None if whole else max(1, int(budget_frac * n))
    ours = tma_rounds(x, t, direction, budget)
    assert ours == paper_select(x, t, direction, budget)
    flat = [i for r in ours for i in r]
    assert len(flat) == len(set(flat))  # rounds are disjoint
    assert all(1 <= len(r) <= m and r == sorted(r) for r in ours)  # <= M picks, ascending index
    if budget is None:
        assert sorted(flat) == list(range(n))
    else:  # a budgeted run is the whole pool's rounds cut where the budget is reached
        assert tma_module.first_rounds(tma_rounds(x, t, direction), budget) == ours


def test_tma_errors():
    x, t = unit(np.random.default_rng(0), 5, 3), unit(np.random.default_rng(1), 2, 3)
    with pytest.raises(SimilarityError, match="budget 6 is larger than the training pool"):
        tma_rounds(x, t, budget=6)
    with pytest.raises(SimilarityError, match="unknown TMA direction 'near'"):
        tma_rounds(x, t, "near")
    with pytest.raises(SimilarityError, match="unknown TMA variant 'nearest'"):
        tma(x, t, "nearest", budget=4)
    with pytest.raises(SimilarityError, match="test set is empty"):
        tma_rounds(x, np.zeros((0, 3)))


def test_apply_keeps_the_order_and_refuses_repeats():
    assert apply(["a", "b", "c"], [2, 0, 1]) == ["c", "a", "b"]
    with pytest.raises(SimilarityError, match="must not repeat"):
        apply(["a", "b"], [0, 0])
    with pytest.raises(SimilarityError, match="outside"):
        apply(["a", "b"], [0, 2])


def test_tma_exact_ties_between_distinct_vectors(monkeypatch):
    """Distinct training vectors all orthogonal to the test point tie exactly; a candidate list
    then comes back empty and the whole tied group is taken, in index order, as argmin does."""
    monkeypatch.setattr(tma_module, "DIRECT_ELEMENTS", 0)
    monkeypatch.setattr(tma_module, "DENSE_ELEMENTS", 0)
    angles = np.linspace(0, 3, 200)
    train = np.stack([np.zeros(200), np.cos(angles), np.sin(angles)], axis=1)
    test = np.array([[1.0, 0.0, 0.0]])
    assert tma_rounds(train, test, "min", budget=10) == [[i] for i in range(10)]
    assert tma_rounds(train, test, "min", budget=10) == paper_select(train, test, "min", 10)


def test_round_range_is_the_rounds_it_names():
    rng = np.random.default_rng(5)
    x, t = unit(rng, 60, 4), unit(rng, 4, 4)
    rounds = pool_rounds(x, t, "min", None, TMA_POOL_SEED)
    order, labels = tma_round_range(x, t, 2, 4)
    assert order == rounds[2] + rounds[3]
    assert {labels[i] for i in rounds[2]} == {("min", 2)} and {labels[i] for i in rounds[3]} == {("min", 3)}
    first, labels = tma_round_range(x, t, 2, 4, size=len(rounds[2]) + 1)  # E8: every group the same size
    assert first == order[: len(rounds[2]) + 1] and set(labels) == set(first)
    with pytest.raises(SimilarityError, match="only"):
        tma_round_range(x, t, len(rounds), len(rounds) + 2)
    with pytest.raises(SimilarityError, match=f"pick {len(order)} instances, fewer than the {len(order) + 1}"):
        tma_round_range(x, t, 2, 4, size=len(order) + 1)


def test_ot_order_is_the_transport_cost_ascending():
    # two test points; the pool's copies of them cost nothing to move, the far point costs most
    test = np.array([[1.0, 0.0], [0.0, 1.0]])
    train = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [S, S]])
    order = ot(train, test)
    assert order[-1] == 0 and sorted(order) == [0, 1, 2, 3]
    assert set(order[:2]) == {1, 2}


# --- the method registry -------------------------------------------------------------------

def _records(n_per_task: int = 3) -> tuple[list, list]:
    from zsg_core.data import Record

    def rec(i, task, text):
        return Record(f"{task}-{i}", task, [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}])
    train = [rec(i, t, f"{t} question {i}") for t in ("a", "b") for i in range(n_per_task)]
    return train, [rec(0, "held", "a question")]


def test_a_method_is_one_function_and_one_entry(monkeypatch, capsys):
    """Adding a method to METHODS is all it takes: runs accept it, `arrange_records` calls it, the
    CLI offers it, and its declaration decides which parameters apply."""
    from zsg_core import arrange
    from zsg_core.cli import main
    from zsg_core.config import run_config
    from zsg_core.data import DataError

    calls = []

    def backwards(a: arrange.Inputs):
        calls.append(a)
        return list(range(len(a.tasks)))[::-1], None

    m = arrange.Method("backwards", backwards, "test: the list reversed", features=False, seeded=True)
    monkeypatch.setitem(arrange.METHODS, "backwards", m)
    train, test = _records()
    got = arrange.arrange_records(train, test, "backwards", arrangement_seed=7)
    assert got.order == [5, 4, 3, 2, 1, 0] and calls[-1].seed == 7 and calls[-1].train is None  # no embedding asked for
    assert run_config(arrangement="backwards", arrangement_seed=3).arrangement_seed == 3  # seeded, so kept
    with pytest.raises(DataError, match="run parameters: rounds applies to tma-min, tma-max only, not 'backwards'"):
        run_config(arrangement="backwards", rounds=[0, 1])
    with pytest.raises(SimilarityError, match="tma_budget applies to the tma-. methods only, not 'backwards'"):
        arrange.get_method("backwards").check(tma_budget=3)
    with pytest.raises(SystemExit) as e:
        main(["arrange", "--help"])
    assert e.value.code == 0 and "backwards    test: the list reversed" in capsys.readouterr().out


def test_the_declaration_decides_what_applies():
    from zsg_core import arrange

    assert {n for n, m in arrange.METHODS.items() if m.seeded} == {"random", "rt", "tma-rt", "family-nft", "task-nft",
                                                                             "length-nft", "adaptive-gradient",
                                                                             "adaptive-lookahead"}
    assert {n for n, m in arrange.METHODS.items() if m.takes_rounds} == {"tma-min", "tma-max"}
    adaptive = {n for n, m in arrange.METHODS.items() if m.adaptive}
    assert adaptive == {"adaptive-loss", "adaptive-gradient", "adaptive-lookahead"}
    assert {n for n, m in arrange.METHODS.items() if not m.features} == {"random", "round-robin", "cluster"} | adaptive
    assert all(m.embed_text == ("first-turn" if n.startswith("tma-") else "all") for n, m in arrange.METHODS.items())
    with pytest.raises(SimilarityError, match="unknown arrangement method 'nearest'; choose one of random"):
        arrange.get_method("nearest")
    arrange.get_method("tma-min").check(tma_budget=4, rounds=(0, 1))  # E8: the first 4 of those rounds
    with pytest.raises(SimilarityError, match=r"rounds must be \[first, end\)"):
        arrange.get_method("tma-min").check(rounds=(3, 3))
    with pytest.raises(SimilarityError, match="tma_budget of tma-nft must be an integer >= 2"):
        arrange.get_method("tma-nft").check(tma_budget=0)
    with pytest.raises(SimilarityError, match="embed_text applies to the methods that embed"):
        arrange.get_method("cluster").check(embed_text="all")
    arrange.get_method("tma-max").check(rounds=[1, 3])  # accepted
