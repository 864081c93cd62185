"""Label Studio holds the working set: the pool's texts annotators need now, refilled from the pool's scores.

A refill tops the project up to ``size`` unlabelled pool tasks: first the pool's audit texts (the same random
share of texts, by text id, that the backend never trains on), then the texts the model is least sure of; with
no scores yet, a random draw (cold start). Each task carries its text, its pool id (``pool_id``) and its
confidence (``labelloop_score``, a Data Manager column Label Studio Community users can sort on), with the
model's prediction embedded, and is imported in chunks of at most 500, paced as Label Studio advises for large
imports. Annotations come back to the pool's ids through ``pool_id`` (:func:`labels`).
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelloop.audit import AuditFrame, stored_frame
from labelloop.errors import ConfigError
from labelloop.pool.corpus import Pool
from labelloop.studio import lsclient

POOL_ID = "pool_id"  # task data: the text's id in the pool
SCORE_FIELD = "labelloop_score"  # task data: the model's confidence (lower: more informative)
MAX_CHUNK = 500  # tasks per import request (Label Studio's advice for imports with predictions)


@dataclass
class Refill:
    imported: int
    audit: int
    open_before: int
    in_project: int
    version: str | None
    chunks: int


def working_set(client, project_id: int) -> tuple[dict[str, int], int]:
    """``({pool id: task id}, unlabelled pool tasks)`` of the project in Label Studio."""
    held: dict[str, int] = {}
    open_ = 0
    for task in lsclient.iter_tasks(client, project_id, page_size=1000, include="id,data,is_labeled"):
        pool_id = task.data.get(POOL_ID) if isinstance(task.data, dict) else None
        if pool_id is not None:
            held[str(pool_id)] = task.id
            open_ += not task.is_labeled
    return held, open_


def choose(pool: Pool, held: set[str], need: int, *, frame: AuditFrame, version: str | None, seed: int = 0
           ) -> tuple[list[dict], str | None]:
    """The next ``need`` texts for Label Studio, as ``{"id", "text", "confidence", "label", "audit"}``, and the
    model version whose scores chose them (None: no scores, a random draw). ``frame``'s share of them are
    texts of the project's audit frame, in the frame's random order.

    The pool is read shard by shard and only each shard's best candidates are kept, so memory is one shard's
    and ``need`` rows however large the pool.
    """
    from labelloop.pool.scoring import scores_by_shard

    if need <= 0:
        return [], version
    want_audit = int(round(need * frame.share)) if frame.share > 0 else 0
    audit: list[tuple[float, str, float | None, str | None]] = []  # (audit rank, id, confidence, label)
    rest: list[tuple[float, str, float | None, str | None]] = []  # (confidence or, before any scores, a random key;
    #                                                                  id, confidence, label)
    scored = version is not None
    tables = scores_by_shard(pool, version) if version is not None else (table for _, table in pool.read(("id",)))
    for table in tables:
        ids = table.column("id").to_pylist()
        if scored:
            keys = table.column("confidence").to_numpy(zero_copy_only=False).astype(np.float64)
            labels = table.column("label").to_pylist()
        else:
            keys = np.array([_random_key(seed, i) for i in ids], dtype=np.float64)
            labels = [None] * len(ids)
        free = np.array([i not in held for i in ids], dtype=bool)
        is_audit = np.array([i in frame for i in ids], dtype=bool)
        if want_audit:
            mine = np.flatnonzero(free & is_audit)
            ranks = np.array([frame.rank(ids[j]) for j in mine])
            top = _smallest(ranks, want_audit)
            audit = heapq.nsmallest(want_audit, audit + [
                (float(ranks[k]), ids[mine[k]], float(keys[mine[k]]) if scored else None, labels[mine[k]]) for k in top])
        others = np.flatnonzero(free & ~is_audit)
        best = others[_smallest(keys[others], need)]
        rest = heapq.nsmallest(need, rest + [(float(keys[j]), ids[j], float(keys[j]) if scored else None, labels[j])
                                             for j in best])
    picked = [(i, conf, label, True) for _, i, conf, label in audit]
    picked += [(i, conf, label, False) for _, i, conf, label in rest[:need - len(picked)]]
    texts = pool.texts([p[0] for p in picked])
    return [{"id": i, "text": texts[i], "confidence": conf, "label": label, "audit": is_audit_text}
            for i, conf, label, is_audit_text in picked], version


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest of ``values`` (all of them when there are fewer)."""
    if len(values) <= k:
        return np.arange(len(values))
    return np.argpartition(values, k)[:k]


