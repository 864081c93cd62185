"""Start and stop a Label Studio server on this machine, for the demo and the integration tests.

Label Studio runs in its own virtual environment (its pins clash with ours); :func:`find_label_studio`
looks for ``LABELLOOP_LABEL_STUDIO_BIN``, then ``.venv-ls/bin/label-studio`` in the project, then
``label-studio`` on the PATH. The server binds 127.0.0.1 and accepts ML backends on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from labelloop.errors import ConfigError, LabelStudioUnavailableError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# Label Studio's memory-efficient prediction import (a feature flag read from the environment).
PREDICTIONS_IMPORT_FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


def find_label_studio() -> str:
    """Path of the ``label-studio`` executable, or a :class:`ConfigError` saying how to install it."""
    from labelloop.settings import LabelLoopSettings

    candidates = [LabelLoopSettings().label_studio_bin, str(PROJECT_ROOT / ".venv-ls/bin/label-studio"),
                  shutil.which("label-studio")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(
        "Label Studio is not installed. Run `bash scripts/setup.sh` (it puts label-studio==1.23.2 in .venv-ls), "
        "or set LABELLOOP_LABEL_STUDIO_BIN to a label-studio executable."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, *, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200, or raise with the end of ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise LabelStudioUnavailableError(f"{url} did not come up within {timeout:.0f}s.\n{tail}")


@dataclass
class LocalLabelStudio:
    """A Label Studio server owned by this process, with a known admin user and legacy token."""

    data_dir: Path
    port: int = 8080
    username: str = "admin@example.com"
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 300.0) -> LocalLabelStudio:
        binary = find_label_studio()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            # Lets Label Studio call an ML backend and webhooks on 127.0.0.1 (refused by default).
            "USE_DEFAULT_BANNED_SUBNETS": "false",
            # No error reports to Label Studio's vendor (its default DSNs), from the server or the pages.
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            # Label Studio 1.23 recounts every task of the project on each prediction import unless this flag is
            # on: a retrain's publish then grows with the square of the project's size instead of linearly.
            PREDICTIONS_IMPORT_FLAG: "true",
            # The admin's credentials travel in the environment (readable by this user only), never on the
            # command line, which every local user can read with `ps`.
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
        }
        log_path = self.data_dir / "label-studio.log"
        cmd = [
            binary, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--enable-legacy-api-token",
        ]
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        wait_healthy(self.url + "/health", timeout=timeout, process=self.process, log=log_path)
        return self

    def stop(self) -> None:
        """Stop the server we started (its whole process group), and nothing else."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
