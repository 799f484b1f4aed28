"""Distances and measures on hand-checkable vectors."""
from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from zsg_core.similarity import (
    SimilarityError,
    bigram_kl,
    bigram_kl_per_task,
    check_embeddings,
    combine_wsd,
    min_avg_distance,
    ot_cost,
    prefix_measures,
    wsd,
    wsd_weight,
)

S = math.sqrt(0.5)
# three training points on the unit circle (x, y, diagonal), two test points (x and y axes)
TRAIN = np.array([[1.0, 0.0], [0.0, 1.0], [S, S]])
TEST = np.array([[1.0, 0.0], [0.0, 1.0]])


def test_wsd_follows_the_paper_code():
    md, ad = min_avg_distance(TRAIN, TEST)
    assert np.allclose(md, [-1, -1, -S]) and np.allclose(ad, [-0.5, -0.5, -S])
    w_avg = md.mean() / ad.mean()  # the code's data-dependent weight
    assert np.allclose(wsd(TRAIN, TEST), md + w_avg * ad)
    assert np.allclose(wsd(TRAIN, TEST, w_min=2.0, w_avg=0.0), 2 * md)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_wsd_weight_is_positive_and_orders_nearest_first_on_centred_features():
    """Features centred on the pool (the LM's hidden states) make mean(AD) ~0: the paper's ratio
    then came out anywhere from about -84,000 to +57,000, its sign flipping from seed to seed, and a
    negative weight put the farthest instances first. The weight is now positive on every seed,
    and WSD still rises with the nearest distance."""
    papers = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        pool = rng.standard_normal((400, 32))
        pool -= pool.mean(axis=0)  # centred on the pool, as features.compute centres hidden states
        pool = _unit(pool)
        train, test = pool[:360], pool[360:]
        md, ad = min_avg_distance(train, test)
        papers.append(md.mean() / ad.mean())
        w, rule = wsd_weight(md, ad)
        assert rule == "spread ratio" and 0 < w < 100 and w == pytest.approx(md.std() / ad.std())
        score = combine_wsd(md, ad)
        z = (md - md.mean()) / md.std() + (ad - ad.mean()) / ad.std()
        assert (np.argsort(score, kind="stable") == np.argsort(z, kind="stable")).all()  # z(MD) + z(AD)'s order
        assert np.corrcoef(score, md)[0, 1] > 0.3  # nearest first still means nearest first
    assert min(papers) < 0  # what the paper's ratio alone would have used here: farthest first


def test_the_paper_weight_is_kept_where_it_is_defined():
    """MiniLM-like vectors (one common direction, as sentence embeddings share one): distances
    of one sign, mean(AD) far from 0, the paper's mean(MD) / mean(AD) exactly."""
    rng = np.random.default_rng(0)
    x = _unit(rng.standard_normal((300, 16)) * 0.4 + 1.0)
    md, ad = min_avg_distance(x[:250], x[250:])
    assert wsd_weight(md, ad) == (pytest.approx(md.mean() / ad.mean()), "mean ratio")
    assert wsd_weight(np.array([-1.0, -0.8]), np.array([0.5, 0.7]))[1] == "spread ratio"  # signs differ: never negative
    assert wsd_weight(np.array([-1.0, -1.0]), np.array([0.1, -0.1])) == (1.0, "one term constant")


@pytest.mark.parametrize("w_avg", [-0.5, float("inf"), float("nan")])
def test_a_weight_that_would_reverse_or_swamp_the_order_is_refused(w_avg):
    md, ad = min_avg_distance(TRAIN, TEST)
    with pytest.raises(SimilarityError, match="w_avg must be finite and not negative"):
        combine_wsd(md, ad, w_avg=w_avg)
    with pytest.raises(SimilarityError, match="both 0"):
        combine_wsd(md, ad, w_min=0.0, w_avg=0.0)


