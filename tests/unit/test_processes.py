"""Stopping what a command started: by PID, and when the command itself is stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from labelloop.processes import alive

COMMAND = textwrap.dedent("""
    import argparse, subprocess, sys
    from labelloop import cli

    def run(args):  # a command whose work is a child process, as a simulated fine-tune is
        print(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]).pid, flush=True)
        subprocess.run([sys.executable, "-c", "import time; time.sleep(120)"])

    def build_parser():
        parser = argparse.ArgumentParser()
        parser.set_defaults(func=run, log_level="info")
        return parser

    cli.build_parser = build_parser  # main() as every command runs it, with this one command
    cli.main([])
""")


def test_a_command_stopped_by_sigterm_stops_the_child_it_waits_for(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", COMMAND], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "LABELLOOP_HOME": str(tmp_path)})
    started = int(process.stdout.readline())  # a sibling it does not wait for, to find the waited-for child
    time.sleep(1.0)
    waited = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (started, process.pid)
              and _parent(int(p)) == process.pid]
    assert waited, "the command did not start its child"
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    os.kill(started, signal.SIGKILL)  # it holds the pipes open
    assert code == 130 and "interrupted" in process.stderr.read()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in waited) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in waited)


def _parent(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
