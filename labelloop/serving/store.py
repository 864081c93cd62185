"""Durable state of the backend, in one SQLite file under ``$LABELLOOP_HOME``.

Annotations from webhooks are written here before the webhook is acknowledged, the training queue
lives here so it survives a restart, and every trained ``model_version`` is recorded with its folder.
Everything is keyed by Label Studio instance and project: one home can serve several Label Studio
servers, and an annotation id that another project (or another server) also uses never touches its row.
One connection is shared by the threads of a process behind a lock; any number of processes may share
the file (SQLite's WAL keeps reads cheap, and a job is leased to one process at a time).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelloop.errors import StorageFullError

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    label_config TEXT,
    model_version TEXT,
    new_annotations INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at REAL,
    publish_version TEXT,
    publish_error TEXT,
    publish_after REAL,
    PRIMARY KEY (instance, project_id)
);
CREATE TABLE IF NOT EXISTS annotations (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    annotation_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    data TEXT NOT NULL,
    result TEXT NOT NULL,
    cancelled INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    PRIMARY KEY (instance, project_id, annotation_id)
);
CREATE INDEX IF NOT EXISTS annotations_task ON annotations(instance, project_id, task_id);
CREATE TABLE IF NOT EXISTS jobs (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    requested_at REAL NOT NULL,
    started_at REAL,
    holder TEXT,
    PRIMARY KEY (instance, project_id)
);
CREATE TABLE IF NOT EXISTS versions (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    path TEXT NOT NULL,
    n_annotations INTEGER NOT NULL,
    created_at REAL NOT NULL,
    broken TEXT,
    pruned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance, project_id, number)
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
    broken: str | None = None


@dataclass(frozen=True)
class Job:
    """A training the process holds: which project, why, and when it started."""

    project_id: int
    reason: str
    started_at: float


def this_holder() -> str:
    """Who holds a lease: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_alive(holder: str) -> bool:
    """False only when the holder is a process of this host that no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by its owner only; an existing folder is left as it is."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


class Store:
    """All durable state of one Label Studio ``instance``; safe to share between threads and processes."""

    def __init__(self, home: Path, *, instance: str = "") -> None:
        self.home = private_dir(Path(home))
        self.instance = instance
        self.models_dir = private_dir(self.home / "models")
        self.locks_dir = private_dir(self.home / "locks")
        self._lock = threading.RLock()
        db_path = self.home / "state.sqlite3"
        if not db_path.exists():  # WAL and shared-memory files inherit this mode
            os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=30)
        with self._errors():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        with self._tx() as db:
            old = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "annotations" in old and version < 2:  # 0.1 state: keyed by annotation id alone
                for table in ("projects", "annotations", "jobs", "versions"):
                    db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
            for statement in SCHEMA.split(";"):  # executescript would commit this transaction half-way
                if statement.strip():
                    db.execute(statement)
            if "annotations" in old and version < 2:
                db.execute("INSERT INTO projects(instance, project_id, label_config, model_version, new_annotations, "
                           "last_error, updated_at) SELECT '', project_id, label_config, model_version, "
                           "new_annotations, last_error, updated_at FROM old_projects")
                db.execute("INSERT OR IGNORE INTO annotations SELECT '', project_id, annotation_id, task_id, data, "
                           "result, cancelled, updated_at FROM old_annotations")
                db.execute("INSERT INTO jobs(instance, project_id, reason, requested_at) SELECT '', project_id, reason, "
                           "requested_at FROM old_jobs")
                db.execute("INSERT INTO versions(instance, project_id, number, model_version, path, n_annotations, "
                           "created_at) SELECT '', project_id, number, model_version, path, n_annotations, created_at "
                           "FROM old_versions")
                for table in ("projects", "annotations", "jobs", "versions"):
                    db.execute(f"DROP TABLE old_{table}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A full disk or database becomes :class:`StorageFullError`, which the backend answers with a 503."""
        try:
            yield
        except sqlite3.OperationalError as e:
            if "full" in str(e):
                raise StorageFullError(f"{self.home} is full ({e}): free disk space there; nothing was stored") from e
            raise
        except OSError as e:
            if e.errno == 28:  # ENOSPC
                raise StorageFullError(f"{self.home} is full: free disk space there; nothing was stored") from e
            raise

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock, self._errors():
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def project_lock(self, project_id: int) -> Iterator[None]:
        """An exclusive lock on the project's model folder, across the processes sharing this home."""
        safe = "".join(c if c.isalnum() else "_" for c in self.instance)[:64]
        path = self.locks_dir / f"{safe or 'default'}-{project_id}.lock"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

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

    def _project_field(self, project_id: int, column: str):
        rows = self._query(f"SELECT {column} FROM projects WHERE instance=? AND project_id=?",
                           (self.instance, project_id))
        return rows[0][0] if rows else None

    def _set_project(self, project_id: int, **values: object) -> None:
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        updates = ", ".join(f"{c}=excluded.{c}" for c in values)
        with self._tx() as db:
            db.execute(f"INSERT INTO projects(instance, project_id, {columns}) VALUES (?, ?, {marks}) "
                       f"ON CONFLICT(instance, project_id) DO UPDATE SET {updates}",
                       (self.instance, project_id, *values.values()))

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

    def publishes_due(self, now: float) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self._query(
            "SELECT project_id, publish_version FROM projects WHERE instance=? AND publish_version IS NOT NULL AND "
            "COALESCE(publish_after, 0) <= ?", (self.instance, now))]

    # -- annotations ------------------------------------------------------------------------------

    def upsert_annotation(
        self, project_id: int, task_id: int, annotation_id: int, data: dict, result: list, *, cancelled: bool
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
            return db.execute("SELECT new_annotations FROM projects WHERE instance=? AND project_id=?",
                              (self.instance, project_id)).fetchone()[0]

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

    def annotation_count(self, project_id: int) -> int:
        return self._query("SELECT COUNT(DISTINCT task_id) FROM annotations WHERE instance=? AND project_id=? AND "
                           "cancelled=0", (self.instance, project_id))[0][0]

    def replace_annotations(self, project_id: int, records: list[tuple[int, int, dict, list, bool]]) -> None:
        """Make the project's annotations exactly ``records`` (what Label Studio holds now)."""
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM annotations WHERE instance=? AND project_id=?", (self.instance, project_id))
            db.executemany(
                "INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(self.instance, project_id, a, t, json.dumps(d), json.dumps(r), int(c), now)
                 for t, a, d, r, c in records],
            )

    # -- training queue ---------------------------------------------------------------------------

    def request_training(self, project_id: int, reason: str) -> None:
        """Queue a training; a request while one is queued or running coalesces into one follow-up."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs(instance, project_id, reason, requested_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(instance, project_id) DO UPDATE SET reason=excluded.reason, "
                "requested_at=excluded.requested_at",
                (self.instance, project_id, reason, time.time()),
            )
            db.execute("UPDATE projects SET new_annotations=0 WHERE instance=? AND project_id=?",
                       (self.instance, project_id))

    def claim_job(self) -> Job | None:
        """Lease the oldest queued job that nobody holds to this process, or ``None``.

        A job being trained is held by its process until :meth:`finish_job`, so no two processes (or
        threads) ever train one project at once; a request that comes in meanwhile waits for it.
        """
        with self._tx() as db:
            row = db.execute(
                "SELECT project_id, reason FROM jobs WHERE instance=? AND holder IS NULL AND "
                "(started_at IS NULL OR started_at < requested_at) ORDER BY requested_at LIMIT 1", (self.instance,)
            ).fetchone()
            if row is None:
                return None
            started = time.time()
            db.execute("UPDATE jobs SET started_at=?, holder=? WHERE instance=? AND project_id=?",
                       (started, this_holder(), self.instance, row[0]))
            return Job(row[0], row[1], started)

    def finish_job(self, job: Job) -> None:
        """Release the job; drop it unless a new request came in after it started (then it runs again)."""
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE instance=? AND project_id=? AND requested_at <= ?",
                       (self.instance, job.project_id, job.started_at))
            db.execute("UPDATE jobs SET holder=NULL WHERE instance=? AND project_id=?",
                       (self.instance, job.project_id))

    def reclaim_dead_jobs(self) -> int:
        """Queue again the jobs whose holder process died (a kill, a crash); returns how many."""
        with self._tx() as db:
            held = db.execute("SELECT instance, project_id, holder FROM jobs WHERE holder IS NOT NULL").fetchall()
            dead = [(instance, pid) for instance, pid, holder in held if not holder_alive(holder)]
            db.executemany("UPDATE jobs SET holder=NULL, started_at=NULL WHERE instance=? AND project_id=?", dead)
            return len(dead)

    def running_jobs(self) -> list[tuple[int, str]]:
        """``(project_id, holder)`` of every job some process is training now."""
        return [(r[0], r[1]) for r in self._query("SELECT project_id, holder FROM jobs WHERE instance=? AND holder "
                                                  "IS NOT NULL", (self.instance,))]

    def projects_with_new_annotations(self) -> list[int]:
        return [r[0] for r in self._query("SELECT project_id FROM projects WHERE instance=? AND new_annotations > 0",
                                          (self.instance,))]

    def pending_jobs(self) -> int:
        return self._query("SELECT COUNT(*) FROM jobs WHERE instance=?", (self.instance,))[0][0]

    # -- model versions ---------------------------------------------------------------------------

    def add_version(self, project_id: int, number: int, model_version: str, path: Path, n_annotations: int) -> None:
        """Record a saved version and make it the one serving."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO versions(instance, project_id, number, model_version, path, n_annotations, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.instance, project_id, number, model_version, str(path), n_annotations, time.time()),
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

    def versions(self, project_id: int | None = None, *, include_pruned: bool = False) -> list[VersionRecord]:
        """Recorded versions, oldest first (of one project, or all of this instance)."""
        sql = ("SELECT project_id, number, model_version, path, n_annotations, created_at, broken FROM versions "
               "WHERE instance=?")
        args: tuple = (self.instance,)
        if project_id is not None:
            sql += " AND project_id=?"
            args += (project_id,)
        if not include_pruned:
            sql += " AND pruned=0"
        rows = self._query(sql + " ORDER BY project_id, number", args)
        return [VersionRecord(r[0], r[1], r[2], Path(r[3]), r[4], r[5], r[6]) for r in rows]

    def max_version_number(self, project_id: int) -> int:
        return self._query("SELECT COALESCE(MAX(number), 0) FROM versions WHERE instance=? AND project_id=?",
                           (self.instance, project_id))[0][0]

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
