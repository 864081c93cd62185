"""The SQLite file under ``$LABELLOOP_HOME`` that holds the backend's state: its schema, migrations,
transactions, the mapping of a full disk to :class:`~labelloop.errors.StorageFullError`, and a
cross-process lock per project. :class:`~labelloop.serving.store.Store` builds on it."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labelloop.audit import AUDIT_TABLES, AuditFrame
from labelloop.errors import StorageFullError

SCHEMA_VERSION = 5
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
    bound_host TEXT,
    published_version TEXT,
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
    heartbeat_at REAL,
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
CREATE TABLE IF NOT EXISTS decisions (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    decided_at REAL NOT NULL,
    action TEXT NOT NULL,
    champion TEXT,
    challenger TEXT,
    evidence TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_project ON decisions(instance, project_id, decided_at);
CREATE TABLE IF NOT EXISTS finetunes (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    labels INTEGER NOT NULL,
    started_at REAL NOT NULL,
    judged_on INTEGER NOT NULL DEFAULT 0,  -- unused since the disagreement gate (schema 4)
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance, project_id, run_id)
);
CREATE TABLE IF NOT EXISTS gates (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    champion TEXT NOT NULL,
    challenger TEXT NOT NULL,
    frame INTEGER NOT NULL,
    opened_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',
    promoted TEXT,
    promoted_at REAL,
    labels_seen INTEGER NOT NULL DEFAULT -1,
    round INTEGER NOT NULL DEFAULT 0,  -- the audit round whose frame it judges on (schema 5)
    PRIMARY KEY (instance, project_id, run_id)
);
CREATE TABLE IF NOT EXISTS gate_items (
    instance TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    champion INTEGER NOT NULL,
    challenger INTEGER NOT NULL,
    before_promotion INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance, project_id, run_id, task_id)
);
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY,
    vector BLOB NOT NULL
);
""" + AUDIT_TABLES


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by its owner only; an existing folder is left as it is."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


class Database:
    """One connection to the state file, shared by a process's threads behind a lock; keyed by ``instance``."""

    def __init__(self, home: Path, *, instance: str = "") -> None:
        self.home = private_dir(Path(home))
        self.instance = instance
        self.models_dir = private_dir(self.home / "models")
        self.locks_dir = private_dir(self.home / "locks")
        self._lock = threading.RLock()
        self._frames: dict[int, AuditFrame] = {}  # project -> its current audit frame (LadderState.audit_frame)
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
            if version >= 2:  # 0.2 state: no lease heartbeats, no Label Studio binding
                for table, column in (("jobs", "heartbeat_at REAL"), ("projects", "bound_host TEXT"),
                                      ("projects", "published_version TEXT"),
                                      ("gates", "round INTEGER NOT NULL DEFAULT 0")):
                    if column.split()[0] not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
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

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
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
