"""Comparisons that survive a shared machine: the sides run in alternation, each run on inputs of its own.

A figure measured once, or every baseline run before every treatment run, mostly measures what else the
machine did meanwhile. :func:`interleaved` runs round after round, each round every side once, rotating
which side goes first, and hands each run a seed no other run gets (so no side reuses texts, vectors or
caches another side warmed). :func:`spread` reports a side's runs as min and median.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
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


def paired_in_children(script: str, sides: tuple[str, str], n: int, pairs: int, seed: Callable[[int], int]
                       ) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(pair, side, run)`` for ``pairs`` pairs of ``script --one SIDE --n N --seed S``, each run a process of its
    own (so its peak memory is its own and nothing outlives it), the sides alternating which goes first; both sides
    of a pair get the same seed, ``seed(pair)``, so they can be checked against each other. ``run`` is the JSON the
    process printed last."""
    for pair in range(pairs):
        for side in sides if pair % 2 == 0 else sides[::-1]:
            out = subprocess.run([sys.executable, script, "--one", side, "--n", str(n), "--seed", str(seed(pair))],
                                 capture_output=True, text=True, check=True, timeout=3600)
            yield pair, side, json.loads(out.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> dict[str, Any]:
    """Min and median of one side's runs, with every run (for the results file)."""
    return {"min": float(np.min(values)), "median": float(np.median(values)), "runs": [float(v) for v in values]}
