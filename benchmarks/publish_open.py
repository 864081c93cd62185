"""What a publish lists from Label Studio, on a project whose labelled tasks pile up (a pool's working set after
many labels): every task with its data, filtered here (the publisher before), against the open tasks filtered by
Label Studio plus one id to learn whether any task is complete (the publisher now), interleaved, against a real
Label Studio.

Each run gets a project of its own (fresh texts, imported before the clock starts): ``--tasks`` tasks, all but
``--open`` of them imported with an annotation. Both sides must find the same open tasks and the same answer to
"is the project cold?".

    python benchmarks/publish_open.py --tasks 10000 --open 200 --pairs 3

Results: benchmarks/results/publish_open.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_overhead import make_texts  # noqa: E402
from publish_scale import start_studio  # noqa: E402

from labelloop.studio import lsclient  # noqa: E402
from labelloop.studio.projects import create_project  # noqa: E402
from labelloop.templates import label_config  # noqa: E402

CONFIG = label_config("sentiment")
POSITIVE = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]


def every_task(ls, project_id: int) -> tuple[set[int], bool]:
    """The publisher before: every task's id, data and is_labeled, the open ones kept here."""
    listed = list(lsclient.iter_tasks(ls, project_id, page_size=1000, include="id,data,is_labeled"))
    open_ = {t.id for t in listed if not t.is_labeled}
    return open_, len(open_) == len(listed)


def open_tasks(ls, project_id: int) -> tuple[set[int], bool]:
    """The publisher now: Label Studio lists the open tasks, and one id says whether any is complete."""
    open_ = {t.id for t in lsclient.iter_tasks(ls, project_id, page_size=1000, include="id,data,is_labeled",
                                               filters=[lsclient.OPEN]) if not t.is_labeled}
    return open_, not lsclient.any_task(ls, project_id, [lsclient.COMPLETED])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--open", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "publish_open.json")
    args = parser.parse_args()
    if args.pairs < 3:
        raise SystemExit("an interleaved comparison needs at least 3 pairs")
    work, studio = start_studio("labelloop-publish-open-")
    runs: list[dict] = []
    try:
        ls = lsclient.make_client(studio.url, studio.token, timeout=600)

        def project(seed: int) -> int:
            made = create_project(ls, f"open tasks #{seed}", CONFIG)
            texts = make_texts(args.tasks, seed=seed)
            labelled = args.tasks - args.open
            rows = [{"data": {"text": t}, **({"annotations": [{"result": POSITIVE}]} if i < labelled else {})}
                    for i, t in enumerate(texts)]
            for i in range(0, len(rows), 1000):
                ls.projects.import_tasks(id=made.id, request=rows[i:i + 1000])
            return made.id

        for pair in range(args.pairs):
            for side in (every_task, open_tasks) if pair % 2 == 0 else (open_tasks, every_task):
                project_id = project(seed=1000 * pair + (side is open_tasks))  # fresh texts for every run
                started = time.perf_counter()
                found, cold = side(ls, project_id)
                seconds = time.perf_counter() - started
                assert len(found) == args.open and not cold, (len(found), cold)
                runs.append({"side": side.__name__, "seconds": seconds, "open": len(found), "tasks": args.tasks})
                print(f"{side.__name__:<10} {seconds:6.2f} s ({len(found)} open of {args.tasks:,})", flush=True)
    finally:
        studio.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for side in ("every_task", "open_tasks"):
        seconds = [r["seconds"] for r in runs if r["side"] == side]
        summary[side] = {"min_s": min(seconds), "median_s": statistics.median(seconds)}
    ratio = summary["every_task"]["median_s"] / summary["open_tasks"]["median_s"]
    print(f"every task: median {summary['every_task']['median_s']:.2f} s (min {summary['every_task']['min_s']:.2f}); "
          f"open tasks: median {summary['open_tasks']['median_s']:.2f} s (min {summary['open_tasks']['min_s']:.2f}); "
          f"{ratio:.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "summary": summary, "ratio_of_medians": ratio,
                                    "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
