"""Choosing which tasks annotators see next: top-n by confidence, with optional diversity.

Inputs are ``scores`` (n_tasks,) where **lower means more informative** (the confidences of
:mod:`labelloop.al.uncertainty`) and unit ``embeddings`` (n_tasks, dim). Every function returns task indices,
most informative first, and is deterministic for a given ``seed``.
"""

from __future__ import annotations

import numpy as np


def argselect(scores: np.ndarray, n: int, *, seed: int | None = 0) -> np.ndarray:
    """The ``n`` lowest scores, lowest first; ties broken at random (reproducibly), not by position."""
    scores = np.asarray(scores, dtype=np.float64)
    n = min(n, len(scores))
    tiebreak = np.random.default_rng(seed).random(len(scores))
    return np.lexsort((tiebreak, scores))[:n]


def sample_select(scores: np.ndarray, n: int, *, power: float = 2.0, floor: float = 0.1, seed: int | None = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` tasks drawn at random with known probabilities, favouring low scores: ``(indices, propensities)``.

    Each draw (without replacement) takes task ``i`` with probability ``(1 - floor) * u_i / sum(u) + floor / m``
    over the ``m`` tasks left, where ``u_i = (1 - scores_i) ** power``: mostly the least confident, yet every
    task has a chance of at least ``floor / m``. ``propensities[k]`` is the probability with which the ``k``-th
    pick was drawn, so labels acquired this way can still estimate accuracy without bias (importance weights
    ``1 / (m * propensity)``, Farquhar et al. 2021). Indices come in draw order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if not 0.0 < floor <= 1.0 or power < 0:
        raise ValueError("floor must be in (0, 1] and power at least 0")
    rng = np.random.default_rng(seed)
    weight = np.clip(1.0 - scores, 0.0, None) ** power
    left = np.ones(len(scores), dtype=bool)
    picked, propensity = [], []
    for _ in range(min(n, len(scores))):
        w = np.where(left, weight, 0.0)
        m = int(left.sum())
        p = np.where(left, (1.0 - floor) * (w / w.sum() if w.sum() > 0 else 1.0 / m) + floor / m, 0.0)
        i = int(rng.choice(len(scores), p=p / p.sum()))
        picked.append(i)
        propensity.append(float(p[i] / p.sum()))
        left[i] = False
    return np.asarray(picked, dtype=np.int64), np.asarray(propensity)


def kcenter_greedy(embeddings: np.ndarray, n: int, *, labeled: np.ndarray | None = None, seed: int | None = 0) -> np.ndarray:
    """Core-set selection: repeatedly take the task farthest from everything chosen or labeled.

    Covers the embedding space, so a first batch is not fifty near-copies. ``labeled`` indexes tasks
    that already count as covered. Returns ``n`` indices in pick order.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    n = min(n, len(x))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if labeled is not None and len(labeled):
        dist = np.min(1.0 - x @ x[labeled].T, axis=1)
        dist[labeled] = -np.inf
    else:
        dist = 1.0 - x @ x.mean(axis=0) / (np.linalg.norm(x.mean(axis=0)) + 1e-12)
        dist += np.random.default_rng(seed).random(len(x)) * 1e-9
    picked = []
    for _ in range(n):
        i = int(np.argmax(dist))
        picked.append(i)
        dist = np.minimum(dist, 1.0 - x @ x[i])
        dist[picked] = -np.inf
    return np.asarray(picked, dtype=np.int64)


def kmeans(x: np.ndarray, k: int, *, iterations: int = 20, seed: int | None = 0) -> np.ndarray:
    """Cluster id of each row (k-means++ start, cosine geometry on unit vectors)."""
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.clip(1.0 - np.max(x @ np.stack(centers).T, axis=1), 0.0, None)
        total = d.sum()
        centers.append(x[rng.choice(len(x), p=d / total)] if total > 0 else x[rng.integers(len(x))])
    c = np.stack(centers)
    for _ in range(iterations):
        assign = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(axis=0) / (np.linalg.norm(members.mean(axis=0)) + 1e-12)
    return np.argmax(x @ c.T, axis=1)


def cluster_then_pick(scores: np.ndarray, embeddings: np.ndarray, n: int, *, candidates: int = 5,
                      seed: int | None = 0) -> np.ndarray:
    """The most informative task of each of ``n`` clusters among the ``candidates * n`` least confident.

    Returns ``n`` indices, lowest score first.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = min(n, len(scores))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pool = argselect(scores, candidates * n, seed=seed)
    if len(pool) <= n:
        return pool
    assign = kmeans(np.asarray(embeddings, dtype=np.float32)[pool], n, seed=seed)
    best: dict = {}
    for i, cluster in zip(pool, assign, strict=True):  # pool is sorted, so the first seen is the least confident
        best.setdefault(cluster, i)
    picked = list(best.values())
    if len(picked) < n:  # empty clusters: fill with the next least confident
        picked += [i for i in pool if i not in set(picked)][: n - len(picked)]
    return np.asarray(picked, dtype=np.int64)
    return picked[np.argsort(scores[picked], kind="stable")]


def queue_scores(confidence: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Scores that put ``batch`` first in an ascending sort, each still proportional to its confidence.

    Label Studio orders its queue by one number. When the next batch is chosen for diversity (or,
    before any label, for coverage), its members are scaled below every other task's confidence.
    """
    scores = np.asarray(confidence, dtype=np.float64).copy()
    if len(batch) == 0 or len(batch) == len(scores):
        return scores
    rest = np.delete(scores, batch)
    top = scores[batch].max()
    if top >= rest.min():
        scores[batch] *= 0.999 * rest.min() / top if top > 0 else 1.0
    return scores
