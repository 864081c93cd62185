"""Label Studio holds the working set: the pool's texts annotators need now, refilled from the pool's scores.

A refill tops the project up to ``size`` unlabelled pool tasks: first the pool's audit texts (the same random
share of texts, by text id, that the backend never trains on), then the texts the model is least sure of; with
no scores yet, a random draw (cold start). Each task carries its text, its pool id (``pool_id``) and its
confidence (``labelloop_score``, a Data Manager column Label Studio Community users can sort on), with the
model's prediction embedded, and is imported in chunks of at most 500, paced as Label Studio advises for large
imports. Annotations come back to the pool's ids through ``pool_id`` (:func:`labels`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labelloop import lsclient
from labelloop.audit import audit_rank, in_audit
from labelloop.errors import ConfigError
from labelloop.pool.corpus import Pool

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


def choose(pool: Pool, held: set[str], need: int, *, audit_share: float, version: str | None, seed: int = 0
           ) -> tuple[list[dict], str | None]:
    """The next ``need`` texts for Label Studio, as ``{"id", "text", "confidence", "label", "audit"}``, and the
    model version whose scores chose them (None: no scores, a random draw)."""
    from labelloop.pool.scoring import read_scores

    if need <= 0:
        return [], version
    ids: list[str] = []
    confidence: dict[str, float] = {}
    label: dict[str, str] = {}
    if version is not None:
        scores = read_scores(pool, version)
        ids = scores.column("id").to_pylist()
        confidence = dict(zip(ids, scores.column("confidence").to_pylist(), strict=True))
        label = dict(zip(ids, scores.column("label").to_pylist(), strict=True))
    else:
        for _, table in pool.read(("id",)):
            ids += table.column("id").to_pylist()
    free = [i for i in ids if i not in held]
    is_audit = {i: in_audit(pool.project, i, audit_share) for i in free}
    audit = sorted((i for i in free if is_audit[i]), key=lambda i: audit_rank(pool.project, i))
    n_audit = min(len(audit), int(round(need * audit_share))) if audit_share > 0 else 0
    picked = audit[:n_audit]
    rest = [i for i in free if not is_audit[i]]
    if version is None:
        random.Random(seed).shuffle(rest)
    else:
        rest.sort(key=lambda i: confidence[i])
    picked += rest[:need - len(picked)]
    texts = pool.texts(picked)
    return [{"id": i, "text": texts[i], "confidence": confidence.get(i), "label": label.get(i),
             "audit": is_audit[i]} for i in picked], version


def refill(client, home: Path, project_id: int, *, size: int = 200, version: str | None = None, audit_share: float,
           label_config: str, chunk: int = MAX_CHUNK, pace: float = 30.0,
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
    rows, version = choose(pool, set(held), size - open_before, audit_share=audit_share, version=version)
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

