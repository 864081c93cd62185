"""The processes this package starts in the background (fine-tunes, pool re-scoring): whether one still runs,
stopping them by the PIDs they were started with, and stopping a command's own children when it is stopped."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)
_IMPORTED = time.time()


def start_ticks(pid: int) -> str:
    """When the process ``pid`` started, in clock ticks after boot ("" where ``/proc`` does not say): with the boot
    it tells one process from a later one that was given the same PID."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[19]  # field 22, starttime
    except (OSError, IndexError):
        return ""


def started_at() -> float:
    """When this process started (from ``/proc`` on Linux, to within a second, never later; elsewhere when this
    module was imported, early in a ``labelloop`` command)."""
    try:
        ticks = int(start_ticks(os.getpid()))
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


def alive(pid: int) -> bool:
    """Whether the process ``pid`` runs (another user's counts; a zombie, ended but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child of ours that ended but was not reaped yet is a zombie: not running
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def stop_groups(pids: dict[str, int], *, timeout: float, grace: float = 5.0) -> None:
    """Give the processes ``pids`` (what each is -> its PID; each leads a session of its own) ``timeout`` seconds
    to end, then send each one's process group SIGTERM, then, ``grace`` seconds later, SIGKILL."""
    live = dict(pids)
    deadline = time.monotonic() + timeout
    for sig in (signal.SIGTERM, signal.SIGKILL):
        while live and time.monotonic() < deadline:
            live = {name: pid for name, pid in live.items() if alive(pid)}
            time.sleep(0.2)
        for name, pid in live.items():
            log.info("stopping %s (PID %d) with %s", name, pid, sig.name)
            try:
                os.killpg(pid, sig)  # its own session: the group is the process and its workers
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace


def stop_like_ctrl_c() -> None:
    """Make SIGTERM (kill, timeout, systemd, docker stop) stop this process as Ctrl-C does: ``finally`` blocks
    run, so a child started with :func:`subprocess.run` is killed with it and temporary folders are removed."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
