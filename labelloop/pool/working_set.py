"""Label Studio holds the working set: the pool's texts annotators need now, refilled from the pool's scores.

A refill tops the project up to ``size`` unlabelled pool tasks: first the pool's audit texts (the same random
share of texts, by text id, that the backend never trains on), then the texts the model is least sure of; with
no scores yet, a random draw (cold start). Each task carries its text, its pool id (``pool_id``) and its
confidence (``labelloop_score``, a Data Manager column Label Studio Community users can sort on), with the
model's prediction embedded, and is imported in chunks of at most 500, paced as Label Studio advises for large
imports. Annotations come back to the pool's ids through ``pool_id`` (:func:`labels`).

``labelloop pool refill`` runs it by hand; the backend runs it before each publish (:class:`AutoRefill`) once
annotators have drained the working set below a share of its size (``LABELLOOP_REFILL_AT``).
"""

from __future__ import annotations

import fcntl
import hashlib
import heapq
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelloop.audit import AuditFrame, stored_frame
from labelloop.errors import ConfigError
from labelloop.pool.corpus import Pool
from labelloop.studio import lsclient

log = logging.getLogger(__name__)

POOL_ID = "pool_id"  # task data: the text's id in the pool
SCORE_FIELD = "labelloop_score"  # task data: the model's confidence (lower: more informative)
MAX_CHUNK = 500  # tasks per import request (Label Studio's advice for imports with predictions)
PACE = 30.0  # seconds between large imports (Label Studio's advice)
RETRY_FAILED = 300.0  # seconds before the backend tries a refill that failed again
RECORD = "in_studio.txt"  # in the pool's folder: the pool ids imported into Label Studio, one a line
# Data Manager filter: the tasks that came from a pool.
FROM_POOL = {"filter": f"filter:tasks:data.{POOL_ID}", "operator": "empty", "type": "String", "value": False}


@dataclass
class Refill:
    imported: int
    audit: int
    open_before: int
    in_project: int
    version: str | None
    chunks: int


def working_set(client, project_id: int, pool: Pool | None = None) -> tuple[set[str], int]:
    """``(the pool ids the project holds in Label Studio, how many of those tasks are open)``.

    Only the open tasks (the working set, a few hundred) are listed. Which pool ids the labelled ones hold comes
    from ``pool``'s record of what it imported (:data:`RECORD`), trusted while Label Studio counts as many pool
    tasks as it holds and it holds every open one. Otherwise (tasks deleted or imported by hand, a refill killed
    mid-import, a pool added again, no ``pool`` given) every task is listed once and the record is rewritten.
    """
    open_ids = [str(pool_id) for task in lsclient.iter_tasks(client, project_id, page_size=1000, include="id,data",
                                                             filters=[lsclient.OPEN])
                if (pool_id := _pool_id(task)) is not None]
    recorded = _recorded(pool) if pool is not None else None
    if recorded is not None and recorded.issuperset(open_ids) and \
            lsclient.count_tasks(client, project_id, [FROM_POOL]) == len(recorded):
        return recorded, len(open_ids)
    held: set[str] = set()
    open_ = 0
    for task in lsclient.iter_tasks(client, project_id, page_size=1000, include="id,data,is_labeled"):
        if (pool_id := _pool_id(task)) is not None:
            held.add(str(pool_id))
            open_ += not task.is_labeled
    if pool is not None:
        write_record(pool, held)
    return held, open_


def _pool_id(task) -> object:
    return task.data.get(POOL_ID) if isinstance(task.data, dict) else None


def _recorded(pool: Pool) -> set[str] | None:
    try:
        return set((pool.folder / RECORD).read_text().splitlines())
    except FileNotFoundError:
        return None


def write_record(pool: Pool, ids: set[str]) -> None:
    """Replace the record whole (a partial file renamed over it, so a kill leaves the old one or the new)."""
    partial = pool.folder / f"{RECORD}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{i}\n" for i in sorted(ids)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, pool.folder / RECORD)


