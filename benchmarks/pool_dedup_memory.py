"""Finding a pool's exact duplicates: in-memory sets of every text's key and id (how ``pool add`` found them
before) against keys spilled to disk in partitions (:mod:`labelloop.pool.spill`), interleaved.

Each run is a process of its own that makes ``--texts`` fresh 64-bit content keys and id keys from its own seed
(5% repeated texts, 1% repeated ids), finds the rows to leave out, and reports its seconds and peak RSS; both
sides must find the same rows. Runs alternate baseline and spill, ``--pairs`` pairs per size, and the report gives
min and median per side and the peak-RSS growth from the smallest size to the largest (flat is the goal).

    python benchmarks/pool_dedup_memory.py --texts 1000000,5000000,20000000 --pairs 3

With ``--add-baseline-tree DIR`` (a checkout of the code before the spill, e.g. ``git worktree add DIR 1a1a900``)
it measures ``pool add`` end to end instead: ``benchmarks/pool_scoring.py --prepare`` (fresh generated texts,
a pool added in a process of its own) with that code and with this one, alternating, at ``--texts`` sizes.

Results: benchmarks/results/pool_dedup_memory.json (pool_add_memory.json with ``--add-baseline-tree``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from interleave import paired_in_children


def make_keys(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**63, n, dtype=np.uint64)
    again = rng.random(n) < 0.05
    keys[again] = keys[rng.integers(0, n, int(again.sum()))]
    ids = rng.integers(0, 2**63, n, dtype=np.uint64)
    clash = rng.random(n) < 0.01
    ids[clash] = ids[rng.integers(0, n, int(clash.sum()))]
    return keys, ids


def baseline(keys: np.ndarray, ids: np.ndarray, batch: int = 10_000) -> np.ndarray:
    """The sets ``pool add`` kept: every key and id seen so far, as Python ints, row by row as texts stream in
    (with the rule the spill follows: a text seen before, then an id taken by an earlier text kept)."""
    seen: set[int] = set()
    ids_seen: set[int] = set()
    repeated = []
    for start in range(0, len(keys), batch):  # the source arrives in batches
        for row, (key, text_id) in enumerate(zip(keys[start:start + batch].tolist(), ids[start:start + batch].tolist(),
                                                 strict=True), start):
            if key in seen:
                repeated.append(row)
                continue
            seen.add(key)
            if text_id in ids_seen:
                repeated.append(row)
                continue
            ids_seen.add(text_id)
    return np.array(repeated, dtype=np.int64)


def spilled(keys: np.ndarray, ids: np.ndarray, folder: Path, batch: int = 10_000) -> np.ndarray:
    from labelloop.pool.spill import KeySpill, RowSet

    contents, given = KeySpill(folder / "content"), KeySpill(folder / "ids")
    for start in range(0, len(keys), batch):
        rows = np.arange(start, min(start + batch, len(keys)), dtype=np.int64)
        contents.add(keys[start:start + batch], rows)
        given.add(ids[start:start + batch], rows)
    repeated = RowSet(len(keys))
    for found in contents.repeats():
        repeated.add(found)
    for found in given.repeats(skip=repeated):
        repeated.add(found)
    return np.concatenate([start + np.flatnonzero(repeated.contains(np.arange(start, min(start + batch, len(keys)))))
                           for start in range(0, len(keys), batch)] or [np.zeros(0, dtype=np.int64)])


def one(side: str, n: int, seed: int) -> dict:
    keys, ids = make_keys(n, seed)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    if side == "baseline":
        rows = baseline(keys, ids)
    else:
        with tempfile.TemporaryDirectory() as folder:
            rows = spilled(keys, ids, Path(folder))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"side": side, "texts": n, "seed": seed, "seconds": seconds, "peak_rss_mb": peak,
            "input_rss_mb": base_rss, "repeated": len(rows), "digest": int(np.bitwise_xor.reduce(rows)) if len(rows) else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", default="1000000,5000000,20000000")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--one", choices=("baseline", "spill"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pool_dedup_memory.json")
    parser.add_argument("--add-baseline-tree", type=Path, help="measure `pool add` end to end against this checkout")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.n, args.seed)))
        return
    sizes = [int(x) for x in args.texts.split(",")]
    if args.add_baseline_tree:
        add_end_to_end(args.add_baseline_tree, sizes, args.pairs)
        return
    runs = []
    for n in sizes:
        found: dict = {}
        # fresh keys per pair; both sides of a pair see the same ones
        for pair, side, run in paired_in_children(__file__, ("baseline", "spill"), n, args.pairs,
                                                  lambda pair, n=n: 1000 * pair + n % 997):
            runs.append({**run, "pair": pair})
            found.setdefault(pair, {})[side] = (run["repeated"], run["digest"])
            print(f"{n:>11,} {side:<8} {run['seconds']:7.1f} s  peak RSS {run['peak_rss_mb']:8.1f} MB "
                  f"(keys alone {run['input_rss_mb']:.1f} MB)", flush=True)
            if len(found[pair]) == 2 and found[pair]["baseline"] != found[pair]["spill"]:
                raise SystemExit(f"the two sides found different duplicates at {n} texts: {found[pair]}")
    summary: dict = {}
    for side in ("baseline", "spill"):
        for n in sizes:
            mine = [r for r in runs if r["side"] == side and r["texts"] == n]
            extra = [r["peak_rss_mb"] - r["input_rss_mb"] for r in mine]
            summary.setdefault(side, {})[str(n)] = {
                "seconds_min": min(r["seconds"] for r in mine),
                "seconds_median": statistics.median(r["seconds"] for r in mine),
                "peak_rss_mb_min": min(r["peak_rss_mb"] for r in mine),
                "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in mine),
                "rss_over_keys_mb_median": statistics.median(extra)}
    for side in summary:
        small, large = summary[side][str(sizes[0])], summary[side][str(sizes[-1])]
        summary[side]["rss_over_keys_growth"] = large["rss_over_keys_mb_median"] / max(small["rss_over_keys_mb_median"], 1e-9)
    result = {"texts": sizes, "pairs": args.pairs, "summary": summary, "runs": runs,
              "note": "peak RSS includes the run's own keys (16 bytes per text, as a pool add holds one batch of "
                      "them); rss_over_keys is the peak above what the keys alone took"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def add_end_to_end(baseline_tree: Path, sizes: list[int], pairs: int) -> None:
    """``pool add`` with the code in ``baseline_tree`` and with this code, alternating, each in its own process on
    fresh texts (``benchmarks/pool_scoring.py --prepare``); peak RSS and texts/s per side and size."""
    import os

    here = Path(__file__).resolve().parents[1]
    runs = []
    for n in sizes:
        for pair in range(pairs):
            order = (("baseline", baseline_tree), ("spill", here))
            for side, tree in (order if pair % 2 == 0 else order[::-1]):
                with tempfile.TemporaryDirectory() as home:
                    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
                    out = subprocess.run([sys.executable, str(here / "benchmarks" / "pool_scoring.py"), "--prepare",
                                          "--texts", str(n), "--home", home, "--seed", str(7000 + 10 * pair + n % 7)],
                                         capture_output=True, text=True, check=True, timeout=3600, env=env)
                run = {"side": side, "texts": n, "pair": pair, **json.loads(out.stdout.strip().splitlines()[-1])}
                runs.append(run)
                print(f"{n:>11,} {side:<8} {run['add_texts_per_s']:9,.0f} texts/s  peak RSS "
                      f"{run['add_peak_rss_mb']:8.1f} MB", flush=True)
    summary: dict = {}
    for side in ("baseline", "spill"):
        for n in sizes:
            mine = [r for r in runs if r["side"] == side and r["texts"] == n]
            summary.setdefault(side, {})[str(n)] = {
                "texts_per_s_min": min(r["add_texts_per_s"] for r in mine),
                "texts_per_s_median": statistics.median(r["add_texts_per_s"] for r in mine),
                "peak_rss_mb_min": min(r["add_peak_rss_mb"] for r in mine),
                "peak_rss_mb_median": statistics.median(r["add_peak_rss_mb"] for r in mine)}
    out_path = Path(__file__).parent / "results" / "pool_add_memory.json"
    out_path.write_text(json.dumps({"texts": sizes, "pairs": pairs, "summary": summary, "runs": runs}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
