"""Comparisons that survive a shared machine: the sides run in alternation, each run on inputs of its own.

A figure measured once, or every baseline run before every treatment run, mostly measures what else the
machine did meanwhile. :func:`interleaved` runs round after round, each round every side once, rotating
which side goes first, and hands each run a seed no other run gets (so no side reuses texts, vectors or
caches another side warmed). :func:`spread` reports a side's runs as min and median.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def interleaved(sides: dict[str, Callable[[int], Any]], rounds: int, *,
                report: Callable[[str, int, Any], None] | None = None) -> dict[str, list[Any]]:
    """Each side's results, in run order: ``sides[name](seed)`` is called ``rounds`` times per side.

    Round ``r`` runs the sides in their order rotated by ``r``; seeds are ``1000 * r + position`` of the side in
    ``sides``, so every run has a seed of its own. ``report(name, round, result)`` is called after each run.
    """
    if rounds < 3:
        raise ValueError("an interleaved comparison needs at least 3 rounds")
    names = list(sides)
    out: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            result = sides[name](1000 * r + names.index(name))
            out[name].append(result)
            if report:
                report(name, r, result)
    return out


def spread(values: list[float]) -> dict[str, Any]:
    """Min and median of one side's runs, with every run (for the results file)."""
    return {"min": float(np.min(values)), "median": float(np.median(values)), "runs": [float(v) for v in values]}