def _record(pool: Pool, ids: list[str]) -> None:
    """Add ``ids`` to the record before they are imported: an import that then fails or is killed leaves the
    record ahead of Label Studio's count, and the next refill lists the project once and rewrites it."""
    fd = os.open(pool.folder / RECORD, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write("".join(f"{i}\n" for i in ids))
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def _refilling(pool: Pool, *, wait: bool) -> Iterator[bool]:
    """One refill of a pool's project at a time (the backend's and a lead's), so none imports a text twice;
    yields False when ``wait`` is off and another refill holds the project."""
    fd = os.open(pool.folder / "refill.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def choose(pool: Pool, held: set[str], need: int, *, frame: AuditFrame, version: str | None, seed: int = 0
           ) -> tuple[list[dict], str | None]:
    """The next ``need`` texts for Label Studio, as ``{"id", "text", "confidence", "label", "audit"}``, and the
    model version whose scores chose them (None: no scores, a random draw). ``frame``'s share of them are
    texts of the project's audit frame, in the frame's random order.

    The pool is read shard by shard and only each shard's best candidates are kept, so memory is one shard's
    and ``need`` rows however large the pool.
    """
    from labelloop.pool.jobs import scores_by_shard

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
           label_config: str, chunk: int = MAX_CHUNK, pace: float = PACE, instance: str = "", below: int | None = None,
           at_most: int | None = None, wait: bool = True,
           progress: Callable[[int, int], None] | None = None) -> Refill | None:
    """Top the project up to ``size`` unlabelled pool tasks (see the module); ``version`` names the scores to
    choose by (None: the newest scored version, or a random draw when there is none).

    ``below``: import only when fewer than that many pool tasks are open; ``at_most``: import no more than that.
    Refills of one project take turns; with ``wait`` off, None when another one holds the project.
    """
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
    kind = kind_of(control)
    assert isinstance(kind, ClassificationKind)  # single_choice() gives a Choices or Taxonomy control
    with _refilling(pool, wait=wait) as mine:
        if not mine:
            return None
        if version is None:
            newest = status(pool)
            version = newest["version"] if newest and newest.get("state") == "done" else None
        held, open_before = working_set(client, project_id, pool)
        need = 0 if below is not None and open_before >= below else size - open_before
        if at_most is not None:
            need = min(need, at_most)
        frame = stored_frame(home, project_id, audit_share, instance=instance)  # the backend's current audit frame
        rows, version = choose(pool, held, need, frame=frame, version=version)
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
            _record(pool, [t["data"][POOL_ID] for t in part])
            lsclient.call(f"importing pool tasks into project {project_id}", client.projects.import_tasks,
                          id=project_id, request=part, retry=None)
            chunks += 1
            if progress:
                progress(start + len(part), len(tasks))
    return Refill(len(tasks), sum(r["audit"] for r in rows), open_before, len(held) + len(tasks), version, chunks)


class AutoRefill:
    """The backend's refill, run before each publish: a pool's project whose open pool tasks fell under ``at`` of
    ``size`` gets the pool's next texts, at most one import of up to 500 every 30 seconds (Label Studio's advice
    for large imports), so annotators who drain the working set find it topped up after their next annotations."""

    def __init__(self, home: Path, *, size: int, at: float, audit_share: float, instance: str = "") -> None:
        self.home = Path(home)
        self.size = size
        self.below = max(1, math.ceil(at * size))
        self.audit_share = audit_share
        self.instance = instance
        self._last: dict[int, float] = {}  # project -> when it was last imported into (monotonic)
        self._unfillable: set[int] = set()  # projects already warned about
        self._failed_until: dict[int, float] = {}  # project -> when a refill that failed may be tried again

    def has_pool(self, project_id: int) -> bool:
        return Pool(self.home, project_id).exists()

    def needed(self, client, project_id: int, label_config: str | None) -> bool:
        """Whether the project has a pool, was not imported into in the last 30 s, and has fewer open pool tasks
        than the refill waits for (Label Studio counts them: one page of one id)."""
        last = self._last.get(project_id)
        if label_config is None or (last is not None and time.monotonic() - last < PACE) or \
                time.monotonic() < self._failed_until.get(project_id, 0.0) or \
                not self.has_pool(project_id) or not self._fillable(project_id, label_config):
            return False
        return lsclient.count_tasks(client, project_id, [lsclient.OPEN, FROM_POOL],
                                    retry=lsclient.BEST_EFFORT) < self.below

    def _fillable(self, project_id: int, label_config: str) -> bool:
        """Whether the labeling config has the single-choice control a refill fills (said once per project)."""
        from labelloop.labeling.schema import parse_label_config

        try:
            if parse_label_config(label_config).single_choice() is not None:
                return True
            reason = "its labeling config has no single-choice classification control"
        except ConfigError as e:
            reason = str(e)
        if project_id not in self._unfillable:
            self._unfillable.add(project_id)
            log.warning("project %s has a pool, but it is not refilled: %s", project_id, reason)
        return False

    def __call__(self, client, project_id: int, label_config: str | None) -> Refill | None:
        """The refill made (None: not :meth:`needed`, or another refill holds the project). Raises what
        :func:`refill` raises."""
        if not self.needed(client, project_id, label_config):
            return None
        assert label_config is not None
        try:
            done = refill(client, self.home, project_id, size=self.size, audit_share=self.audit_share,
                          label_config=label_config, instance=self.instance, below=self.below, at_most=MAX_CHUNK,
                          wait=False)
        except Exception:  # not tried again for a while, so a failing refill doesn't bring a publish every 30 s
            self._failed_until[project_id] = time.monotonic() + RETRY_FAILED
            raise
        if done is not None and done.imported:
            self._last[project_id] = time.monotonic()
        return done


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

