"""The scores Label Studio's queue sorts by, from the model's confidences (lowest first), with the audit
split's tasks placed among them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelloop.al.selection import cluster_then_pick, kcenter_greedy, queue_scores


def queue_order(texts: list[str], scores: NDArray[Any], embed: Callable[[list[str]], NDArray[Any]], *, batch: int,
                diversity: str, cold: bool) -> NDArray[Any]:
    """Scores for Label Studio's ascending queue of a project's open tasks (``texts``), shape (n_tasks,).

    While the project has no label yet (``cold``), the ``batch`` tasks that best cover the embedding space go
    first. After, with ``diversity="cluster"``, the least confident task of each of ``batch`` clusters goes
    first. The batch keeps scores proportional to its confidences.
    """
    if batch == 0 or len(texts) <= batch or not (cold or diversity == "cluster"):
        return scores
    x = embed(texts)
    picked = kcenter_greedy(x, batch) if cold else cluster_then_pick(scores, x, batch)
    return queue_scores(scores, picked)


def place_audit(scores: NDArray[Any], labeled: NDArray[Any], audit: NDArray[Any], rank: NDArray[Any], share: float,
                first: NDArray[Any] | None = None) -> NDArray[Any]:
    """Scores, shape (n_tasks,), with the unlabeled audit tasks spread evenly through the ascending queue.

    ``audit`` marks audit tasks and ``rank`` gives each a fixed random position in [0, 1): they come one in
    every ~``1 / share`` tasks, in that random order, whatever the model thinks of them, each with a score
    between its neighbours' so nothing in the queue or the Data Manager tells them apart. Labeled tasks and
    the other tasks keep their scores and their order.

    ``first`` (bool per task) marks audit tasks the gate needs labelled now (where a challenger and the champion
    disagree): unlabeled ones go to the very front, in their random ``rank`` order, each scored just below the
    lowest score of any other task.
    """
    out = np.asarray(scores, dtype=np.float64).copy()
    open_ = ~np.asarray(labeled, dtype=bool)
    audit = np.asarray(audit, dtype=bool)
    front = open_ & (np.zeros(len(out), dtype=bool) if first is None else np.asarray(first, dtype=bool))
    mine = np.flatnonzero(open_ & audit & ~front)
    if len(mine) and share > 0:
        _spread(out, mine, np.flatnonzero(open_ & ~audit & ~front), rank, share)
    lead = np.flatnonzero(front)
    if len(lead):
        lead = lead[np.argsort(rank[lead], kind="stable")]
        rest = out[~front]  # every other task, labelled ones too: Label Studio sorts them all by this score
        floor = float(rest.min()) if len(rest) else 0.0
        # Label Studio stores a negative score as none and sorts it last: make room above 0 instead.
        shift = max(0.0, 1e-6 * (len(lead) + 1) - floor)
        out[~front] += shift
        out[lead] = floor + shift - 1e-6 * (len(lead) - np.arange(len(lead)))
    return np.clip(out, 0.0, None)


def _spread(out: NDArray[Any], mine: NDArray[Any], others: NDArray[Any], rank: NDArray[Any], share: float) -> None:
    """Give the audit tasks ``mine`` scores one in every ~``1 / share`` of the ``others``, in ``rank`` order."""
    mine = mine[np.argsort(rank[mine], kind="stable")]
    ordered = np.sort(out[others])
    step = (1.0 - share) / share  # other tasks between two audit tasks
    for j, i in enumerate(mine):
        pos = int(round((j + 0.5) * step))
        if len(ordered) == 0:
            value = j * 1e-6
        elif pos <= 0:
            value = ordered[0] - 1e-6 * (len(mine) - j)
        elif pos >= len(ordered):
            value = ordered[-1] + 1e-6 * (j + 1)
        else:
            value = (ordered[pos - 1] + ordered[pos]) / 2 + 1e-9 * j
        out[i] = value