def _random_key(seed: int, text_id: str) -> float:
    """A fixed random position for a text, the order of a draw before any scores."""
    digest = hashlib.blake2b(f"{seed}\x00{text_id}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big") / float(1 << 48)


def refill(client, home: Path, project_id: int, *, size: int = 200, version: str | None = None, audit_share: float,
           label_config: str, chunk: int = MAX_CHUNK, pace: float = 30.0, instance: str = "",
           progress: Callable[[int, int], None] | None = None) -> Refill:
    """Top the project up to ``size`` unlabelled pool tasks (see the module); ``version`` names the scores to
    choose by (None: the newest scored version, or a random draw when there is none)."""
    from labelloop.labeling.kinds import ClassificationKind, kind_of
    from labelloop.labeling.schema import parse_label_config
    from labelloop.pool.jobs import status

    if not 1 <= chunk <= MAX_CHUNK:
        raise ConfigError(f"chunk must be between 1 and {MAX_CHUNK} tasks (Label Studio's advice), not {chunk}")
    pool = Pool(home, project_id)
    pool.info()
    control = parse_label_config(label_config).single_choice()
    if control is None:
        raise ConfigError(f"project {project_id} has no single-choice classification control to fill from a pool")
    if version is None:
        newest = status(pool)
        version = newest["version"] if newest and newest.get("state") == "done" else None
    held, open_before = working_set(client, project_id)
    frame = stored_frame(home, project_id, audit_share, instance=instance)  # the backend's current audit frame
    rows, version = choose(pool, set(held), size - open_before, frame=frame, version=version)
    kind = kind_of(control)
    assert isinstance(kind, ClassificationKind)  # single_choice() gives a Choices or Taxonomy control
    tasks = []
    for row in rows:
        data = {control.value_key: row["text"], POOL_ID: row["id"]}
        task: dict = {"data": data}
        if row["confidence"] is not None:
            data[SCORE_FIELD] = round(float(row["confidence"]), 6)
            if row["label"] in control.labels:
                region = kind.region(control, kind.value(control, [control.labels.index(row["label"])]),
                                     float(row["confidence"]))
                task["predictions"] = [{"model_version": version, "score": float(row["confidence"]),
                                        "result": [region]}]
        tasks.append(task)
    chunks = 0
    for start in range(0, len(tasks), chunk):
        if chunks and pace > 0:
            time.sleep(pace)
        part = tasks[start:start + chunk]
        lsclient.call(f"importing pool tasks into project {project_id}", client.projects.import_tasks,
                      id=project_id, request=part, retry=None)
        chunks += 1
        if progress:
            progress(start + len(part), len(tasks))
    return Refill(len(tasks), sum(r["audit"] for r in rows), open_before, len(held) + len(tasks), version, chunks)


def labels(client, project_id: int, label_config: str) -> list[dict]:
    """Every annotated pool task's label, joined back to the pool: ``{"pool_id", "task_id", "label"}``."""
    from labelloop.labeling.kinds import answer_of, kind_of
    from labelloop.labeling.schema import parse_label_config

    control = parse_label_config(label_config).single_choice()
    if control is None:
        raise ConfigError(f"project {project_id} has no single-choice classification control")
    out = []
    for task_id, _, data, result, cancelled in lsclient.fetch_annotations(client, project_id):
        pool_id = data.get(POOL_ID) if isinstance(data, dict) else None
        answer = None if cancelled or pool_id is None else answer_of(control, result)
        if answer is not None:
            out.append({"pool_id": str(pool_id), "task_id": task_id, "label": kind_of(control).export(control, answer)})
    return out

