"""Which Label Studio the backend calls for a project, and with which key.

The rules keep a key where it belongs:

- ``LABEL_STUDIO_URL`` set: every call goes there. A request's ``hostname`` is ignored; the key is
  ``LABEL_STUDIO_API_KEY``, or else the token the project's ``/setup`` sent.
- ``LABEL_STUDIO_URL`` not set: the ``hostname`` that ``/setup`` sent is used only together with the
  token that *same* request sent. ``LABEL_STUDIO_API_KEY`` is never sent to a host a request named.

Tokens stay in memory; they never reach the disk or a log line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from labelloop import lsclient
from labelloop.errors import ConfigError
from labelloop.settings import LabelLoopSettings


def check_hostname(hostname: object) -> str:
    """A Label Studio base URL from a request (``http(s)://host[:port][/path]``), or :class:`ConfigError`."""
    if not isinstance(hostname, str) or len(hostname) > 2048:
        raise ConfigError("'hostname' must be Label Studio's URL as a string, e.g. \"http://localhost:8080\"")
    parts = urlsplit(hostname)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ConfigError("'hostname' must be an http(s) URL without credentials, e.g. \"http://localhost:8080\"")
    return hostname.rstrip("/")


def check_token(token: object) -> str:
    """An API token from a request: printable ASCII, as HTTP headers need, or :class:`ConfigError`."""
    if not isinstance(token, str) or not token or len(token) > 4096 or not token.isascii() or not token.isprintable():
        raise ConfigError("'access_token' must be a Label Studio API token: printable ASCII text")
    return token


class Clients:
    """Builds the ``LabelStudio`` client for a project from the settings and what ``/setup`` sent."""

    def __init__(self, settings: LabelLoopSettings,
                 factory: Callable[..., Any] = lsclient.make_client) -> None:
        self.settings = settings
        self.factory = factory
        self._from_setup: dict[int, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def remember(self, project_id: int, hostname: str | None, token: str | None) -> None:
        """Keep what one ``/setup`` request sent; only a complete pair is kept."""
        if hostname and token:
            with self._lock:
                self._from_setup[project_id] = (check_hostname(hostname), check_token(token))

    def target(self, project_id: int) -> tuple[str, str] | None:
        """``(url, token)`` to call for the project, or None when no safe pair is known."""
        url = self.settings.label_studio_url
        key = self.settings.label_studio_api_key.get_secret_value() if self.settings.label_studio_api_key else None
        with self._lock:
            setup = self._from_setup.get(project_id)
        if url:
            token = key or (setup[1] if setup else None)
            return (url, token) if token else None
        return setup  # the request's own host with the request's own token, never the environment's key

    def client_for(self, project_id: int, *, timeout: float | None = None):
        """A client for the project (short timeouts for background calls), or None if none can be built."""
        target = self.target(project_id)
        if target is None:
            return None
        return self.factory(target[0], target[1], timeout=timeout or self.settings.label_studio_timeout)
