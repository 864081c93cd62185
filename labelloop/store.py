"""Durable state of the backend, in one SQLite file under ``$LABELLOOP_HOME``.

Annotations from webhooks are written here before the webhook is acknowledged, the training queue
lives here so it survives a restart, and every trained ``model_version`` is recorded with its folder.
One connection is shared by the server's threads behind a lock; SQLite's WAL keeps reads cheap.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY,
    label_config TEXT,
    model_version TEXT,
    new_annotations INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS annotations (
    annotation_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    data TEXT NOT NULL,
    result TEXT NOT NULL,
    cancelled INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_project ON annotations(project_id, task_id);
CREATE TABLE IF NOT EXISTS jobs (
    project_id INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    requested_at REAL NOT NULL,
    started_at REAL
);
CREATE TABLE IF NOT EXISTS versions (
    project_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    path TEXT NOT NULL,
    n_annotations INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (project_id, number)
);
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY,
    vector BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class AnnotationRecord:
    """The latest annotation of one task, as training reads it."""

    annotation_id: int
    task_id: int
    data: dict
    result: list


@dataclass(frozen=True)
class VersionRecord:
    project_id: int
    number: int
    model_version: str
    path: Path
    n_annotations: int
    created_at: float


class Store:
    """All durable state; safe to share between threads."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.models_dir = self.home / "models"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.home / "state.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- projects ---------------------------------------------------------------------------------

    def save_label_config(self, project_id: int, label_config: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO projects(project_id, label_config, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(project_id) DO UPDATE SET label_config=excluded.label_config, updated_at=excluded.updated_at",
                (project_id, label_config, time.time()),
            )

    def projects(self) -> list[int]:
        """Ids of the projects whose labeling config the backend holds (it has been connected to them)."""
        return [r[0] for r in self._query("SELECT project_id FROM projects WHERE label_config IS NOT NULL "
                                          "ORDER BY project_id")]

    def label_config(self, project_id: int) -> str | None:
        rows = self._query("SELECT label_config FROM projects WHERE project_id=?", (project_id,))
        return rows[0][0] if rows else None

    def set_error(self, project_id: int, error: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO projects(project_id, last_error) VALUES (?, ?) "
                "ON CONFLICT(project_id) DO UPDATE SET last_error=excluded.last_error",
                (project_id, error),
            )

    def last_error(self, project_id: int) -> str | None:
        rows = self._query("SELECT last_error FROM projects WHERE project_id=?", (project_id,))
        return rows[0][0] if rows else None

    # -- annotations ------------------------------------------------------------------------------

    def upsert_annotation(
        self, project_id: int, task_id: int, annotation_id: int, data: dict, result: list, *, cancelled: bool
    ) -> int:
        """Record an annotation; returns the project's count of annotations since the last training."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(annotation_id) DO UPDATE SET "
                "data=excluded.data, result=excluded.result, cancelled=excluded.cancelled, updated_at=excluded.updated_at",
                (annotation_id, project_id, task_id, json.dumps(data), json.dumps(result), int(cancelled), time.time()),
            )
            db.execute(
                "INSERT INTO projects(project_id, new_annotations) VALUES (?, 1) "
                "ON CONFLICT(project_id) DO UPDATE SET new_annotations=new_annotations+1",
                (project_id,),
            )
            return db.execute("SELECT new_annotations FROM projects WHERE project_id=?", (project_id,)).fetchone()[0]

    def delete_annotations(self, annotation_ids: list[int]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM annotations WHERE annotation_id=?", [(i,) for i in annotation_ids])

    def latest_annotations(self, project_id: int) -> list[AnnotationRecord]:
        """The newest non-cancelled annotation of each task in the project."""
        rows = self._query(
            "SELECT annotation_id, task_id, data, result FROM annotations WHERE project_id=? AND cancelled=0 "
            "ORDER BY task_id, updated_at DESC, annotation_id DESC",
            (project_id,),
        )
        latest: dict[int, AnnotationRecord] = {}
        for annotation_id, task_id, data, result in rows:
            latest.setdefault(task_id, AnnotationRecord(annotation_id, task_id, json.loads(data), json.loads(result)))
        return list(latest.values())

    def replace_annotations(self, project_id: int, records: list[tuple[int, int, dict, list, bool]]) -> None:
        """Make the project's annotations exactly ``records`` (what Label Studio holds now)."""
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM annotations WHERE project_id=?", (project_id,))
            db.executemany(
                "INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(a, project_id, t, json.dumps(d), json.dumps(r), int(c), now) for t, a, d, r, c in records],
            )

    # -- training queue ---------------------------------------------------------------------------

    def request_training(self, project_id: int, reason: str) -> None:
        """Queue a training; a request while one is queued or running coalesces into one follow-up."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs(project_id, reason, requested_at) VALUES (?, ?, ?) "
                "ON CONFLICT(project_id) DO UPDATE SET reason=excluded.reason, requested_at=excluded.requested_at",
                (project_id, reason, time.time()),
            )
            db.execute("UPDATE projects SET new_annotations=0 WHERE project_id=?", (project_id,))

    def claim_job(self) -> tuple[int, str, float] | None:
        """Take the oldest queued job: ``(project_id, reason, started_at)``, or ``None``."""
        with self._tx() as db:
            row = db.execute(
                "SELECT project_id, reason FROM jobs WHERE started_at IS NULL OR started_at < requested_at "
                "ORDER BY requested_at LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            started = time.time()
            db.execute("UPDATE jobs SET started_at=? WHERE project_id=?", (started, row[0]))
            return row[0], row[1], started

    def finish_job(self, project_id: int, started_at: float) -> None:
        """Drop the job unless a new request came in after it started (then it runs again)."""
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE project_id=? AND requested_at <= ?", (project_id, started_at))

    def reset_running_jobs(self) -> None:
        """After a restart, jobs that were running when the process died are queued again."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET started_at=NULL")

    def projects_with_new_annotations(self) -> list[int]:
        return [r[0] for r in self._query("SELECT project_id FROM projects WHERE new_annotations > 0")]

    def pending_jobs(self) -> int:
        return self._query("SELECT COUNT(*) FROM jobs")[0][0]

    # -- model versions ---------------------------------------------------------------------------

    def add_version(self, project_id: int, number: int, model_version: str, path: Path, n_annotations: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?)",
                (project_id, number, model_version, str(path), n_annotations, time.time()),
            )
            db.execute(
                "INSERT INTO projects(project_id, model_version) VALUES (?, ?) "
                "ON CONFLICT(project_id) DO UPDATE SET model_version=excluded.model_version",
                (project_id, model_version),
            )

    def set_current(self, project_id: int, model_version: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE projects SET model_version=? WHERE project_id=?", (model_version, project_id))

    def current_version(self, project_id: int) -> VersionRecord | None:
        rows = self._query(
            "SELECT v.project_id, v.number, v.model_version, v.path, v.n_annotations, v.created_at FROM versions v "
            "JOIN projects p ON p.project_id=v.project_id AND p.model_version=v.model_version WHERE v.project_id=?",
            (project_id,),
        )
        return VersionRecord(*rows[0][:3], Path(rows[0][3]), *rows[0][4:]) if rows else None

    def versions(self, project_id: int | None = None) -> list[VersionRecord]:
        sql = "SELECT project_id, number, model_version, path, n_annotations, created_at FROM versions"
        rows = self._query(sql + (" WHERE project_id=?" if project_id is not None else "") + " ORDER BY project_id, number",
                           (project_id,) if project_id is not None else ())
        return [VersionRecord(r[0], r[1], r[2], Path(r[3]), r[4], r[5]) for r in rows]

    def next_version_number(self, project_id: int) -> int:
        return self._query("SELECT COALESCE(MAX(number), 0) + 1 FROM versions WHERE project_id=?", (project_id,))[0][0]

    # -- embedding cache --------------------------------------------------------------------------

    def cached_vectors(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._query(f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", tuple(chunk)):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def cache_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in vectors.items()],
            )
