"""A real Label Studio server (label-studio==1.23.2) and real backend processes, started by the suite."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from labelloop.studio.localstudio import LocalLabelStudio, free_port, wait_healthy
from labelloop.studio.lsclient import make_client

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


def chromium() -> tuple[str, str] | None:
    """``(browser, driver)`` paths of Debian's chromium and chromium-driver, or None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def open_in_label_studio(studio, project_id: int, task_id: int, shot: str):
    """A headless Chromium logged in to ``studio`` with the task open in the labeling page (its predictions
    drawn), a screenshot saved as ``screenshots/<shot>.png``; the caller quits it. Skips without Chromium,
    unless LABELLOOP_REQUIRE_BROWSER=1 (as CI sets)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    found = chromium()
    if found is None:
        if os.environ.get("LABELLOOP_REQUIRE_BROWSER") == "1":
            pytest.fail("Debian chromium and chromium-driver are not installed")
        pytest.skip("Debian chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(studio.url + "/user/login/")
        wait.until(ec.presence_of_element_located((By.NAME, "email"))).send_keys(studio.username)
        driver.find_element(By.NAME, "password").send_keys(studio.password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        wait.until(lambda d: "/user/login" not in d.current_url)
        driver.get(f"{studio.url}/projects/{project_id}/data?task={task_id}")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[class*=htx-highlight]")))
        time.sleep(2)  # let the relation arrows finish drawing
        (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "screenshots" / f"{shot}.png"))
    except BaseException:
        driver.quit()
        raise
    return driver


def exported_rows(cli, project_id: int, folder: Path) -> list[dict]:
    """``labelloop export`` of a project (a content split) into ``folder``: the train and test rows together."""
    import json

    out = cli("export", "--project", str(project_id), "--out", str(folder), "--test-fraction", "0.2",
              "--split", "content")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for name in ("train.jsonl", "test.jsonl")
            for line in (folder / name).read_text().splitlines()]
