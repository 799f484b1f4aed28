"""Distances between training and test embeddings, and the measures built on them (paper.md 2.3, E3-E5, E9).

All functions take L2-normalised embeddings, `train` (N x d) and `test` (M x d), as the paper's
all-MiniLM-L6-v2 produces them. The distance is the paper's d(x, y) = -cos(x, y) in [-1, 1]:
lower is more similar. Work is chunked over the training rows, so N can be Flan-mini's 1.3M
without ever holding an N x M matrix.
"""
from __future__ import annotations

from typing import Iterator, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

CHUNK_ELEMENTS = 1 << 24  # ~16M scores (64 MB in float32) per chunk of the N x M product
MAX_CHUNK_ROWS = 1 << 16  # and at most 64k training rows (96 MB at d=384) gathered at once


class SimilarityError(ValueError):
    """Embeddings of the wrong shape, with NaNs, not normalised, or empty."""


def check_embeddings(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (train, test) pair: 2-D, same width, finite, unit rows, non-empty test set."""
    train, test = np.asarray(train), np.asarray(test)
    for name, a in (("train", train), ("test", test)):
        if a.ndim != 2:
            raise SimilarityError(f"{name} embeddings must be 2-D (rows x dim), got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise SimilarityError(f"{name} embeddings must be floating point, got {a.dtype}")
    if test.shape[0] == 0:
        raise SimilarityError("the test set is empty: nothing to measure similarity to")
    if train.shape[0] == 0:
        raise SimilarityError("the training set is empty: nothing to arrange")
    if train.shape[1] != test.shape[1]:
        raise SimilarityError(f"train has dimension {train.shape[1]} but test has {test.shape[1]}")
    for name, a in (("train", train), ("test", test)):
        norms = np.sqrt(np.einsum("ij,ij->i", a, a))  # one pass; NaN and inf propagate into it
        if not np.isfinite(norms).all():
            bad = np.flatnonzero(~np.isfinite(norms))
            raise SimilarityError(f"{name} embeddings contain NaN or inf (rows {bad[:5].tolist()})")
        if np.abs(norms - 1).max() > 1e-3:
            i = int(np.abs(norms - 1).argmax())
            raise SimilarityError(f"{name} embeddings must be L2-normalised; row {i} has norm {norms[i]:.4f}")
    dtype = np.result_type(train.dtype, test.dtype, np.float32)
    return train.astype(dtype, copy=False), test.astype(dtype, copy=False)


def chunk_rows(n_cols: int) -> int:
    """Rows per chunk: ~CHUNK_ELEMENTS scores, and never more than MAX_CHUNK_ROWS input rows (a
    gathered chunk of training rows is a copy)."""
    return max(1, min(CHUNK_ELEMENTS // max(n_cols, 1), MAX_CHUNK_ROWS))


def chunks(n_rows: int, n_cols: int) -> Iterator[slice]:
    """Row slices so that each chunk of an n_rows x n_cols product stays small."""
    step = chunk_rows(n_cols)
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def min_avg_distance(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per training row: MD = min_j d(i, t_j) and AD = mean_j d(i, t_j), without an N x M matrix.

    AD needs no matrix at all: the mean of the dot products is the dot product with the mean.
    """
    train, test = check_embeddings(train, test)
    md = np.empty(len(train), dtype=train.dtype)
    for s in chunks(len(train), len(test)):
        md[s] = -(train[s] @ test.T).max(axis=1)
    ad = -(train @ test.mean(axis=0))
    return md, ad


def wsd(train: np.ndarray, test: np.ndarray, w_min: float = 1.0, w_avg: float | None = None) -> np.ndarray:
    """Weighted Similarity Distance per training row: w_min * MD + w_avg * AD (paper.md section 5).

    `w_avg=None` follows the paper's code (split_data_job.py), not a tuned constant, wherever that
    rule is defined (`wsd_weight`). The paper's text only names generic weights; its code fixes
    w_min = 1 and w_avg = mean(MD) / mean(AD).
    """
    return combine_wsd(*min_avg_distance(train, test), w_min, w_avg)


# AD counts as centred (its mean not bounded away from 0) when |mean(AD)| is below this share of
# mean(|AD|): the distances are then of both signs in about equal measure, as for features centred
# on the pool (the LM's hidden states), and mean(MD) / mean(AD) is noise of either sign.
CENTRED_SHARE = 0.1


def wsd_weight(md: np.ndarray, ad: np.ndarray) -> tuple[float, str]:
    """(w_avg, the rule that gave it): the weight of AD in WSD, positive and finite for any
    representation.

    - "mean ratio" (the paper's code): mean(MD) / mean(AD), which rescales AD to MD's mean; used
      where mean(AD) is bounded away from 0 (|mean(AD)| >= CENTRED_SHARE * mean(|AD|)) and has
      MD's sign, as for MiniLM's unit vectors, whose distances to a test set are mostly of one sign.
    - "spread ratio": sd(MD) / sd(AD), which rescales AD to MD's spread; used where AD is centred.
      It orders exactly as z(MD) + z(AD) (z-scoring shifts and scales; a shift changes no order), so
      it is scale-free. On centred features the mean ratio is noise of either sign and unbounded
      size, and a negative weight puts the farthest instances first (tests/test_similarity.py).
    Where MD or AD is constant over the training rows it changes no order, and the weight is 1."""
    md, ad = np.asarray(md, dtype=np.float64), np.asarray(ad, dtype=np.float64)
    if len(md) == 0 or len(md) != len(ad):
        raise SimilarityError(f"MD and AD must be non-empty and of one length, got {len(md)} and {len(ad)}")
    mean_md, mean_ad, size_ad = md.mean(), ad.mean(), np.abs(ad).mean()
    if size_ad > 0 and abs(mean_ad) >= CENTRED_SHARE * size_ad and mean_md * mean_ad > 0:
        return float(mean_md / mean_ad), "mean ratio"
    sd_md, sd_ad = md.std(), ad.std()
    return (float(sd_md / sd_ad), "spread ratio") if sd_md > 0 and sd_ad > 0 else (1.0, "one term constant")


def combine_wsd(md: np.ndarray, ad: np.ndarray, w_min: float = 1.0, w_avg: float | None = None) -> np.ndarray:
    """`wsd` from already computed MD and AD (see `min_avg_distance`); `w_avg=None`: `wsd_weight`.
    A weight given by hand may be 0 (order by the other term alone) but never negative or
    infinite: a negative one turns nearest-first into farthest-first, an infinite one is no order."""
    if w_avg is None:
        w_avg = wsd_weight(md, ad)[0]
    for name, w in (("w_min", w_min), ("w_avg", w_avg)):
        if not (np.isfinite(w) and w >= 0):
            raise SimilarityError(f"WSD weight {name} must be finite and not negative, got {w!r}")
    if w_min == 0 and w_avg == 0:
        raise SimilarityError("WSD weights w_min and w_avg are both 0: nothing to order by")
    return w_min * md + w_avg * ad


MEASURES = ("Cosine-Avg", "Cosine-Min", "Cosine-Max", "Cosine-Centroid",
            "Euclidean-Avg", "Euclidean-Min", "Euclidean-Max", "Euclidean-Centroid")


def _prefix_ends(n: int, every: int) -> np.ndarray:
    if not isinstance(every, (int, np.integer)) or every < 1:
        raise SimilarityError(f"every must be a positive integer, got {every!r}")
    return np.arange(every, n + 1, every)


def prefix_measures(train_in_order: np.ndarray, test: np.ndarray, every: int) -> pd.DataFrame:
    """E3's eight embedding measures of the training prefix seen so far against a test set.

    For each prefix length n = every, 2*every, ... <= N (the paper: every 160 = 10 steps x 16):
    Avg / Min / Max over all (prefix x test) pairs of the distance, and Centroid = the distance
    between the prefix mean and the test mean (cosine: -cos of the means; euclidean: the norm of
    their difference), for the negative-cosine and the Euclidean distance. One pass: running
    min / max / sums of each training row's statistics. Returns a tidy table (seen, measure, value).
    """
    train, test = check_embeddings(train_in_order, test)
    ends = _prefix_ends(len(train), every)
    m = len(test)
    row_min = np.empty(len(train))
    row_max = np.empty(len(train))
    row_sum_cos = np.empty(len(train))
    row_sum_euc = np.empty(len(train))
    for s in chunks(len(train), m):
        d = -(train[s] @ test.T).astype(np.float64)
        row_min[s], row_max[s] = d.min(axis=1), d.max(axis=1)
        row_sum_cos[s] = d.sum(axis=1)
        row_sum_euc[s] = np.sqrt(np.clip(2 + 2 * d, 0, None)).sum(axis=1)
    cum_min = np.minimum.accumulate(row_min)[ends - 1]
    cum_max = np.maximum.accumulate(row_max)[ends - 1]
    pairs = ends * m
    avg_cos = np.cumsum(row_sum_cos)[ends - 1] / pairs
    avg_euc = np.cumsum(row_sum_euc)[ends - 1] / pairs
    prefix_mean = np.cumsum(train.astype(np.float64), axis=0)[ends - 1] / ends[:, None]
    test_mean = test.astype(np.float64).mean(axis=0)
    cent_cos = -(prefix_mean @ test_mean) / (np.linalg.norm(prefix_mean, axis=1) * np.linalg.norm(test_mean))
    cent_euc = np.linalg.norm(prefix_mean - test_mean, axis=1)
    values = {
        "Cosine-Avg": avg_cos, "Cosine-Min": cum_min, "Cosine-Max": cum_max, "Cosine-Centroid": cent_cos,
        "Euclidean-Avg": avg_euc, "Euclidean-Min": np.sqrt(np.clip(2 + 2 * cum_min, 0, None)),
        "Euclidean-Max": np.sqrt(np.clip(2 + 2 * cum_max, 0, None)), "Euclidean-Centroid": cent_euc,
    }
    return pd.DataFrame([{"seen": int(n), "measure": k, "value": float(v[i])}
                         for k, v in values.items() for i, n in enumerate(ends)])


def _bigrams(text: str) -> list[tuple[str, str]]:
    tokens = text.split()
    return list(zip(tokens, tokens[1:]))


def bigram_kl(train_texts_in_order: Sequence[str], test_texts: Sequence[str], every: int,
              weighting: Literal["paper", "proper"] = "paper") -> pd.DataFrame:
    """E3's KL measure: KL(bigram distribution of the training prefix || that of the test texts).

    Bigrams of whitespace tokens, within each text. p = prefix bigram frequencies, q = test bigram
    frequencies, each term p(b) * log(clip(p(b) / (q(b) + 1e-10), 1e-10, inf)) as in the paper.

    `weighting="paper"` reproduces the code's quirk (calculate_dataset_similarity_per_task_kl.py):
    the sum runs over the LIST of all bigrams of prefix + test with duplicates kept, so each
    distinct bigram's term is counted (prefix count + test count) times, which is why the paper's
    values are in the thousands. `weighting="proper"` sums each distinct bigram once: the actual
    KL divergence (terms with p(b) = 0 vanish either way).
    """
    return bigram_kl_per_task(train_texts_in_order, {"": test_texts}, every, weighting).drop(columns="task")


def bigram_kl_per_task(train_texts_in_order: Sequence[str], test_texts_by_task: Mapping[str, Sequence[str]],
                       every: int, weighting: Literal["paper", "proper"] = "paper") -> pd.DataFrame:
    """`bigram_kl` of one training order against each task's test texts at once: the prefix's
    bigram counts are the same for every task, so the training texts are read once and every
    prefix is scored against all tasks in one array operation. Columns task, seen, measure, value."""
    if weighting not in ("paper", "proper"):
        raise SimilarityError(f"unknown weighting {weighting!r}; use 'paper' or 'proper'")
    if not test_texts_by_task or any(not texts for texts in test_texts_by_task.values()):
        raise SimilarityError("the test set is empty: nothing to measure similarity to")
    ends = _prefix_ends(len(train_texts_in_order), every)
    # the prefix's distinct bigrams, numbered: a term with p(b) = 0 vanishes, so a bigram only the
    # tests hold counts in q's total and nowhere else (the arrays stay the size of the prefix's vocabulary)
    index: dict[tuple[str, str], int] = {}
    train_ids = [np.array([index.setdefault(b, len(index)) for b in _bigrams(t)], dtype=np.int64)
                 for t in train_texts_in_order[: ends[-1] if len(ends) else 0]]
    tasks = list(test_texts_by_task)
    test_bigrams = [[b for t in test_texts_by_task[task] for b in _bigrams(t)] for task in tasks]
    q_totals = np.array([[len(bigrams)] for bigrams in test_bigrams], dtype=float)
    q_counts = np.stack([np.bincount(np.array([index[b] for b in bigrams if b in index], dtype=np.int64),
                                     minlength=len(index)) for bigrams in test_bigrams]).astype(float)
    empty = [task for task, total in zip(tasks, q_totals[:, 0]) if not total]
    if empty:
        raise SimilarityError(f"the test texts have no bigrams (every text is a single word or empty): {empty[:3]}")
    q = q_counts / q_totals  # task x prefix bigram
    p_counts = np.zeros(len(index))
    rows, done = [], 0
    for n in ends:  # strictly increasing: each adds the texts since the last end
        p_counts += np.bincount(np.concatenate(train_ids[done:n]), minlength=len(index))
        done = n
        seen = np.flatnonzero(p_counts)
        kl = np.zeros(len(tasks))
        if len(seen):  # terms with p(b) = 0 vanish: only the prefix's bigrams contribute
            c = p_counts[seen]
            p = c / c.sum()
            terms = p * np.log(np.clip(p / (q[:, seen] + 1e-10), 1e-10, None))
            kl = (terms * (c + q_counts[:, seen])).sum(axis=1) if weighting == "paper" else terms.sum(axis=1)
        rows += [{"task": task, "seen": int(n), "measure": "KL", "value": float(v)} for task, v in zip(tasks, kl)]
    return pd.DataFrame(rows, columns=["task", "seen", "measure", "value"])


OT_MAX_ELEMENTS = 50_000_000  # the exact EMD needs the dense N x M cost matrix and plan


def ot_cost(train: np.ndarray, test: np.ndarray, p: int = 1) -> np.ndarray:
    """Per-training-row transport cost under the exact uniform-to-uniform EMD plan (E9, `method="ot"`).

    As the paper's pW_cal: cost C = Euclidean distance ** p (POT `ot.dist(metric="euclidean")`),
    plan G = `ot.emd(uniform N, uniform M, C)`, result = row sums of G * C. Lower = cheaper to move
    to the test set. Exact, so memory grows with N x M: refused above OT_MAX_ELEMENTS.
    """
    import ot

    train, test = check_embeddings(train, test)
    if len(train) * len(test) > OT_MAX_ELEMENTS:
        raise SimilarityError(f"ot_cost needs a dense {len(train)} x {len(test)} plan, over {OT_MAX_ELEMENTS:,} "
                              "entries; subsample the pool or use wsd")
    x, y = train.astype(np.float64), test.astype(np.float64)
    cost = ot.dist(x, y, metric="euclidean") ** p
    plan = ot.emd(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost)
    return (plan * cost).sum(axis=1)
