"""The training queue: one row per project, leased to one process (its host and PID) while it trains, so
no two processes or threads ever train one project at once; a dead holder's job is queued again."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from labelloop.serving.db import Database


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