def test_wsd_chunks_give_the_same_answer(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = x[:7]
    full = wsd(x, t)
    import zsg_core.similarity as sim

    monkeypatch.setattr(sim, "CHUNK_ELEMENTS", 50)
    assert np.allclose(wsd(x, t), full)


@pytest.mark.parametrize("train, test, message", [
    (np.zeros((0, 2)), TEST, "training set is empty"),
    (TRAIN, np.zeros((0, 2)), "test set is empty"),
    (TRAIN, np.ones((2, 3)) / math.sqrt(3), "dimension 2 but test has 3"),
    (np.array([[np.nan, 1.0]]), TEST, r"train embeddings contain NaN or inf \(rows \[0\]\)"),
    (np.array([[3.0, 4.0]]), TEST, "must be L2-normalised; row 0 has norm 5.0000"),
    (np.array([1.0, 0.0]), TEST, r"must be 2-D"),
    (np.array([[1, 0]]), TEST, "floating point"),
])
def test_bad_embeddings(train, test, message):
    with pytest.raises(SimilarityError, match=message):
        check_embeddings(train, test)


def test_prefix_measures_by_hand():
    table = prefix_measures(TRAIN, TEST, every=1)
    v = table.pivot(index="seen", columns="measure", values="value")
    assert list(v.index) == [1, 2, 3]
    assert np.allclose(v["Cosine-Min"], [-1, -1, -1]) and np.allclose(v["Cosine-Max"], [0, 0, 0])
    assert np.allclose(v["Cosine-Avg"], [-0.5, -0.5, (-1 - 1 - 2 * S) / 6])
    # centroid of the first point vs the test centroid (S, S)/... : cos 45 degrees
    assert np.isclose(v["Cosine-Centroid"][1], -S) and np.isclose(v["Cosine-Centroid"][2], -1)
    assert np.allclose(v["Euclidean-Min"], 0) and np.allclose(v["Euclidean-Max"], math.sqrt(2))
    assert np.isclose(v["Euclidean-Centroid"][2], 0)  # mean of x and y equals the test mean
    assert np.isclose(v["Euclidean-Avg"][1], math.sqrt(2) / 2)
    assert set(table.measure) == {"Cosine-Avg", "Cosine-Min", "Cosine-Max", "Cosine-Centroid", "Euclidean-Avg",
                                  "Euclidean-Min", "Euclidean-Max", "Euclidean-Centroid"}
    with pytest.raises(SimilarityError, match="every must be a positive integer"):
        prefix_measures(TRAIN, TEST, every=0)


def test_prefix_measures_equal_brute_force():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = x[:4]
    v = prefix_measures(x, t, every=7).pivot(index="seen", columns="measure", values="value")
    for n in v.index:
        d = -(x[:n] @ t.T)
        assert np.isclose(v.loc[n, "Cosine-Avg"], d.mean()) and np.isclose(v.loc[n, "Cosine-Min"], d.min())
        assert np.isclose(v.loc[n, "Euclidean-Avg"], np.sqrt(2 + 2 * d).mean())


def test_bigram_kl_paper_quirk_and_proper():
    train = ["a b c", "a b"]
    test = ["a b", "b c"]
    # after the first text: p = {ab: .5, bc: .5}, q = {ab: .5, bc: .5} -> KL 0 either way
    # after both: p = {ab: 2/3, bc: 1/3}, q = {ab: .5, bc: .5}
    paper = bigram_kl(train, test, every=1, weighting="paper").value.tolist()
    proper = bigram_kl(train, test, every=1, weighting="proper").value.tolist()
    p_ab, p_bc = 2 / 3, 1 / 3
    kl = p_ab * math.log(p_ab / 0.5) + p_bc * math.log(p_bc / 0.5)
    assert np.allclose(proper, [0, kl], atol=1e-8)
    # the paper sums over the LIST of prefix + test bigrams: ab appears 2 + 1 times, bc 1 + 1
    dup = 3 * p_ab * math.log(p_ab / 0.5) + 2 * p_bc * math.log(p_bc / 0.5)
    assert np.allclose(paper, [0, dup], atol=1e-8)
    with pytest.raises(SimilarityError, match="unknown weighting"):
        bigram_kl(train, test, 1, weighting="set")


def _kl_by_definition(train, test, every, weighting):
    """The paper's KL written out bigram by bigram (a Counter per prefix), the reference."""
    q = Counter(b for t in test for b in zip(t.split(), t.split()[1:]))
    p, out = Counter(), []
    for n, text in enumerate(train, 1):
        p.update(zip(text.split(), text.split()[1:]))
        if n % every == 0:
            total, q_total = sum(p.values()), sum(q.values())
            out.append(sum(c / total * math.log(max(c / total / (q[b] / q_total + 1e-10), 1e-10))
                           * ((c + q[b]) if weighting == "paper" else 1) for b, c in p.items()))
    return out


def test_bigram_kl_of_every_task_at_once_is_each_task_alone():
    rng = random.Random(0)
    words = "a b c d e f g h".split()
    text = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(1, 9)))
    train = [text() for _ in range(40)]
    tests = {f"task{k}": [text() + " h" for _ in range(rng.randint(1, 4))] for k in range(5)}
    tests["unseen bigrams"] = ["a b zz yy", "yy zz"]  # bigrams no prefix holds count in q's total only
    for weighting in ("paper", "proper"):
        both = bigram_kl_per_task(train, tests, 3, weighting)
        assert sorted(set(both.seen)) == list(range(3, 40, 3))
        for task, texts in tests.items():
            got = both[both.task == task].value.tolist()
            assert np.allclose(got, _kl_by_definition(train, texts, 3, weighting), rtol=1e-9, atol=1e-12)
            assert np.allclose(got, bigram_kl(train, texts, 3, weighting).value, rtol=1e-12)
    with pytest.raises(SimilarityError, match="no bigrams"):
        bigram_kl_per_task(train, {"one-word": ["x"]}, 3)
    with pytest.raises(SimilarityError, match="empty"):
        bigram_kl_per_task(train, {"none": []}, 3)


def test_ot_cost_uniform_plan():
    # two training points, two test points: the optimal plan matches each to its own copy
    cost = ot_cost(TRAIN[:2], TEST)
    assert np.allclose(cost, [0, 0])
    cost = ot_cost(TRAIN, TEST[:1])  # everything moves to the single test point
    assert np.allclose(cost, np.array([0, math.sqrt(2), math.sqrt(2 - 2 * S)]) / 3)
