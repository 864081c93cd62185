"""A project's annotations as training and few-shot prompts read them.

Webhooks store annotations as they come; before a training, and at most every few minutes for the LLM's
examples, they are replaced by what Label Studio holds (best effort, with short timeouts: a Label Studio
that is down never holds a training). The audit split (:mod:`labelloop.audit`) and the frozen test split of
earlier exports are left out, and so is any task whose text duplicates one of theirs: they measure models
and never train them. A record whose result is malformed is skipped with a warning, so one bad annotation never
blocks a project.

The same pull keeps the project's unannotated tasks in memory, for self-training (:meth:`unlabeled_texts`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from labelloop.audit import AuditFrame, audit_key, audit_rank
from labelloop.data.dataset import load_frozen_test
from labelloop.errors import AnnotationError, LabelLoopError
from labelloop.labeling.kinds import answer_of
from labelloop.labeling.schema import ControlSpec
from labelloop.quality.dedup import content_key
from labelloop.serving.clients import Clients
from labelloop.serving.store import AnnotationRecord, Store
from labelloop.studio import lsclient

log = logging.getLogger(__name__)

REFRESH_SECONDS = 300.0
MAX_UNLABELED = 2_000  # unlabeled texts one self-training reads: bounds its seconds on a large project


class ProjectAnnotations:
    """Reads, refreshes and filters the annotations of the store's projects."""

    def __init__(self, store: Store, clients: Clients, *, audit_share: float = 0.0) -> None:
        self.store = store
        self.clients = clients
        self.audit_share = audit_share
        self._pulled: dict[int, float] = {}
        self._failed: dict[int, tuple[float, int]] = {}  # project -> (when its last pull failed, failures in a row)
        self._unlabeled: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def pull(self, project_id: int) -> None:
        """Replace the stored annotations with Label Studio's, when it can be reached (best effort).

        After a failed pull the project's next pulls are skipped for a while (15 s, doubling to 5 minutes): a
        hung Label Studio would otherwise hold a training thread for its whole timeout on every training, and
        with enough hung projects, every thread."""
        now = time.monotonic()
        with self._lock:
            self._pulled[project_id] = now
            failed_at, failures = self._failed.get(project_id, (0.0, 0))
        if failures and now - failed_at < min(300.0, 15.0 * 2 ** (failures - 1)):
            log.info("project %s: Label Studio failed %d time(s) in a row; training on the annotations received so "
                     "far", project_id, failures)
            return
        client = self.clients.client_for(project_id)
        if client is None:
            return
        unlabeled: list[tuple[int, dict[str, Any]]] = []
        try:
            rows = lsclient.fetch_annotations(client, project_id, retry=lsclient.BEST_EFFORT, unlabeled=unlabeled)
        except LabelLoopError as e:
            with self._lock:
                self._failed[project_id] = (time.monotonic(), failures + 1)
            log.warning("project %s: using the annotations received so far: %s", project_id, e)
            return
        with self._lock:
            self._failed.pop(project_id, None)
        self.store.replace_annotations(project_id, rows)
        self.keep_unlabeled(project_id, unlabeled)

    def keep_unlabeled(self, project_id: int, tasks: list[tuple[int, dict[str, Any]]]) -> None:
        """Hold ``(task_id, data)`` of the project's unannotated tasks, as a pull found them."""
        with self._lock:
            self._unlabeled[project_id] = list(tasks)

    def refresh(self, project_id: int) -> None:
        """:meth:`pull`, at most every five minutes (for processes that get no webhooks)."""
        with self._lock:
            last = self._pulled.get(project_id)
        if last is None or time.monotonic() - last >= REFRESH_SECONDS:
            self.pull(project_id)

    def frame(self, project_id: int) -> AuditFrame:
        """Which tasks are the project's audit split now (its current round, :mod:`labelloop.audit`)."""
        return self.store.audit_frame(project_id, self.audit_share)

    def training_records(self, project_id: int) -> list[AnnotationRecord]:
        """The project's latest annotation of each task, less the audit and frozen test splits."""
        return self.split(project_id)[0]

    def audit_records(self, project_id: int) -> list[AnnotationRecord]:
        """The latest annotation of each annotated audit task: the project's unbiased test set."""
        return self.split(project_id)[1]

    def split(self, project_id: int) -> tuple[list[AnnotationRecord], list[AnnotationRecord]]:
        """``(train, audit)`` records; a task whose text duplicates an audit or frozen test text trains nothing."""
        audit: list[AnnotationRecord] = []
        rest: list[AnnotationRecord] = []
        frame = self.frame(project_id)
        for record in self.store.latest_annotations(project_id):
            (audit if audit_key(record.task_id, record.data) in frame else rest).append(record)
        held = self._held(project_id, audit)
        return [r for r in rest if not any(k in held for k in _text_keys(r))], audit

    def _held(self, project_id: int, audit: list[AnnotationRecord]) -> set[str]:
        """Content keys of the texts that only ever measure models: the frozen test split and the audit items."""
        return load_frozen_test(self.store.home, project_id) | {k for r in audit for k in _text_keys(r)}

    def unlabeled_texts(self, project_id: int, spec: ControlSpec, *, limit: int = MAX_UNLABELED) -> list[str]:
        """Texts of ``spec`` in tasks that had no annotation at the last pull, less the audit split, tasks
        annotated since, and texts of the audit or frozen test splits: at most ``limit`` of them, the same ones
        from one pull to the next (they are taken in the order of a hash of the task id)."""
        with self._lock:
            tasks = list(self._unlabeled.get(project_id, ()))
        if not tasks:
            return []
        train, audit = self.split(project_id)
        annotated = {r.task_id for r in train + audit}
        held = self._held(project_id, audit)
        frame = self.frame(project_id)
        out: dict[str, None] = {}
        for task_id, data in sorted(tasks, key=lambda t: audit_rank(project_id, t[0])):
            text = data.get(spec.value_key)
            if (task_id in annotated or audit_key(task_id, data) in frame
                    or not isinstance(text, str)
                    or not text.strip() or content_key(text) in held):
                continue
            out[text] = None
            if len(out) >= limit:
                break
        return list(out)

    def audit_tasks(self, project_id: int, spec: ControlSpec) -> list[tuple[int, str]]:
        """``(task_id, text)`` of every audit task known: the annotated ones, and the unannotated ones of the last
        pull (the frame a challenger and the champion both predict)."""
        with self._lock:
            open_tasks = list(self._unlabeled.get(project_id, ()))
        out: dict[int, str] = {}
        frame = self.frame(project_id)
        for record in self.audit_records(project_id):
            text = record.data.get(spec.value_key) if isinstance(record.data, dict) else None
            if isinstance(text, str) and text.strip():
                out[record.task_id] = text
        for task_id, data in open_tasks:
            text = data.get(spec.value_key) if isinstance(data, dict) else None
            if task_id not in out and audit_key(task_id, data) in frame and isinstance(text, str) and text.strip():
                out[task_id] = text
        return sorted(out.items())

    def answers(self, project_id: int, spec: ControlSpec, task_ids: set[int]) -> dict[int, Any]:
        """``{task_id: answer}`` of the annotated tasks among ``task_ids`` that answer ``spec``, whichever audit
        frame they were drawn in (a gate carried over several frames counts the labels of each)."""
        out = {}
        for record in self.store.latest_annotations(project_id):
            if record.task_id in task_ids:
                for _, answer in self.pairs(spec, [record]):
                    out[record.task_id] = answer
        return out

    @staticmethod
    def pairs(spec: ControlSpec, records: list[AnnotationRecord]) -> list[tuple[str, Any]]:
        """``(text, answer)`` for every record that answers ``spec``; malformed records are skipped."""
        out = []
        for record in records:
            text = record.data.get(spec.value_key) if isinstance(record.data, dict) else None
            if not isinstance(text, str) or not text.strip():
                continue
            try:
                answer = answer_of(spec, record.result)
            except AnnotationError as e:
                log.warning("skipping annotation %s of task %s: %s", record.annotation_id, record.task_id, e)
                continue
            if answer is not None:
                out.append((text, answer))
        return out


def _text_keys(record: AnnotationRecord) -> list[str]:
    return [content_key(v) for v in record.data.values() if isinstance(v, str)] if isinstance(record.data, dict) else []
