"""Where a pool's scoring jobs stand, readable without loading any model: each job's folder, its progress
(``score.json``), and the ``CANCEL`` file that stops it. The scoring itself is :mod:`labelloop.pool.scoring`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labelloop._optional import require
from labelloop.errors import ConfigError, LabelLoopError
from labelloop.pool.corpus import Pool
from labelloop.processes import alive as process_alive


@dataclass
class Progress:
    """Where a scoring job stands; written to ``score.json`` as it goes."""

    engine: str
    workers: int
    version: str
    total: int
    scored: int = 0
    resumed: int = 0  # texts an earlier run of the job had scored already
    shards_done: int = 0
    shards: int = 0
    state: str = "running"  # running, done, cancelled, failed
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    error: str = ""
    pid: int = field(default_factory=os.getpid)  # the process that runs the job (a killed one leaves "running")

    @property
    def rate(self) -> float:
        """Texts per second scored by this run (what an earlier run finished does not count)."""
        return (self.scored - self.resumed) / max(1e-9, self.updated - self.started)

    @property
    def eta(self) -> float | None:
        return (self.total - self.scored) / self.rate if self.rate > 0 else None

    def to_dict(self) -> dict:
        return {**asdict(self), "rate": self.rate, "eta_seconds": self.eta}


class Cancelled(LabelLoopError):
    """The job was asked to stop (a ``CANCEL`` file); what it finished is kept."""


class Job:
    """One scoring run of a pool under one model version: its folder, which shards are done, its progress."""

    def __init__(self, pool: Pool, version: str) -> None:
        self.pool = pool
        self.folder = pool.folder / "scores" / version
        self.version = version

    def output(self, shard: Path) -> Path:
        return self.folder / shard.name

    def remaining(self) -> list[Path]:
        return [s for s in self.pool.shards() if not self.output(s).exists()]

    def cancelled(self) -> bool:
        return (self.folder / "CANCEL").exists()

    def request_cancel(self) -> None:
        """Ask whatever runs this job to stop after its current batch (what it finished is kept)."""
        (self.folder / "CANCEL").touch()

    def clear_cancel(self) -> None:
        """A run that ended (cancelled or done) has answered any cancel asked of it."""
        (self.folder / "CANCEL").unlink(missing_ok=True)

    def clear_stale_cancel(self, since: float) -> None:
        """Forget a cancel asked before ``since`` (of a run killed before it saw it); one asked since then,
        while this run was starting, stands."""
        try:
            if (self.folder / "CANCEL").stat().st_mtime < since:
                self.clear_cancel()
        except FileNotFoundError:
            pass

    def write_progress(self, progress: Progress) -> None:
        progress.updated = time.time()
        tmp = self.folder / "score.json.partial"
        tmp.write_text(json.dumps(progress.to_dict()))
        os.replace(tmp, self.folder / "score.json")

    def finish(self, shard: Path, table) -> None:
        """Write a shard's results whole (a temporary file renamed into place)."""
        pq = require("pyarrow.parquet", "pool")
        tmp = self.output(shard).with_suffix(".partial")
        pq.write_table(table, tmp)
        os.replace(tmp, self.output(shard))


def status(pool: Pool, version: str | None = None) -> dict | None:
    """The progress of the newest scoring job (or of ``version``'s), as ``score.json`` has it."""
    root = pool.folder / "scores"
    candidates = [root / version] if version else sorted(root.glob("*"), key=lambda p: p.stat().st_mtime)
    for folder in reversed(candidates):
        path = folder / "score.json"
        if path.exists():
            return json.loads(path.read_text())
    return None


def alive(job: dict) -> bool:
    """Whether a job that :func:`status` says is running still has its process (on this machine)."""
    return job.get("state") == "running" and isinstance(job.get("pid"), int) and process_alive(job["pid"])


def describe(job: dict) -> str:
    """One line on where a scoring job (as :func:`status` gives it) stands."""
    state = job["state"]
    if state == "running" and "pid" in job and not alive(job):
        state = "stopped (its process ended; `labelloop pool score` resumes it)"
    eta = f", about {job['eta_seconds'] / 60:.0f} min left" if state == "running" and job["eta_seconds"] else ""
    return (f"scores of {job['version']}: {state}, {job['scored']:,} of {job['total']:,} texts "
            f"({job['rate']:,.0f} texts/s on {job['engine']} with {job['workers']} workers{eta})")


def cancel(pool: Pool) -> str | None:
    """Ask the project's running scoring job to stop after its current batch; the version it scores, or None when
    none runs."""
    job = status(pool)
    if job is None or job["state"] != "running":
        return None
    Job(pool, job["version"]).request_cancel()
    return job["version"]


def read_scores(pool: Pool, version: str, columns: tuple[str, ...] = ("id", "label", "confidence")):
    """Every scored text of ``version`` as one ``pyarrow.Table`` (the finished shards)."""
    pa = require("pyarrow", "pool")
    return pa.concat_tables(list(scores_by_shard(pool, version, columns)))


def scores_by_shard(pool: Pool, version: str, columns: tuple[str, ...] = ("id", "label", "confidence")):
    """The scores of ``version``, one ``pyarrow.Table`` per finished shard (memory: one shard at a time)."""
    pq = require("pyarrow.parquet", "pool")
    job = Job(pool, version)
    files = [job.output(s) for s in pool.shards() if job.output(s).exists()]
    if not files:
        raise ConfigError(f"project {pool.project}'s pool has no scores of {version}: run `labelloop pool score "
                          f"--project {pool.project}` first")
    for f in files:
        yield pq.read_table(f, columns=list(columns))
