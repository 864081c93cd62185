"""Scoring a pool in this process against Ray Data on this machine, interleaved, on fresh texts for each run.

Each run is two processes of its own (so their peak memory is their own and nothing outlives them): one generates
``--texts`` texts of mixed lengths from the run's own seed and registers them as a pool (its time and memory are
reported apart), the other scores them with the packaged encoder's zero-shot head (``--scorer model``) or with the
stub scorer (``--scorer stub``: no encoder, the pipeline's own cost), then chooses the next 200 texts for Label
Studio's working set from the scores (what ``pool refill`` reads from the pool). Runs alternate in-process and Ray,
``--pairs`` pairs; the report gives texts/s (min and median per engine), the Ray / in-process ratio of the medians,
and each run's peak RSS (the driver's; Ray's actors are separate processes, reported apart as the sum over the
run's process tree at its largest).

    python benchmarks/pool_scoring.py --texts 5000 --pairs 3 --scorer model
    python benchmarks/pool_scoring.py --texts 1000000 --pairs 3 --scorer stub

Results: benchmarks/results/pool_scoring_<scorer>_<texts>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("battery screen delivery refund support price quality update crash login invoice shipping order "
         "account password warranty return broken slow fast great awful cheap expensive helpful rude").split()


def generate(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            length = rng.choice([4, 8, 16, 32, 64, 128])  # mixed lengths, in words
            f.write(json.dumps({"text": f"{seed}-{i} " + " ".join(rng.choice(WORDS) for _ in range(length))}) + "\n")


def prepare(args: argparse.Namespace) -> None:
    """Generate the run's texts and register them as the pool, in a process of its own: prints one JSON line
    (what adding cost: seconds and this process's peak RSS)."""
    from labelloop.pool.corpus import add_corpus
    from labelloop.serving.service import ModelService
    from labelloop.settings import LabelLoopSettings

    home = Path(args.home)
    config = ('<View><Text name="text" value="$text"/><Choices name="topic" toName="text"><Choice value="billing"/>'
              '<Choice value="technical problem"/><Choice value="praise"/></Choices></View>')
    ModelService(LabelLoopSettings(home=home, push_predictions=False)).store.save_label_config(1, config)
    generate(home / "corpus.jsonl", args.texts, args.seed)
    started = time.perf_counter()
    info = add_corpus(home, 1, home / "corpus.jsonl")
    seconds = time.perf_counter() - started
    (home / "corpus.jsonl").unlink()
    print(json.dumps({"added": info.texts, "add_seconds": seconds, "add_texts_per_s": info.texts / seconds,
                      "add_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


def one(args: argparse.Namespace) -> None:
    """A single scoring run over the pool ``prepare`` registered, in this process: prints one JSON line."""
    from labelloop.pool.scoring import STUB, ScorerSpec, score_pool

    home = Path(args.home)
    spec = (ScorerSpec(str(home), 1, kind=STUB, labels=("billing", "technical problem", "praise"))
            if args.scorer == "stub" else None)
    started = time.perf_counter()
    state = score_pool(home, 1, engine=args.one, spec=spec, batch_size=args.batch_size, workers=args.workers,
                       cpus_per_worker=args.cpus_per_worker)
    seconds = time.perf_counter() - started
    # What a refill of Label Studio's working set reads from the pool: the next 200 texts by these scores.
    from labelloop.audit import AuditFrame
    from labelloop.pool.corpus import Pool
    from labelloop.pool.working_set import choose

    started = time.perf_counter()
    rows, _ = choose(Pool(home, 1), set(), 200, frame=AuditFrame(1, 0.1), version=state.version)
    choose_seconds = time.perf_counter() - started
    assert len(rows) == 200
    print(json.dumps({"engine": args.one, "texts": state.scored, "seconds": seconds, "texts_per_s": state.scored / seconds,
                      "choose_200_seconds": choose_seconds,
                      "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


def tree_rss_mb(pid: int) -> float:
    """The resident memory of ``pid``'s session (the run and every process it started), in MB."""
    out = subprocess.run(["ps", "-eo", "sid=,rss="], capture_output=True, text=True).stdout.split("\n")
    return sum(int(r.split()[1]) for r in out if r.split()[:1] == [str(pid)]) / 1024


def child(args: argparse.Namespace, role: list[str], home: str, seed: int) -> tuple[dict, float]:
    """Run this script as ``role`` in a session of its own; its JSON line and its process tree's peak RSS (MB).
    Whatever it leaves (Ray's workers) is killed with its session."""
    cmd = [sys.executable, __file__, *role, "--home", home, "--texts", str(args.texts), "--seed", str(seed),
           "--scorer", args.scorer, "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--cpus-per-worker", str(args.cpus_per_worker)]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    peak = 0.0
    try:
        while process.poll() is None:
            peak = max(peak, tree_rss_mb(process.pid))
            time.sleep(0.5)
        out = process.stdout.read() if process.stdout else ""
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(role)} failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1]), peak


def run(args: argparse.Namespace, engine: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as home:
        added, _ = child(args, ["--prepare"], home, seed)
        scored, peak = child(args, ["--one", engine], home, seed)
        return {**scored, **added, "tree_peak_rss_mb": peak, "seed": seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--scorer", choices=("model", "stub"), default="model")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=0.5)
    parser.add_argument("--one", choices=("local", "ray"), help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.prepare:
        prepare(args)
        return
    if args.one:
        one(args)
        return
    import numpy as np

    rows = []
    for pair in range(args.pairs):
        for engine in (("local", "ray") if pair % 2 == 0 else ("ray", "local")):  # alternate who goes first
            rows.append({"pair": pair, **run(args, engine, seed=1000 * pair + (engine == "ray"))})
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for engine in ("local", "ray"):
        rates = [r["texts_per_s"] for r in rows if r["engine"] == engine]
        summary[engine] = {"texts_per_s_min": min(rates), "texts_per_s_median": float(np.median(rates)),
                           "tree_peak_rss_mb_max": max(r["tree_peak_rss_mb"] for r in rows if r["engine"] == engine),
                           "driver_peak_rss_mb_max": max(r["driver_peak_rss_mb"] for r in rows if r["engine"] == engine),
                           "add_texts_per_s_median": float(np.median([r["add_texts_per_s"] for r in rows])),
                           "add_peak_rss_mb_max": max(r["add_peak_rss_mb"] for r in rows),
                           "choose_200_seconds_median": float(np.median([r["choose_200_seconds"] for r in rows]))}
    ratio = summary["ray"]["texts_per_s_median"] / summary["local"]["texts_per_s_median"]
    print(f"\n{args.texts:,} texts, scorer {args.scorer}, {args.pairs} interleaved pairs, {os.cpu_count()} CPUs")
    for engine, s in summary.items():
        print(f"  {engine:<6} {s['texts_per_s_median']:>9,.0f} texts/s median (min {s['texts_per_s_min']:,.0f}), peak RSS "
              f"{s['driver_peak_rss_mb_max']:,.0f} MB driver, {s['tree_peak_rss_mb_max']:,.0f} MB all processes")
    print(f"  Ray / in-process: {ratio:.2f}x")
    print(f"  adding the pool (before each run, not timed above): {summary['local']['add_texts_per_s_median']:,.0f} texts/s, "
          f"peak RSS {summary['local']['add_peak_rss_mb_max']:,.0f} MB")
    print(f"  choosing the next 200 texts for Label Studio from the scores: {summary['local']['choose_200_seconds_median']:.2f} s")
    out = args.out or Path(f"benchmarks/results/pool_scoring_{args.scorer}_{args.texts}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"texts": args.texts, "scorer": args.scorer, "pairs": args.pairs,
                               "workers": args.workers, "cpus_per_worker": args.cpus_per_worker,
                               "cpus": os.cpu_count(), "summary": summary, "ray_over_local": ratio, "runs": rows},
                              indent=2) + "\n")


if __name__ == "__main__":
    main()
