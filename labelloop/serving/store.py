"""Durable state of the backend, in one SQLite file under ``$LABELLOOP_HOME``.

Annotations from webhooks are written here before the webhook is acknowledged, the training queue
lives here so it survives a restart, and every trained ``model_version`` is recorded with its folder.
Everything is keyed by Label Studio instance and project: one home can serve several Label Studio
servers, and an annotation id that another project (or another server) also uses never touches its row.
One connection is shared by the threads of a process behind a lock; any number of processes may share
the file (SQLite's WAL keeps reads cheap, and a job is leased to one process at a time).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelloop.serving.jobs import JobQueue
from labelloop.serving.ladder_state import LadderState


@dataclass(frozen=True)
class AnnotationRecord:
    """The latest annotation of one task, as training reads it."""

    annotation_id: int
    task_id: int
    data: dict[str, Any]
    result: list[Any]


@dataclass(frozen=True)
class VersionRecord:
    project_id: int
    number: int
    model_version: str
    path: Path
    n_annotations: int
    created_at: float
    broken: str | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """The version's ``meta.json`` (empty when it can't be read)."""
        try:
            meta = json.loads((self.path / "meta.json").read_text())
        except (OSError, ValueError, RecursionError):
            return {}
        return meta if isinstance(meta, dict) else {}

    @property
    def audit(self) -> dict[str, Any]:
        """What the version's models scored on the audit split when it was trained (from its ``meta.json``:
        word taggers and relation models, by control)."""
        scores = self.meta.get("audit")
        return scores if isinstance(scores, dict) else {}


class Store(JobQueue, LadderState):
    """All durable state of one Label Studio ``instance``; safe to share between threads and processes."""

    # -- projects ---------------------------------------------------------------------------------

    def save_label_config(self, project_id: int, label_config: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO projects(instance, project_id, label_config, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(instance, project_id) DO UPDATE SET label_config=excluded.label_config, "
                "updated_at=excluded.updated_at",
                (self.instance, project_id, label_config, time.time()),
            )

    def projects(self) -> list[int]:
        """Ids of the projects whose labeling config the backend holds (it has been connected to them)."""
        return [r[0] for r in self._query("SELECT project_id FROM projects WHERE instance=? AND label_config IS NOT "
                                          "NULL ORDER BY project_id", (self.instance,))]

    def label_config(self, project_id: int) -> str | None:
        return self._project_field(project_id, "label_config")

    def _project_field(self, project_id: int, column: str) -> str | None:
        """A text column of the project's row (None: no row, or no value)."""
        rows = self._query(f"SELECT {column} FROM projects WHERE instance=? AND project_id=?",
                           (self.instance, project_id))
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def _set_project(self, project_id: int, **values: object) -> None:
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        updates = ", ".join(f"{c}=excluded.{c}" for c in values)
        with self._tx() as db:
            db.execute(f"INSERT INTO projects(instance, project_id, {columns}) VALUES (?, ?, {marks}) "
                       f"ON CONFLICT(instance, project_id) DO UPDATE SET {updates}",
                       (self.instance, project_id, *values.values()))

    def bound_host(self, project_id: int) -> str | None:
        """The Label Studio address the project was first set up from (None: not bound yet)."""
        return self._project_field(project_id, "bound_host")

    def bind_host(self, project_id: int, host: str) -> None:
        self._set_project(project_id, bound_host=host)

    def set_error(self, project_id: int, error: str | None) -> None:
        self._set_project(project_id, last_error=error)

    def last_error(self, project_id: int) -> str | None:
        return self._project_field(project_id, "last_error")

    # -- publishing -------------------------------------------------------------------------------

    def set_publish_pending(self, project_id: int, version: str | None, *, error: str | None = None,
                            after: float = 0.0) -> None:
        """Record that ``version`` still has to reach Label Studio (None: nothing is owed)."""
        self._set_project(project_id, publish_version=version, publish_error=error, publish_after=after)

    def publish_pending(self, project_id: int) -> tuple[str | None, str | None]:
        """``(version owed to Label Studio, the last failure)``."""
        rows = self._query("SELECT publish_version, publish_error FROM projects WHERE instance=? AND project_id=?",
                           (self.instance, project_id))
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def set_published(self, project_id: int, version: str) -> None:
        """Record that Label Studio holds ``version``'s predictions and serves it as the project's model_version."""
        self._set_project(project_id, published_version=version)

    def published_version(self, project_id: int) -> str | None:
        return self._project_field(project_id, "published_version")

    def publishes_due(self, now: float) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self._query(
            "SELECT project_id, publish_version FROM projects WHERE instance=? AND publish_version IS NOT NULL AND "
            "COALESCE(publish_after, 0) <= ?", (self.instance, now))]

    # -- annotations ------------------------------------------------------------------------------

    def upsert_annotation(
        self, project_id: int, task_id: int, annotation_id: int, data: dict[str, Any], result: list[Any], *, cancelled: bool
    ) -> int:
        """Record an annotation; returns the project's count of annotations since the last training."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(instance, project_id, "
                "annotation_id) DO UPDATE SET task_id=excluded.task_id, data=excluded.data, result=excluded.result, "
                "cancelled=excluded.cancelled, updated_at=excluded.updated_at",
                (self.instance, project_id, annotation_id, task_id, json.dumps(data), json.dumps(result),
                 int(cancelled), time.time()),
            )
            db.execute(
                "INSERT INTO projects(instance, project_id, new_annotations) VALUES (?, ?, 1) "
                "ON CONFLICT(instance, project_id) DO UPDATE SET new_annotations=new_annotations+1",
                (self.instance, project_id),
            )
            return int(db.execute("SELECT new_annotations FROM projects WHERE instance=? AND project_id=?",
                                  (self.instance, project_id)).fetchone()[0])

    def delete_annotations(self, project_id: int, annotation_ids: list[int]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM annotations WHERE instance=? AND project_id=? AND annotation_id=?",
                           [(self.instance, project_id, i) for i in annotation_ids])

    def latest_annotations(self, project_id: int) -> list[AnnotationRecord]:
        """The newest non-cancelled annotation of each task in the project."""
        rows = self._query(
            "SELECT annotation_id, task_id, data, result FROM annotations WHERE instance=? AND project_id=? AND "
            "cancelled=0 ORDER BY task_id, updated_at DESC, annotation_id DESC",
            (self.instance, project_id),
        )
        latest: dict[int, AnnotationRecord] = {}
        for annotation_id, task_id, data, result in rows:
            latest.setdefault(task_id, AnnotationRecord(annotation_id, task_id, json.loads(data), json.loads(result)))
        return list(latest.values())

    def replace_annotations(self, project_id: int, records: list[tuple[int, int, dict[str, Any], list[Any], bool]]) -> None:
        """Make the project's annotations exactly ``records`` (what Label Studio holds now)."""
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM annotations WHERE instance=? AND project_id=?", (self.instance, project_id))
            db.executemany(
                "INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(self.instance, project_id, a, t, json.dumps(d), json.dumps(r), int(c), now)
                 for t, a, d, r, c in records],
            )

    # -- model versions ---------------------------------------------------------------------------

    def add_version(self, project_id: int, number: int, model_version: str, path: Path, n_annotations: int) -> None:
        """Record a saved version and make it the one serving."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO versions(instance, project_id, number, model_version, path, n_annotations, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.instance, project_id, number, model_version, self._relative(path), n_annotations, time.time()),
            )
            db.execute(
                "INSERT INTO projects(instance, project_id, model_version) VALUES (?, ?, ?) "
                "ON CONFLICT(instance, project_id) DO UPDATE SET model_version=excluded.model_version",
                (self.instance, project_id, model_version),
            )

    def set_current(self, project_id: int, model_version: str) -> None:
        self._set_project(project_id, model_version=model_version)

    def current_name(self, project_id: int) -> str | None:
        """The ``model_version`` recorded as serving the project (None: zero-shot)."""
        return self._project_field(project_id, "model_version")

    def serving_everywhere(self) -> set[tuple[int, str]]:
        """``(project_id, model_version)`` serving now, for every instance sharing this home."""
        return {(r[0], r[1]) for r in self._query("SELECT project_id, model_version FROM projects WHERE "
                                                  "model_version IS NOT NULL")}

    def mark_broken(self, project_id: int, model_version: str, reason: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE versions SET broken=? WHERE instance=? AND project_id=? AND model_version=?",
                       (reason, self.instance, project_id, model_version))

    def mark_pruned(self, project_id: int, numbers: list[int]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE versions SET pruned=1 WHERE instance=? AND project_id=? AND number=?",
                           [(self.instance, project_id, n) for n in numbers])

    def versions(self, project_id: int | None = None) -> list[VersionRecord]:
        """Recorded versions that were not pruned, oldest first (of one project, or all of this instance)."""
        sql = ("SELECT project_id, number, model_version, path, n_annotations, created_at, broken FROM versions "
               "WHERE instance=?")
        args: tuple[Any, ...] = (self.instance,)
        if project_id is not None:
            sql += " AND project_id=?"
            args += (project_id,)
        sql += " AND pruned=0"
        rows = self._query(sql + " ORDER BY project_id, number", args)
        return [VersionRecord(r[0], r[1], r[2], self._resolve(r[3], r[0], r[2]), r[4], r[5], r[6]) for r in rows]

    def _relative(self, path: Path) -> str:
        """A model folder as stored: relative to the home, so a copied or restored home reads (and prunes) its
        own folders, never the original's."""
        try:
            return str(Path(path).resolve().relative_to(self.home.resolve()))
        except ValueError:  # a folder outside the home (a promoted run elsewhere) stays where it is
            return str(path)

    def _resolve(self, stored: str, project_id: int, model_version: str) -> Path:
        path = Path(stored)
        if not path.is_absolute():
            return self.home / path
        # Written absolute by an earlier version: inside this home when the folder is there (a copied home).
        here = self.models_dir / str(project_id) / model_version
        if path.parts[-3:] == here.parts[-3:] and here.exists() and path.resolve() != here.resolve():
            return here
        return path

    def max_version_number(self, project_id: int) -> int:
        return int(self._query("SELECT COALESCE(MAX(number), 0) FROM versions WHERE instance=? AND project_id=?",
                               (self.instance, project_id))[0][0])

    # -- embedding cache --------------------------------------------------------------------------

    def cached_vectors(self, keys: list[str]) -> dict[str, NDArray[Any]]:
        found: dict[str, NDArray[Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._query(f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", tuple(chunk)):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def cache_vectors(self, vectors: dict[str, NDArray[Any]]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in vectors.items()],
            )
