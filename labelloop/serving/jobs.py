"""The training queue: one row per project, leased to one process while it trains, so no two processes or
threads ever train one project at once; a dead holder's job is queued again.

A lease names its holder by host, PID, boot and process start time (so a restarted container whose process is
PID 1 again, on the same host name, is not mistaken for the holder that died), and the holder renews it with a
heartbeat. A lease whose heartbeat is older than :data:`LEASE_SECONDS` has expired: any process takes the job
over, whatever host the holder was on.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass

from labelloop.processes import alive, start_ticks
from labelloop.serving.db import Database


@dataclass(frozen=True)
class Job:
    """A training the process holds: which project, why, and when it started."""

    project_id: int
    reason: str
    started_at: float


LEASE_SECONDS = 120.0  # a training lease without a heartbeat for this long has expired
HEARTBEAT_SECONDS = 20.0


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        return open("/proc/sys/kernel/random/boot_id").read().strip()[:36]
    except OSError:
        return ""


def this_holder() -> str:
    """Who holds a lease: ``host:pid:boot:start``."""
    return f"{socket.gethostname()}:{os.getpid()}:{_boot_id()}:{start_ticks(os.getpid())}"


def holder_alive(holder: str) -> bool:
    """False when the holder is known dead: a process of this host and boot that no longer exists (or whose PID
    now belongs to another process), or one of this host before its last boot. Other hosts' holders count as
    alive here; their leases expire without a heartbeat instead."""
    parts = holder.split(":")
    host, pid = parts[0], parts[1] if len(parts) > 1 else ""
    boot, start = (parts[2], parts[3]) if len(parts) >= 4 else ("", "")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    if boot and boot != _boot_id():
        return False
    return alive(int(pid)) and (not start or start == start_ticks(int(pid)))


class JobQueue(Database):
    """The queue's operations on the state database; :class:`~labelloop.serving.store.Store` extends it."""

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
        threads) ever train one project at once; a request that comes in meanwhile waits for it. A job whose
        lease expired (no heartbeat for :data:`LEASE_SECONDS`: its holder died, on any host) is taken over.
        """
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT project_id, reason FROM jobs WHERE instance=? AND ((holder IS NULL AND "
                "(started_at IS NULL OR started_at < requested_at)) OR (holder IS NOT NULL AND "
                "COALESCE(heartbeat_at, started_at, 0) < ?)) ORDER BY requested_at LIMIT 1",
                (self.instance, now - LEASE_SECONDS)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET started_at=?, heartbeat_at=?, holder=? WHERE instance=? AND project_id=?",
                       (now, now, this_holder(), self.instance, row[0]))
            return Job(row[0], row[1], now)

    def heartbeat(self) -> int:
        """Renew the leases this process holds; returns how many."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET heartbeat_at=? WHERE holder=?", (time.time(), this_holder())).rowcount

    def finish_job(self, job: Job) -> None:
        """Release the job; drop it unless a new request came in after it started (then it runs again). A job
        another process took over after this one's lease expired is left to it."""
        with self._tx() as db:
            held = db.execute("SELECT holder FROM jobs WHERE instance=? AND project_id=?",
                              (self.instance, job.project_id)).fetchone()
            if held is not None and held[0] not in (None, this_holder()):
                return
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
        """``(project_id, holder)`` of every job some process is training now (its lease not expired)."""
        return [(r[0], r[1]) for r in self._query(
            "SELECT project_id, holder FROM jobs WHERE instance=? AND holder IS NOT NULL AND "
            "COALESCE(heartbeat_at, started_at, 0) >= ?", (self.instance, time.time() - LEASE_SECONDS))]

    def projects_with_new_annotations(self) -> list[int]:
        return [r[0] for r in self._query("SELECT project_id FROM projects WHERE instance=? AND new_annotations > 0",
                                          (self.instance,))]

    def pending_jobs(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM jobs WHERE instance=?", (self.instance,))[0][0])
