"""The scores Label Studio's queue sorts by, from the model's confidences (lowest first)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labelloop.selection import cluster_then_pick, kcenter_greedy, queue_scores


def queue_order(texts: list[str], labeled: np.ndarray, scores: np.ndarray, embed: Callable[[list[str]], np.ndarray],
                *, batch: int, diversity: str) -> np.ndarray:
    """Task scores for Label Studio's ascending queue, shape (n_tasks,).

    Before any label, the ``batch`` unlabeled tasks that best cover the embedding space go first (cold
    start). After, with ``diversity="cluster"``, the least confident task of each of ``batch`` clusters
    goes first. The batch keeps scores proportional to its confidences.
    """
    unlabeled = np.flatnonzero(~labeled)
    cold = not labeled.any()
    if batch == 0 or len(unlabeled) <= batch or not (cold or diversity == "cluster"):
        return scores
    x = embed([texts[i] for i in unlabeled])
    picked = kcenter_greedy(x, batch) if cold else cluster_then_pick(scores[unlabeled], x, batch)
    out = scores.copy()
    out[unlabeled] = queue_scores(scores[unlabeled], picked)
    return out
