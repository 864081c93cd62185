"""Re-scoring a project's pool in the background once a new model version serves it.

Publishing a version re-predicts only what Label Studio holds (the working set); the rest of the pool is
re-scored here, by ``labelloop pool score`` in a process of its own (at a lowered CPU priority, so requests and
webhook acknowledgements keep the cores), on the engine the settings name. The next ``pool refill`` then picks
by the new scores. A newer version cancels a re-scoring still under way for an older one (it stops after its
current batch; what it finished is kept). Whatever this starts, :meth:`Rescorer.stop` stops, by the PID it
started, when the backend shuts down; a job stopped so resumes where it stopped on the next publish.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from labelloop.pool.corpus import Pool
from labelloop.pool.jobs import Job, alive, status
from labelloop.processes import stop_groups

log = logging.getLogger(__name__)


class Rescorer:
    """Starts and stops the background re-scoring of projects' pools under ``home``."""

    def __init__(self, home: Path, *, engine: str = "local", niceness: int = 10) -> None:
        self.home = Path(home)
        self.engine = engine
        self.niceness = niceness
        self._children: dict[int, tuple[str, subprocess.Popen]] = {}  # project -> (version, its process)
        self._cancelled: list[subprocess.Popen] = []

    def start(self, project_id: int, version: str) -> bool:
        """Re-score the project's pool under ``version`` unless it has no pool, or the version's scores are done
        or under way; True when a job was started."""
        pool = Pool(self.home, project_id)
        if not pool.exists():
            return False
        mine = self._children.get(project_id)
        if mine and mine[1].poll() is None:
            if mine[0] == version:
                return False
            Job(pool, mine[0]).request_cancel()  # superseded: it stops after its current batch
            self._cancelled.append(mine[1])
        job = status(pool, version)
        if job and (job["state"] == "done" or alive(job)):  # finished, or run by another process (a lead's own)
            return False
        folder = Job(pool, version).folder
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "labelloop.cli", "pool", "score", "--project", str(project_id), "--version",
               version, "--engine", self.engine]
        fd = os.open(folder / "rescore.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True,
                                       env={**os.environ, "LABELLOOP_HOME": str(self.home), "TQDM_MININTERVAL": "5"})
        if self.niceness:
            try:
                os.setpriority(os.PRIO_PROCESS, process.pid, self.niceness)
            except OSError:
                pass
        threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends, never a zombie
        self._children[project_id] = (version, process)
        log.info("project %s: re-scoring its pool under %s in the background (PID %d, %s engine)", project_id,
                 version, process.pid, self.engine)
        return True

    def running(self) -> dict[int, str]:
        """The projects whose re-scoring this process started and that still run, with the version each scores."""
        return {pid: version for pid, (version, p) in self._children.items() if p.poll() is None}

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every re-scoring this process started: asked to cancel (its finished shards are kept), then
        terminated, then killed, each by its own process group."""
        for project_id, (version, p) in self._children.items():
            if p.poll() is None:
                Job(Pool(self.home, project_id), version).request_cancel()
        named = {f"project {project_id}'s pool re-scoring": p for project_id, (_, p) in self._children.items()}
        named |= {f"a superseded pool re-scoring ({k})": p for k, p in enumerate(self._cancelled)}
        stop_groups({name: p.pid for name, p in named.items()}, timeout=timeout)
        live = list(named.values())
        for p in live:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._children.clear()
        self._cancelled.clear()
