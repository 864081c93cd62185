"""``labelloop pool ...``: register a corpus, score it (here or on Ray), follow and cancel the job, refill Label
Studio's working set from the scores, and bring the labels back to the pool's ids."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labelloop.pool.corpus import Pool


def add_commands(sub) -> None:
    p = sub.add_parser("pool", help="a corpus beside Label Studio: `pool add`, `pool score` (here or on Ray Data), "
                                    "`pool refill` (Label Studio's working set), `pool status`, `pool labels`")
    pool = p.add_subparsers(dest="pool_command", required=True)

    p = pool.add_parser("add", help="register a corpus (JSONL, CSV, Parquet, or a Hugging Face dataset folder) as "
                                    "the project's pool, without importing it into Label Studio")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--data", required=True, help="a file or folder of .jsonl, .csv or .parquet, or a folder written "
                                                 "by datasets' save_to_disk")
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", help="a column of stable ids (default: an id from each text's content)")
    p.add_argument("--near-duplicates", type=_similarity, metavar="THRESHOLD",
                   help="also report near duplicates (Jaccard similarity of shingles at least THRESHOLD, e.g. 0.8)")
    p.set_defaults(func=cmd_add)

    p = pool.add_parser("score", help="score every text of the pool with the project's model (resumes a stopped "
                                      "job); Ctrl-C stops it, keeping what is finished")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: in this process; ray: Ray Data actors on this machine, or on the cluster at "
                        "--ray-address / RAY_ADDRESS (needs labelloop[scale])")
    p.add_argument("--version", help="the model version to score with (default: the one serving the project)")
    p.add_argument("--workers", type=int, default=2, help="Ray actors, each with its own copy of the model")
    p.add_argument("--cpus-per-worker", type=float, default=0.5,
                   help="CPUs each Ray actor reserves (fractional, so reading the pool keeps a CPU)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--ray-address", help="a Ray cluster to run on (default: a local Ray, started and stopped here)")
    p.set_defaults(func=cmd_score)

    p = pool.add_parser("status", help="the pool and its newest scoring job")
    p.add_argument("--project", type=int, required=True)
    p.set_defaults(func=cmd_status)

    p = pool.add_parser("cancel", help="stop the project's scoring job after its current batch")
    p.add_argument("--project", type=int, required=True)
    p.set_defaults(func=cmd_cancel)

    p = pool.add_parser("refill", help="top Label Studio's project up with the pool's next texts (audit texts, then "
                                       "the least confident), predictions embedded")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--size", type=int, default=None, help="unlabelled pool tasks to keep in the project "
                                                          "(default: LABELLOOP_WORKING_SET)")
    p.add_argument("--version", help="the scores to choose by (default: the newest finished job's)")
    p.add_argument("--chunk", type=int, default=500, help="tasks per import (at most 500)")
    p.add_argument("--pace", type=float, default=30.0, help="seconds between imports (Label Studio advises one "
                                                            "large import per 30 s)")
    p.add_argument("--url", help="Label Studio URL (default: LABEL_STUDIO_URL)")
    p.set_defaults(func=cmd_refill)

    p = pool.add_parser("labels", help="the project's annotations joined back to the pool's ids, as JSONL")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--output", required=True, help="a .jsonl file of {pool_id, task_id, label}")
    p.add_argument("--url", help="Label Studio URL (default: LABEL_STUDIO_URL)")
    p.set_defaults(func=cmd_labels)


def _home() -> Path:
    from labelloop.environment import load_settings

    return Path(load_settings().home)


def cmd_add(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from labelloop.pool.corpus import Pool, add_corpus

    home = _home()
    with tqdm(desc="reading", unit="text", file=sys.stderr) as bar:
        info = add_corpus(home, args.project, args.data, text_field=args.text_field, id_field=args.id_field,
                          progress=bar.update)
    print(f"project {args.project}: {info.texts:,} texts in {len(info.shards)} shards under "
          f"{Pool(home, args.project).folder} ({info.duplicates:,} exact duplicates and {info.empty:,} empty texts "
          "left out)")
    if args.near_duplicates:
        report_near_duplicates(Pool(home, args.project), args.near_duplicates)


def report_near_duplicates(pool: Pool, threshold: float, shown: int = 5) -> None:
    """Every near duplicate to ``near_duplicates.jsonl`` in the pool's folder (only its owner reads it), the
    count and the first few on screen."""
    import os

    from tqdm import tqdm

    from labelloop.pool.near import near_duplicates

    path = pool.folder / "near_duplicates.jsonl"
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    found, first = 0, []
    try:
        with tqdm(desc="near duplicates", unit="text", total=pool.info().texts, file=sys.stderr) as bar, \
                open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            for text_id, other, similarity in near_duplicates(pool, threshold=threshold, progress=bar.update):
                out.write(json.dumps({"id": text_id, "near": other, "similarity": round(similarity, 4)}) + "\n")
                if found < shown:
                    first.append(f"  {text_id} ~ {other} ({similarity:.2f})")
                found += 1
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    print(f"{found:,} near duplicates (similarity >= {threshold}), each with its most similar earlier text, in {path}"
          + (":" if first else ""))
    if first:
        print("\n".join(first))


def _similarity(value: str) -> float:
    """``--near-duplicates``, checked as the search checks it, so a bad one stops the command before the corpus is
    read."""
    from labelloop.errors import ConfigError
    from labelloop.pool.near import check_threshold

    try:
        threshold = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number: give a Jaccard similarity, e.g. 0.8") from None
    try:
        return check_threshold(threshold)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def cmd_score(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from labelloop.pool.scoring import score_pool

    bar = tqdm(desc=f"scoring ({args.engine})", unit="text", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        state = score_pool(_home(), args.project, engine=args.engine, version=args.version,
                           batch_size=args.batch_size, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                           gpus_per_worker=args.gpus_per_worker, ray_address=args.ray_address, progress=progress)
    finally:
        bar.close()
    print(f"{state.state}: {state.scored:,} of {state.total:,} texts scored with {state.version} "
          f"({state.rate:,.0f} texts/s on {args.engine}, {state.shards_done}/{state.shards} shards)")


def cmd_status(args: argparse.Namespace) -> None:
    from labelloop.pool.corpus import Pool
    from labelloop.pool.jobs import describe, status

    pool = Pool(_home(), args.project)
    info = pool.info()
    print(f"project {args.project}: {info.texts:,} texts from {info.source} ({len(info.shards)} shards)")
    job = status(pool)
    if job is None:
        print("not scored yet: labelloop pool score --project", args.project)
        return
    print(describe(job))


def cmd_cancel(args: argparse.Namespace) -> None:
    from labelloop.pool.corpus import Pool
    from labelloop.pool.jobs import cancel

    version = cancel(Pool(_home(), args.project))
    print(f"asked the job scoring {version} to stop after its current batch" if version
          else "no scoring job is running for this project")


def cmd_refill(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from labelloop.environment import load_settings, studio_client
    from labelloop.pool.working_set import refill
    from labelloop.studio import lsclient

    settings = load_settings()
    client = studio_client(args.url)
    config = lsclient.call(f"reading project {args.project}", client.projects.get, id=args.project).label_config
    with tqdm(desc="importing", unit="task", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        done = refill(client, Path(settings.home), args.project, size=args.size or settings.working_set,
                      version=args.version, audit_share=settings.audit_share, instance=settings.instance,
                      label_config=config, chunk=args.chunk, pace=args.pace, progress=progress)
    assert done is not None  # it waits its turn
    chosen = f"by the scores of {done.version}" if done.version else "at random (no scores yet)"
    print(f"project {args.project}: imported {done.imported} pool tasks ({done.audit} audit), chosen {chosen}, "
          f"in {done.chunks} imports; {done.open_before} were still open, {done.in_project} pool tasks in the project")


def cmd_labels(args: argparse.Namespace) -> None:
    from labelloop.environment import studio_client
    from labelloop.pool.working_set import labels
    from labelloop.studio import lsclient

    client = studio_client(args.url)
    config = lsclient.call(f"reading project {args.project}", client.projects.get, id=args.project).label_config
    rows = labels(client, args.project, config)
    with open(args.output, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} labels of pool texts to {args.output}")
