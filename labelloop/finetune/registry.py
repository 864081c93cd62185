"""Every fine-tuning run, on disk under ``$LABELLOOP_HOME/runs``.

Each run is a folder: ``config.json``, ``dataset.json`` (fingerprint of the data), ``metrics.jsonl``
(appended while training, for live curves), ``log.txt``, ``checkpoints/``, ``model/`` (the servable model,
written under a temporary name and renamed when complete), ``adapter/`` (LoRA weights) and ``eval.json``.
``index.sqlite3`` holds the status of each run: queued, running, succeeded, failed or cancelled.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from labelloop.errors import ConfigError, LabelLoopError
from labelloop.finetune.config import RunConfig
from labelloop.processes import alive

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    task: str
    status: str
    created_at: float
    finished_at: float | None
    error: str | None
    folder: Path
    summary: dict

    @property
    def model_dir(self) -> Path:
        return self.folder / "model"


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    return alive(pid)


def fingerprint(*paths: str) -> dict:
    """Size, line count and SHA-256 of each data file, to tell later what a run was trained on."""
    out = {}
    for p in paths:
        if p:
            data = Path(p).read_bytes()
            out[p] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "lines": data.count(b"\n")}
    return out


class RunRegistry:
    """The run folders and their index."""

    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "runs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "index.sqlite3", check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS runs (
                run_id TEXT PRIMARY KEY, task TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,
                finished_at REAL, error TEXT, summary TEXT NOT NULL DEFAULT '{}');
            CREATE TABLE IF NOT EXISTS promotions (
                project_id INTEGER NOT NULL, run_id TEXT NOT NULL, model_version TEXT NOT NULL,
                promoted_at REAL NOT NULL);
        """)

    def create(self, config: RunConfig, *, name: str | None = None) -> RunRecord:
        """Register a run under ``name`` (letters, digits, ``.``, ``_``, ``-``; a name, never a path)."""
        if name is not None and not RUN_NAME.fullmatch(name):
            raise ConfigError(f"run name {name!r} is not allowed: use up to 100 letters, digits, '.', '_' or '-', "
                              "starting with a letter or digit (a name, not a path)")
        run_id = name or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        folder = self.root / run_id
        if folder.exists():
            raise ConfigError(f"run {run_id!r} exists already")
        folder.mkdir(parents=True)
        config.save(folder / "config.json")
        (folder / "dataset.json").write_text(json.dumps(fingerprint(config.train_file, config.test_file), indent=2))
        with self._lock:
            self._db.execute("INSERT INTO runs(run_id, task, status, created_at) VALUES (?, ?, 'queued', ?)",
                             (run_id, config.task, time.time()))
        return self.get(run_id)

    def set_status(self, run_id: str, status: str, *, error: str | None = None, summary: dict | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(status)
        finished = time.time() if status in ("succeeded", "failed", "cancelled") else None
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status=?, error=?, finished_at=?, summary=COALESCE(?, summary) WHERE run_id=?",
                (status, error, finished, json.dumps(summary) if summary is not None else None, run_id))

    def get(self, run_id: str) -> RunRecord:
        """The run's record; a run whose process is gone (killed) while queued or running is marked failed first."""
        record = self._read(run_id)
        pid_file = record.folder / "pid"
        if ((record.status == "running" or (record.status == "queued" and pid_file.exists()))
                and not _alive(pid_file)):
            self.set_status(run_id, "failed", error="the training process died (killed?); start it again to "
                                                    "resume from its last checkpoint")
            record = self._read(run_id)
        return record

    def _read(self, run_id: str) -> RunRecord:
        with self._lock:
            row = self._db.execute("SELECT run_id, task, status, created_at, finished_at, error, summary FROM runs "
                                   "WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no run {run_id!r}; `labelloop runs` lists them")
        return RunRecord(row[0], row[1], row[2], row[3], row[4], row[5], self.root / row[0], json.loads(row[6]))

    def list(self) -> list[RunRecord]:
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT run_id FROM runs ORDER BY created_at")]
        return [self.get(i) for i in ids]

    def metrics(self, run_id: str) -> builtins.list[dict]:
        """What training logged so far (``metrics.jsonl``: step, epoch, loss, learning_rate, ...)."""
        path = self.root / run_id / "metrics.jsonl"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # the line being written right now
                continue
        return rows

    def log_tail(self, run_id: str, chars: int = 4000) -> str:
        """The end of the run's log (progress bars collapsed to their latest state)."""
        path = self.root / run_id / "log.txt"
        if not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - chars * 4))
            text = f.read().decode(errors="replace")
        lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
        return "\n".join(lines)[-chars:]

    def report(self, run_id: str) -> dict:
        """The run's evaluation report (``eval.json``), empty before it is evaluated."""
        path = self.root / run_id / "eval.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def config(self, run_id: str) -> RunConfig:
        return RunConfig.load(self.get(run_id).folder / "config.json")

    def project_of(self, run_id: str) -> int | None:
        """The Label Studio project a run's data came from (None: not recorded, or the config is unreadable)."""
        try:
            return self.config(run_id).project
        except (LabelLoopError, OSError, ValueError):
            return None

    def record_promotion(self, project_id: int, run_id: str, model_version: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO promotions VALUES (?, ?, ?, ?)", (project_id, run_id, model_version, time.time()))

    def promoted_run(self, serving: Collection[tuple[int, str]], *, project_id: int | None = None,
                     task: str | None = None) -> str | None:
        """The run that serves now (for a project, or for a task anywhere), or None.

        ``serving`` is what the backend serves, ``(project_id, model_version)`` pairs, from its version registry
        (the one owner of that): a promotion that was rolled back, or replaced by a retrained head, no longer
        counts. This table only keeps the history of promotions.
        """
        if not serving:
            return None
        sql = "SELECT p.run_id, p.project_id, p.model_version FROM promotions p JOIN runs r ON r.run_id=p.run_id WHERE 1=1"
        args: list = []
        if project_id is not None:
            sql, args = sql + " AND p.project_id=?", args + [project_id]
        if task is not None:
            sql, args = sql + " AND r.task=?", args + [task]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY p.promoted_at DESC", tuple(args)).fetchall()
        return next((run for run, project, version in rows if (project, version) in serving), None)
