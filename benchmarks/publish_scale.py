"""Publishing a new model version to a large project: every task in Label Studio (a project without a pool) against
a pool beside Label Studio that holds only the working set, interleaved, against a real Label Studio.

Both sides run the backend's own :class:`~labelloop.serving.publish.Publisher` on a project of ``--tasks`` fresh
texts (each run has texts of its own):
  whole  the texts are Label Studio tasks (imported before the clock starts); a publish lists the open tasks,
         predicts them and imports one prediction each, then sets the project's model version
  pool   the texts are a pool (``pool add`` and ``pool score`` with the stub scorer, before the clock); ``pool
         refill`` puts the ``--working-set`` least confident texts in Label Studio (timed apart), and the publish
         does the same as above on what Label Studio holds; the pool itself is re-scored in the background by the
         engine (``benchmarks/pool_scoring.py`` measures that)
``--pool-only`` sizes run the pool side alone, three times (a whole project of a million tasks is past what Label
Studio advises): the refill of a million-text pool into a real Label Studio.
The model is taken out (a stub predicts from a hash of the text), so what is measured is Label Studio's side and
ours, not the encoder. While each publish and refill runs, a thread asks Label Studio for the project
(``GET /api/projects/ID``) every 100 ms: the report gives the p99 of those calls (target under 1 s). Label Studio
runs with its memory-efficient prediction import, as the demo's does.

    python benchmarks/publish_scale.py --tasks 10000,30000 --pairs 3 [--pool-only 1000000]

Results: benchmarks/results/publish_scale.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_overhead import make_texts  # noqa: E402

from labelloop.pool.corpus import add_corpus  # noqa: E402
from labelloop.pool.scoring import STUB, ScorerSpec, score_pool  # noqa: E402
from labelloop.pool.working_set import refill  # noqa: E402
from labelloop.processes import stop_like_ctrl_c  # noqa: E402
from labelloop.serving.clients import Clients  # noqa: E402
from labelloop.serving.publish import Publisher  # noqa: E402
from labelloop.serving.store import Store  # noqa: E402
from labelloop.settings import LabelLoopSettings  # noqa: E402
from labelloop.studio.localstudio import LocalLabelStudio, free_port  # noqa: E402
from labelloop.studio.lsclient import make_client  # noqa: E402
from labelloop.studio.projects import create_project  # noqa: E402
from labelloop.templates import label_config  # noqa: E402

CONFIG = label_config("sentiment")
VERSION = "labelloop-v2"


class StubPredictions:
    """The publisher's model, taken out: a label and a score from a hash of the text."""

    def predict(self, tasks, project_id, label_config, model_version=None):
        out = []
        for task in tasks:
            h = int(hashlib.sha1(task["data"]["text"].encode()).hexdigest()[:8], 16)
            label = ("positive", "negative")[h % 2]
            score = 0.5 + (h % 1000) / 2000
            out.append({"model_version": VERSION, "score": score, "result": [
                {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]})
        return out

    def queue_order(self, project_id, ids, data, scores, *, cold):
        return 1.0 - np.asarray(scores)

    def model_version(self, project_id):
        return VERSION


class Latency:
    """``GET /api/projects/ID`` every ``every`` seconds while the block runs; the seconds each call took."""

    def __init__(self, url: str, token: str, project_id: int, every: float = 0.1) -> None:
        self.url, self.headers, self.every = f"{url}/api/projects/{project_id}", {"Authorization": f"Token {token}"}, every
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                http.get(self.url, headers=self.headers).raise_for_status()
                self.seconds.append(time.perf_counter() - started)
                self._stop.wait(self.every)

    def __enter__(self) -> Latency:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


def start_studio(prefix: str) -> tuple[Path, LocalLabelStudio]:
    """A local Label Studio in a fresh folder (``prefix``), started; a kill of this process stops it too. The caller
    stops it and removes the folder."""
    stop_like_ctrl_c()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    studio = LocalLabelStudio(work / "ls", free_port(), "bench@example.com", secrets.token_urlsafe(12),
                              secrets.token_hex(20))
    print("starting Label Studio (migrations take about a minute) ...", flush=True)
    studio.start(timeout=400)
    return work, studio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="10000,30000")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--working-set", type=int, default=200)
    parser.add_argument("--pool-only", default="", help="sizes to run the pool side alone at, e.g. 1000000")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "publish_scale.json")
    args = parser.parse_args()
    if args.pairs < 3:
        raise SystemExit("an interleaved comparison needs at least 3 pairs")
    work, studio = start_studio("labelloop-publish-")
    runs: list[dict] = []
    try:
        ls = make_client(studio.url, studio.token, timeout=600)
        settings = LabelLoopSettings(home=work / "home", label_studio_url=studio.url, label_studio_api_key=studio.token)
        store = Store(settings.home)
        publisher = Publisher(store, Clients(settings), StubPredictions(), keep=3)

        def whole(n: int, seed: int) -> dict:
            project = create_project(ls, f"whole {n} #{seed}", CONFIG)
            texts = make_texts(n, seed=seed)
            for i in range(0, n, 500):
                ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in texts[i:i + 500]])
            with Latency(studio.url, studio.token, project.id) as latency:
                started = time.perf_counter()
                stored = publisher.publish(project.id, VERSION, timeout=600)
                seconds = time.perf_counter() - started
            assert stored == n, (stored, n)
            return {"side": "whole", "tasks": n, "seed": seed, "publish_s": seconds, "stored": stored,
                    "publish_p99_s": p99(latency.seconds), "calls": len(latency.seconds)}

        def pool(n: int, seed: int) -> dict:
            project = create_project(ls, f"pool {n} #{seed}", CONFIG)
            source = work / f"pool-{seed}.jsonl"
            source.write_text("".join(json.dumps({"text": t}) + "\n" for t in make_texts(n, seed=seed)))
            add_corpus(settings.home, project.id, source)
            source.unlink()
            score_pool(settings.home, project.id, spec=ScorerSpec(str(settings.home), project.id, kind=STUB,
                                                                   labels=("positive", "negative")))
            with Latency(studio.url, studio.token, project.id) as during_refill:
                started = time.perf_counter()
                filled = refill(ls, settings.home, project.id, size=args.working_set, audit_share=0.1,
                                label_config=CONFIG, pace=0)
                refill_s = time.perf_counter() - started
            with Latency(studio.url, studio.token, project.id) as latency:
                started = time.perf_counter()
                stored = publisher.publish(project.id, VERSION, timeout=600)
                seconds = time.perf_counter() - started
            assert filled.imported == args.working_set and stored == args.working_set, (filled, stored)
            return {"side": "pool", "tasks": n, "seed": seed, "publish_s": seconds, "stored": stored,
                    "publish_p99_s": p99(latency.seconds), "calls": len(latency.seconds), "refill_s": refill_s,
                    "refill_p99_s": p99(during_refill.seconds)}

        sizes = [int(s) for s in args.tasks.split(",")]
        for n in sizes:
            for pair in range(args.pairs):
                for side in (whole, pool) if pair % 2 == 0 else (pool, whole):
                    run = side(n, seed=n + 100 * pair + (side is pool))  # fresh texts for every run
                    runs.append(run)
                    print(f"{n:>8,} {run['side']:<5} publish {run['publish_s']:7.1f} s ({run['stored']:,} predictions), "
                          f"p99 GET {run['publish_p99_s'] * 1000:5.0f} ms"
                          + (f"; refill {run['refill_s']:.1f} s, p99 GET {run['refill_p99_s'] * 1000:.0f} ms"
                             if "refill_s" in run else ""), flush=True)
        for n in [int(s) for s in args.pool_only.split(",") if s]:
            for repeat in range(3):
                run = pool(n, seed=n + 100 * repeat + 1)
                runs.append(run)
                print(f"{n:>8,} pool  publish {run['publish_s']:7.1f} s, p99 GET {run['publish_p99_s'] * 1000:5.0f} ms; "
                      f"refill {run['refill_s']:.1f} s, p99 GET {run['refill_p99_s'] * 1000:.0f} ms", flush=True)
    finally:
        studio.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary: dict = {}
    for n in [int(s) for s in args.pool_only.split(",") if s]:
        mine = [r for r in runs if r["tasks"] == n]
        summary[f"pool only {n}"] = {"publish_s_median": statistics.median(r["publish_s"] for r in mine),
                                     "refill_s_min": min(r["refill_s"] for r in mine),
                                     "refill_s_median": statistics.median(r["refill_s"] for r in mine),
                                     "refill_p99_s_max": max(r["refill_p99_s"] for r in mine)}
        print(f"{n:>8,} texts in the pool: refill of {args.working_set} median {summary[f'pool only {n}']['refill_s_median']:.1f} s, "
              f"p99 of GET /api/projects/ID during it at most {summary[f'pool only {n}']['refill_p99_s_max']:.2f} s")
    for n in sizes:
        row: dict = {}
        for side in ("whole", "pool"):
            mine = [r for r in runs if r["tasks"] == n and r["side"] == side]
            row[side] = {"publish_s_min": min(r["publish_s"] for r in mine),
                         "publish_s_median": statistics.median(r["publish_s"] for r in mine),
                         "publish_p99_s_max": max(r["publish_p99_s"] for r in mine)}
            if side == "pool":
                row[side].update(refill_s_median=statistics.median(r["refill_s"] for r in mine),
                                 refill_p99_s_max=max(r["refill_p99_s"] for r in mine))
        row["ratio_of_medians"] = row["whole"]["publish_s_median"] / row["pool"]["publish_s_median"]
        summary[str(n)] = row
        print(f"{n:>8,} tasks: publish whole project median {row['whole']['publish_s_median']:.1f} s "
              f"(min {row['whole']['publish_s_min']:.1f}), working set only median {row['pool']['publish_s_median']:.2f} s "
              f"(min {row['pool']['publish_s_min']:.2f}): {row['ratio_of_medians']:.0f}x; p99 of GET /api/projects/ID "
              f"at most {row['whole']['publish_p99_s_max']:.2f} s and {row['pool']['publish_p99_s_max']:.2f} s, "
              f"during the refill {row['pool']['refill_p99_s_max']:.2f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"working_set": args.working_set, "pairs": args.pairs, "summary": summary,
                                    "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
