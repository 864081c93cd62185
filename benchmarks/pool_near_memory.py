"""Near duplicates of a pool: the in-memory index (every text's shingles and band buckets kept, how ``pool add
--near-duplicates`` found them before) against the on-disk search (:mod:`labelloop.pool.near`), interleaved.

Each run is a process of its own that generates ``--texts`` fresh texts from its own seed (mixed lengths, 10% of them
near copies of an earlier text: a word changed, dropped or added), finds every text's most similar earlier text at
similarity 0.8 or more, and reports its seconds and peak RSS; both sides must find the same texts with the same
similarities. Runs alternate baseline and on-disk, ``--pairs`` pairs per size, and the report gives min and median
per side and each side's peak-RSS growth from the smallest size to the largest (flat is the goal).

    python benchmarks/pool_near_memory.py --texts 100000,400000 --pairs 3

Results: benchmarks/results/pool_near_memory.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

from interleave import paired_in_children

WORDS = ("battery screen delivery refund support price quality update crash login invoice shipping order account "
         "password warranty return broken slow fast great awful cheap expensive helpful rude late early box cable "
         "charger app store card bank branch teller loan rate fee statement transfer").split()
THRESHOLD = 0.8


def generate(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.1:
            words = texts[rng.randrange(len(texts))].split()
            i = rng.randrange(len(words))
            edit = rng.random()
            if edit < 1 / 3:
                words[i] = rng.choice(WORDS)
            elif edit < 2 / 3 and len(words) > 6:
                del words[i]
            else:
                words.insert(i, rng.choice(WORDS))
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.choice((8, 16, 32, 64)))))
    return texts


def baseline(texts: list[str]) -> list[tuple[int, float]]:
    from labelloop.quality.dedup import NearDuplicateIndex

    index = NearDuplicateIndex(THRESHOLD)
    found = []
    for row, text in enumerate(texts):
        near = index.find(text)
        if near:
            found.append((row, near[0][1]))
        index.add(row, text)
    return found


def on_disk(texts: list[str], folder: Path) -> list[tuple[int, float]]:
    from labelloop.pool.near import near_duplicate_rows

    batches = (texts[i:i + 10_000] for i in range(0, len(texts), 10_000))
    rows, _, similarity = near_duplicate_rows(batches, folder, threshold=THRESHOLD)
    return list(zip(rows.tolist(), similarity.tolist(), strict=True))


def one(side: str, n: int, seed: int) -> dict:
    import labelloop.pool.near  # noqa: F401 - its imports (numpy) are not counted as the search's memory

    texts = generate(n, seed)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="near-") as work:
        found = baseline(texts) if side == "baseline" else on_disk(texts, Path(work) / "near")
    seconds = time.perf_counter() - start
    digest = hashlib.sha1(json.dumps([(r, round(s, 5)) for r, s in found]).encode()).hexdigest()
    return {"side": side, "texts": n, "seed": seed, "seconds": seconds, "found": len(found), "digest": digest,
            "texts_rss_mb": rss_before / 1024, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", default="100000,400000")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--one", choices=("baseline", "disk"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pool_near_memory.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.n, args.seed)))
        return
    sizes = [int(s) for s in args.texts.split(",")]
    runs = []
    for n in sizes:
        by_pair: dict[int, list[dict]] = {}
        # fresh texts for every pair, the same for both sides of it
        for pair, side, run in paired_in_children(__file__, ("baseline", "disk"), n, args.pairs,
                                                  lambda pair, n=n: n + pair):
            runs.append(run)
            print(f"{n:>9,} {side:<8} {run['seconds']:7.1f} s  peak RSS {run['peak_rss_mb']:7.0f} MB "
                  f"(texts {run['texts_rss_mb']:.0f} MB)  {run['found']:,} found", flush=True)
            both = by_pair.setdefault(pair, [])
            both.append(run)
            if len(both) == 2 and both[0]["digest"] != both[1]["digest"]:
                raise SystemExit(f"the two sides disagree at {n} texts, seed {run['seed']}: {both[0]['found']} "
                                 f"against {both[1]['found']}")
    summary = {}
    for n in sizes:
        for side in ("baseline", "disk"):
            mine = [r for r in runs if r["texts"] == n and r["side"] == side]
            above = [r["peak_rss_mb"] - r["texts_rss_mb"] for r in mine]
            seconds = [r["seconds"] for r in mine]
            summary[f"{side} {n}"] = {"seconds_min": min(seconds), "seconds_median": statistics.median(seconds),
                                      "rss_above_texts_mb_min": min(above),
                                      "rss_above_texts_mb_median": statistics.median(above)}
            print(f"{n:>9,} {side:<8} seconds min {min(seconds):.1f} median {statistics.median(seconds):.1f}; "
                  f"peak RSS above the texts min {min(above):.0f} MB median {statistics.median(above):.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threshold": THRESHOLD, "pairs": args.pairs, "summary": summary, "runs": runs},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
