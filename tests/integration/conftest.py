"""A real Label Studio server (label-studio==1.23.2) and real backend processes, started by the suite."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from labelloop.localstudio import LocalLabelStudio, free_port, wait_healthy
from labelloop.lsclient import make_client

ARTIFACTS = Path(os.environ.get("LABELLOOP_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    studio = LocalLabelStudio(
        tmp_path_factory.mktemp("label-studio"), free_port(), "admin@example.com",
        secrets.token_urlsafe(12), secrets.token_hex(20),
    )
    studio.start(timeout=400)
    yield studio
    studio.stop()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = studio.data_dir / "label-studio.log"
    if log.exists():
        (ARTIFACTS / "label-studio.log").write_bytes(log.read_bytes()[-2_000_000:])


@pytest.fixture(scope="session")
def ls(label_studio):
    return make_client(label_studio.url, label_studio.token)


class BackendProcess:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "backend.log"
        home.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, "LABELLOOP_HOME": str(home), **env}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "labelloop.cli", "backend", "--port", str(self.port)],
                env=full_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        wait_healthy(self.url + "/health", timeout=120, process=self.process, log=self.log)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"backend-{self.port}.log").write_bytes(self.log.read_bytes())


@pytest.fixture
def start_backend(tmp_path):
    started: list[BackendProcess] = []

    def start(**env: str) -> BackendProcess:
        backend = BackendProcess(tmp_path / f"backend{len(started)}", env)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


def wait_for(condition, *, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def labelloop_cli(env: dict[str, str]):
    """``cli(*args)``: the ``labelloop`` command line in a subprocess with ``env``, its output captured."""
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labelloop.cli", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    return cli


def published_version(ls, backend_url: str, project_id: int) -> str | None:
    """The backend's newest trained version once its queue is empty and the project serves it, else None."""
    if "labelloop_training_queue 0" not in httpx.get(backend_url + "/metrics").text:
        return None
    newest = httpx.get(backend_url + "/versions").json()["versions"][-1]
    return newest if newest != "labelloop-v0" and ls.projects.get(id=project_id).model_version == newest else None
