"""Selectors: choose ``budget`` examples from a pool, each after its paper.

Every selector is a pure function ``(pool, budget, seed, ...) -> chosen``: ``chosen`` is a list of
indices into ``pool`` in the order they were picked (best or first-picked first), at most
``budget`` long, and the same for the same inputs and seed. Anything costly (embeddings, judge
scores, model losses) is computed elsewhere (``embed``, ``scoring``) and passed in as arrays, so
each rule here can be tested on small hand-built pools.

>>> pool = [Example([Message("user", "q"), Message("assistant", "a" * n)]) for n in (3, 9, 5)]
>>> longest(pool, 2, seed=0)
[1, 2]
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from limakit.records.example import Example, Message  # noqa: F401  (Message: the doctest)


def _tie_keys(n: int, seed: int) -> np.ndarray:
    """A seeded random permutation rank per item: breaks ties without favouring pool order."""
    return np.random.default_rng(seed).permutation(n)


def rank_by_score(scores: np.ndarray, budget: int, seed: int) -> list[int]:
    """Indices of the ``budget`` highest finite scores, ties broken by the seed."""
    scores = np.asarray(scores, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(scores))
    tie = _tie_keys(len(scores), seed)
    # lexsort sorts by the last key first: score descending, then the seeded tie rank.
    order = ok[np.lexsort((tie[ok], -scores[ok]))]
    return [int(i) for i in order[:budget]]


def random_select(pool: Sequence[Example], budget: int, seed: int) -> list[int]:
    """A seeded uniform sample: the baseline every paper below compares against."""
    return random.Random(seed).sample(range(len(pool)), min(budget, len(pool)))


def longest(
    pool: Sequence[Example], budget: int, seed: int, lengths: Sequence[int] | None = None
) -> list[int]:
    """The examples with the longest responses.

    Zhao et al. 2024, "Long Is More for Alignment: A Simple but Tough-to-Beat Baseline for
    Instruction Fine-Tuning": the 1,000 longest responses of a pool train a model that beats
    LIMA's and AlpaGasus's selections in their head-to-head evaluations. The paper counts
    tokens; ``lengths`` defaults to the answer's characters, a tokenizer-free proxy that makes the
    choice the same whatever model is trained next. Ties are broken by the seed.
    """
    if lengths is None:
        lengths = [len(ex.answer or "") for ex in pool]
    return rank_by_score(np.asarray(lengths, dtype=np.float64), budget, seed)


def _check_embeddings(pool: Sequence[Example], embeddings: np.ndarray) -> np.ndarray:
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(pool):
        raise ValueError(f"embeddings must be ({len(pool)}, dim), got {emb.shape}")
    return emb


def k_center_greedy(embeddings: np.ndarray, budget: int, seed: int) -> list[int]:
    """Greedy 2-approximate k-center under cosine distance (rows L2-normalised).

    The first centre is drawn with the seed; each next one is the point farthest from all the
    centres so far. Keeps one (n,) float32 array of distances: memory is flat in the budget.
    """
    n = len(embeddings)
    if n == 0 or budget <= 0:
        return []
    first = int(np.random.default_rng(seed).integers(n))
    chosen = [first]
    dist = 1.0 - embeddings @ embeddings[first]  # (n,) distance to the nearest centre
    dist[first] = -np.inf
    for _ in range(min(budget, n) - 1):
        nxt = int(np.argmax(dist))
        if not np.isfinite(dist[nxt]):
            break
        chosen.append(nxt)
        np.minimum(dist, 1.0 - embeddings @ embeddings[nxt], out=dist)
        dist[chosen] = -np.inf
    return chosen


def diverse(
    pool: Sequence[Example], budget: int, seed: int, *, embeddings: np.ndarray
) -> list[int]:
    """Diversity first: k-center greedy over sentence embeddings.

    Sener & Savarese 2018, "Active Learning for Convolutional Neural Networks: A Core-Set
    Approach": the subset whose points are the centres of the smallest balls covering the whole
    pool; the greedy farthest-point rule is within a factor 2 of the best cover. Outliers come
    early (they are far from everything), which is the price of covering all of the pool.
    """
    return k_center_greedy(_check_embeddings(pool, embeddings), budget, seed)


def kmeans(
    embeddings: np.ndarray, k: int, seed: int, iters: int = 25, restarts: int = 2, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (cosine) with k-means++ seeding; returns (labels (n,), centres (k, d)).

    The best of ``restarts`` seeded runs (highest total similarity to the centres) is kept: one
    unlucky seeding can put two centres in one group, which Lloyd's steps never undo. Distances
    are computed ``chunk`` rows at a time so memory stays flat in the pool size.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    best = None
    for r in range(restarts):
        labels, centres, fit = _kmeans_once(x, k, seed * 1000 + r, iters, chunk)
        if best is None or fit > best[2]:
            best = (labels, centres, fit)
    return best[0], best[1]


def _kmeans_once(x: np.ndarray, k: int, seed: int, iters: int, chunk: int):
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = x[rng.integers(n)]
    d2 = np.maximum(0.0, 2.0 - 2.0 * (x @ centres[0]))
    for j in range(1, k):
        total = float(d2.sum())
        pick = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres[j] = x[pick]
        np.minimum(d2, np.maximum(0.0, 2.0 - 2.0 * (x @ centres[j])), out=d2)
    labels = np.full(n, -1, dtype=np.int64)
    best_sim = np.empty(n, dtype=np.float32)
    for _ in range(iters):
        new = np.empty(n, dtype=np.int64)
        for s in range(0, n, chunk):
            sims = x[s : s + chunk] @ centres.T  # (chunk, k)
            new[s : s + chunk] = np.argmax(sims, axis=1)
            best_sim[s : s + chunk] = sims[np.arange(len(sims)), new[s : s + chunk]]
        if np.array_equal(new, labels):
            break
        labels = new
        sums = np.zeros_like(centres)
        order = np.argsort(labels, kind="stable")
        present, starts = np.unique(labels[order], return_index=True)
        sums[present] = np.add.reduceat(x[order], starts, axis=0)  # per-cluster sums
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        centres = np.where(empty[:, None], centres, sums / np.maximum(norms, 1e-12))
    return labels, centres, float(best_sim.sum(dtype=np.float64))


def clusters(
    pool: Sequence[Example],
    budget: int,
    seed: int,
    *,
    embeddings: np.ndarray,
    k: int | None = None,
    labels: np.ndarray | None = None,
) -> list[int]:
    """k-means over embeddings, then the budget spread evenly over the clusters.

    Chen et al. 2023, "Maybe Only 0.5% Data is Needed: A Preliminary Exploration of Low Training
    Data Instruction Tuning": cluster the pool's instruction embeddings and draw from every
    cluster, so that each kind of task is represented. ``k`` defaults to budget / 10 (about ten
    examples per cluster). The picks are ordered round-robin over clusters (a seeded random order
    inside each), so any prefix of the result is itself spread over the clusters; a cluster
    smaller than its share leaves the rest to the others. ``labels`` (n,) skips the clustering
    when it was already done.
    """
    emb = _check_embeddings(pool, embeddings)
    if not len(pool) or budget <= 0:
        return []
    if labels is None:
        labels, _ = kmeans(emb, k or max(1, budget // 10), seed)
    rng = np.random.default_rng(seed + 1)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in range(int(labels.max()) + 1)]
    members = [m for m in members if len(m)]
    order = rng.permutation(len(members))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(budget, len(pool)):
        for c in order:
            if depth < len(members[c]):
                chosen.append(int(members[c][depth]))
                if len(chosen) == budget:
                    break
        depth += 1
    return chosen


def judge_rated(
    pool: Sequence[Example], budget: int, seed: int, *, scores: np.ndarray
) -> list[int]:
    """The top-rated pairs by an LLM judge's 1-5 score.

    Chen et al. 2023, "AlpaGasus: Training a Better Alpaca with Fewer Data": a strong LLM rates
    each (instruction, response) pair for accuracy and helpfulness; keeping only the high-rated
    ones trains a better model than the whole pool. Ties (many pairs share a score) are broken by
    the seed; pairs without a score (NaN: the judge gave no parseable rating) are never taken.
    """
    if len(scores) != len(pool):
        raise ValueError(f"scores must have {len(pool)} entries, got {len(scores)}")
    return rank_by_score(np.asarray(scores, dtype=np.float64), budget, seed)


def deita(
    pool: Sequence[Example],
    budget: int,
    seed: int,
    *,
    complexity: np.ndarray,
    quality: np.ndarray,
    embeddings: np.ndarray,
    max_similarity: float = 0.9,
) -> list[int]:
    """Score-first, diversity-aware selection.

    Liu et al. 2023, "What Makes Good Data for Alignment? A Comprehensive Study of Automatic Data
    Selection in Instruction Tuning" (Deita): each pair gets a complexity score (of the
    instruction) and a quality score (of the response); their product ranks the pool, and walking
    down that ranking an example is taken only if its cosine similarity to every example already
    taken is below ``max_similarity`` (the "Repr Filter"), so near-copies of a high scorer never
    crowd out the rest. Fewer than ``budget`` come back when the filter rejects too many.
    """
    emb = _check_embeddings(pool, embeddings)
    combined = np.asarray(complexity, dtype=np.float64) * np.asarray(quality, dtype=np.float64)
    ranked = rank_by_score(combined, len(pool), seed)
    return similarity_filter(emb, ranked, budget, max_similarity)


def similarity_filter(
    embeddings: np.ndarray, ranked: Sequence[int], budget: int, max_similarity: float
) -> list[int]:
    """Walk ``ranked`` and keep an index only if its cosine similarity to each kept one is below
    ``max_similarity``; stops at ``budget``."""
    if budget <= 0:
        return []
    kept = np.empty((min(budget, len(ranked)), embeddings.shape[1]), dtype=np.float32)
    chosen: list[int] = []
    for i in ranked:
        v = embeddings[i]
        if chosen and float(np.max(kept[: len(chosen)] @ v)) >= max_similarity:
            continue
        kept[len(chosen)] = v
        chosen.append(int(i))
        if len(chosen) == budget:
            break
    return chosen


def ifd(
    pool: Sequence[Example],
    budget: int,
    seed: int,
    *,
    scores: np.ndarray,
    max_ifd: float = 1.0,
) -> list[int]:
    """The highest instruction-following difficulty below ``max_ifd``.

    Li et al. 2023, "From Quantity to Quality: Boosting LLM Performance with Self-Guided Data
    Selection for Instruction Tuning": IFD = loss(answer | prompt) / loss(answer alone), from one
    model's per-token losses. Near 0 the answer follows almost mechanically from the prompt; near
    1 the prompt barely helps, so the pair teaches the model to follow instructions it does not
    yet follow. At 1 or above the prompt does not help at all (or misleads): the paper drops such
    pairs as misaligned, and so do we; among the rest the highest IFD is taken first.
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(s) != len(pool):
        raise ValueError(f"scores must have {len(pool)} entries, got {len(s)}")
    s = np.where(s < max_ifd, s, np.nan)
    return rank_by_score(s, budget, seed)


# Which precomputed inputs each selector needs (the pipeline computes only those).
NEEDS = {
    "random": set(),
    "longest": set(),
    "diverse": {"embeddings"},
    "clusters": {"embeddings"},
    "judge-rated": {"rating"},
    "deita": {"embeddings", "complexity", "quality"},
    "ifd": {"ifd"},
}
