"""What the backend lists from Label Studio, on a project whose labelled tasks pile up (a pool's working set after
many labels), interleaved, against a real Label Studio.

``--listing publish``: every task with its data, filtered here (the publisher before), against the open tasks
filtered by Label Studio plus one id to learn whether any task is complete (the publisher now). Both sides must
find the same open tasks and the same answer to "is the project cold?".

``--listing refill``: which pool ids the project holds, from every task with its data (a refill before), against
the open tasks plus the pool's record of what it imported, checked by Label Studio's count of pool tasks (a refill
now). Both sides must find the same pool ids and open count.

Each run gets a project of its own (fresh texts, imported before the clock starts): ``--tasks`` tasks, all but
``--open`` of them imported with an annotation.

    python benchmarks/publish_open.py --tasks 10000 --open 200 --pairs 3
    python benchmarks/publish_open.py --listing refill --tasks 20000 --open 200 --pairs 3

Results: benchmarks/results/publish_open.json (refill: refill_open.json).
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

from labelloop.pool.corpus import Pool  # noqa: E402
from labelloop.pool.working_set import POOL_ID, working_set, write_record  # noqa: E402
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


def held_before(ls, project_id: int, pool: Pool) -> tuple[set[str], int]:
    """A refill before: every task's id, data and is_labeled."""
    return working_set(ls, project_id)


def held_now(ls, project_id: int, pool: Pool) -> tuple[set[str], int]:
    """A refill now: the open tasks, and the pool's record checked by Label Studio's count."""
    return working_set(ls, project_id, pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listing", choices=("publish", "refill"), default="publish")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--open", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.pairs < 3:
        raise SystemExit("an interleaved comparison needs at least 3 pairs")
    refill = args.listing == "refill"
    out = args.out or Path(__file__).parent / "results" / ("refill_open.json" if refill else "publish_open.json")
    before, now = (held_before, held_now) if refill else (every_task, open_tasks)
    work, studio = start_studio("labelloop-publish-open-")
    runs: list[dict] = []
    try:
        ls = lsclient.make_client(studio.url, studio.token, timeout=600)

        def project(seed: int) -> tuple[int, Pool, set[str]]:
            made = create_project(ls, f"open tasks #{seed}", CONFIG)
            texts = make_texts(args.tasks, seed=seed)
            labelled = args.tasks - args.open
            ids = [f"t{seed}-{i}" for i in range(len(texts))]
            rows = [{"data": {"text": t, **({POOL_ID: ids[i]} if refill else {})},
                     **({"annotations": [{"result": POSITIVE}]} if i < labelled else {})} for i, t in enumerate(texts)]
            for i in range(0, len(rows), 1000):
                ls.projects.import_tasks(id=made.id, request=rows[i:i + 1000])
            pool = Pool(work / "home", made.id)
            if refill:  # what the refills that imported these texts recorded
                pool.folder.mkdir(parents=True)
                write_record(pool, set(ids))
            return made.id, pool, set(ids)

        for pair in range(args.pairs):
            for side in (before, now) if pair % 2 == 0 else (now, before):
                project_id, pool, ids = project(seed=1000 * pair + (side is now))  # fresh texts for every run
                started = time.perf_counter()
                found = side(ls, project_id, pool) if refill else side(ls, project_id)
                seconds = time.perf_counter() - started
                if refill:
                    held, open_ = found
                    assert held == ids and open_ == args.open, (len(held), open_)
                else:
                    open_ids, cold = found
                    assert len(open_ids) == args.open and not cold, (len(open_ids), cold)
                runs.append({"side": side.__name__, "seconds": seconds, "open": args.open, "tasks": args.tasks})
                print(f"{side.__name__:<11} {seconds:6.2f} s ({args.open} open of {args.tasks:,})", flush=True)
    finally:
        studio.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for side in (before, now):
        seconds = [r["seconds"] for r in runs if r["side"] == side.__name__]
        summary[side.__name__] = {"min_s": min(seconds), "median_s": statistics.median(seconds)}
    b, n = summary[before.__name__], summary[now.__name__]
    ratio = b["median_s"] / n["median_s"]
    print(f"{before.__name__}: median {b['median_s']:.2f} s (min {b['min_s']:.2f}); {now.__name__}: median "
          f"{n['median_s']:.2f} s (min {n['min_s']:.2f}); {ratio:.1f}x")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "summary": summary, "ratio_of_medians": ratio,
                               "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
