"""The README's main job: `labelloop demo` brings up Label Studio, the demo project, the backend and the dashboard."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from labelloop.demo import DEMO_TEXTS, DEMO_TITLE, POOL_SIZE
from labelloop.studio import lsclient
from labelloop.studio.localstudio import LocalLabelStudio, free_port, wait_healthy
from labelloop.studio.lsclient import make_client


def test_demo_comes_up_predicting_and_is_rerunnable(tmp_path):
    ls_port, backend_port, dashboard_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "labelloop.cli", "demo", "--port", str(ls_port), "--backend-port", str(backend_port),
           "--dashboard-port", str(dashboard_port), "--no-wait"]
    env = {**os.environ, "LABELLOOP_HOME": str(tmp_path)}
    for _ in range(2):  # the second run reuses the database, credentials and project
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "LabelLoop demo is up" in result.stdout
        assert f"http://127.0.0.1:{ls_port}/projects/" in result.stdout
        assert f"Dashboard     http://127.0.0.1:{dashboard_port}" in result.stdout
    for url in (f"http://127.0.0.1:{ls_port}/health", f"http://127.0.0.1:{dashboard_port}/_stcore/health"):
        with pytest.raises(httpx.HTTPError):  # --no-wait stops what it started, the dashboard server included
            httpx.get(url, timeout=2)

    creds_path = tmp_path / "demo/credentials.json"
    assert creds_path.stat().st_mode & 0o777 == 0o600
    creds = json.loads(creds_path.read_text())
    backend_log = (tmp_path / "demo/backend.log").read_text()
    # The pool: the written reviews, then movie-review sentences fetched from a package (enough for the ladder).
    pool = json.loads((tmp_path / "demo/pool.json").read_text())
    assert pool[: len(DEMO_TEXTS)] == DEMO_TEXTS and len(pool) == POOL_SIZE == len(set(pool))
    assert f"pushed {len(pool)} predictions of labelloop-v0" in backend_log
    assert creds["password"] not in backend_log and creds["token"] not in backend_log
    assert creds["password"] in result.stdout  # printed for the person who started the demo
    dashboard_log = (tmp_path / "demo/dashboard.log").read_text()
    assert "LabelLoop dashboard on" in dashboard_log
    assert creds["password"] not in dashboard_log and creds["token"] not in dashboard_log

    # Stopped by SIGTERM (kill, timeout, systemd, docker stop), the demo stops every server it started.
    waiting = subprocess.Popen(cmd[:-1], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in waiting.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop" in line:
                break
        assert "LabelLoop demo is up" in "".join(lines), "".join(lines)
        # No secret on any command line (`ps` shows them to every local user); no error reports to the vendor.
        studio_pids = []
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            assert creds["password"] not in cmdline and creds["token"] not in cmdline, cmdline
            if str(tmp_path / "demo/label-studio") in cmdline:
                studio_pids.append(proc)
            if "labelloop.cli backend" in cmdline:  # the demo's ladder climbs within ~60 labels
                assert b"LABELLOOP_FINETUNE_AT=40" in (proc / "environ").read_bytes().split(b"\0")
        assert studio_pids
        environ = (studio_pids[0] / "environ").read_bytes().split(b"\0")
        assert b"SENTRY_DSN=" in environ and b"FRONTEND_SENTRY_DSN=" in environ
        # `labelloop demo --env` gives a CLI user the token and the login: the playground runs beside the demo.
        exports = subprocess.run([*cmd[:3], "demo", "--env"], env=env, capture_output=True, text=True, timeout=60)
        given = dict(line.removeprefix("export ").split("=", 1) for line in exports.stdout.splitlines())
        given = {k: shlex.split(v)[0] for k, v in given.items()}
        assert given["LABEL_STUDIO_API_KEY"] == creds["token"] and given["LABEL_STUDIO_URL"].endswith(f":{ls_port}")
        assert len(lsclient.list_projects(make_client(given["LABEL_STUDIO_URL"], given["LABEL_STUDIO_API_KEY"]))) >= 1
        playground_port = free_port()
        playground = subprocess.Popen([*cmd[:3], "playground", "--port", str(playground_port)],
                                      env={**os.environ, **given}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(f"http://127.0.0.1:{playground_port}/", timeout=120, process=playground)
            login = httpx.post(f"http://127.0.0.1:{playground_port}/login", timeout=10,
                               data={"username": creds["username"], "password": creds["password"]})
            assert login.status_code == 200, login.text
        finally:
            playground.terminate()
            playground.wait(timeout=30)
        busy = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)  # a second demo meanwhile
        assert busy.returncode != 0 and f"port {ls_port} for Label Studio is already in use" in busy.stderr
        waiting.terminate()
        waiting.wait(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    for port in (ls_port, backend_port, dashboard_port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))  # free again: nothing is left listening

    studio = LocalLabelStudio(tmp_path / "demo/label-studio", free_port(), creds["username"], creds["password"],
                              creds["token"]).start()
    try:
        ls = make_client(studio.url, creds["token"])
        projects = [p for p in lsclient.list_projects(ls) if p.title == DEMO_TITLE]
        assert len(projects) == 1
        project = ls.projects.get(id=projects[0].id)
        assert project.model_version == "labelloop-v0" and project.sampling == "Uncertainty sampling"
        tasks = list(ls.tasks.list(project=project.id, fields="all"))
        assert len(tasks) == len(pool)
        assert all(t.predictions_score is not None for t in tasks)
    finally:
        studio.stop()
