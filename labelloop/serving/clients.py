"""Which Label Studio the backend calls for a project, and with which key.

The rules keep a key where it belongs:

- ``LABEL_STUDIO_URL`` set: every call goes there. A request's ``hostname`` is ignored; the key is
  ``LABEL_STUDIO_API_KEY``, or else the token the project's ``/setup`` sent.
- ``LABEL_STUDIO_URL`` not set: the ``hostname`` that ``/setup`` sent is used only together with the
  token that *same* request sent. ``LABEL_STUDIO_API_KEY`` is never sent to a host a request named.
  A project is **bound** to the first Label Studio that sets it up (kept in the state database), and a
  ``/setup`` naming another host is refused, unless the operator lists that host in
  ``LABELLOOP_LABEL_STUDIO_HOSTS`` (then the project may only ever be bound to a listed host). A new token for
  the bound host replaces the one in memory only once the bound host accepts it, so a stranger's request can
  neither move a project nor break its calls.

Tokens stay in memory; they never reach the disk or a log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from labelloop.errors import ConfigError, LabelLoopError
from labelloop.settings import LabelLoopSettings
from labelloop.studio import lsclient

log = logging.getLogger(__name__)


class Bindings(Protocol):
    """Where a project's Label Studio binding is kept (the state database)."""

    def bound_host(self, project_id: int) -> str | None: ...

    def bind_host(self, project_id: int, host: str) -> None: ...


def token_works(client: Any, project_id: int) -> bool:
    """Whether Label Studio accepts the client's token for the project (one short call, no retry)."""
    try:
        lsclient.call(f"reading project {project_id}", client.projects.get, id=project_id, retry=None)
    except LabelLoopError:
        return False
    return True


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
    if not token.strip():
        raise ConfigError("'access_token' is blank: send the project owner's Label Studio API token")
    return token


class Clients:
    """Builds the ``LabelStudio`` client for a project from the settings and what ``/setup`` sent."""

    def __init__(self, settings: LabelLoopSettings, factory: Callable[..., Any] = lsclient.make_client, *,
                 bindings: Bindings | None = None, verify: Callable[[Any, int], bool] = token_works) -> None:
        self.settings = settings
        self.factory = factory
        self.bindings = bindings
        self.verify = verify
        self._from_setup: dict[int, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def remember(self, project_id: int, hostname: str | None, token: str | None) -> None:
        """Keep what one ``/setup`` request sent; only a complete pair is kept.

        Raises :class:`~labelloop.errors.ConfigError` when the request names a host the project may not be
        bound to (another host than its binding, or one the operator did not list)."""
        if not (hostname and token):
            return
        host, token = check_hostname(hostname), check_token(token)
        if not self.settings.label_studio_url:
            self._bind(project_id, host)
        with self._lock:
            known = self._from_setup.get(project_id)
        if known is not None and known[0] == host and known[1] != token:
            # Only the bound host can vouch for a new token: a stranger's guess must not break the project's calls.
            if not self.verify(self.factory(host, token, timeout=self.settings.label_studio_timeout), project_id):
                log.warning("project %s: a /setup sent a token that %s does not accept; keeping the one that works",
                            project_id, host)
                return
        with self._lock:
            self._from_setup[project_id] = (host, token)

    def _bind(self, project_id: int, host: str) -> None:
        allowed = {check_hostname(h) for h in self.settings.label_studio_hosts}
        if allowed and host not in allowed:
            raise ConfigError(f"project {project_id}: {host} is not a Label Studio this backend serves; the operator "
                              "lists those in LABELLOOP_LABEL_STUDIO_HOSTS (or sets LABEL_STUDIO_URL)")
        if self.bindings is None:
            return
        bound = self.bindings.bound_host(project_id)
        if bound is None or (bound != host and host in allowed):
            self.bindings.bind_host(project_id, host)
        elif bound != host:
            raise ConfigError(f"project {project_id} is served for the Label Studio at {bound}; a /setup naming {host} "
                              "was refused. To move the project, list the new address in LABELLOOP_LABEL_STUDIO_HOSTS "
                              "or set LABEL_STUDIO_URL for the backend")

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

    def client_for(self, project_id: int, *, timeout: float | None = None) -> Any:
        """A client for the project (short timeouts for background calls), or None if none can be built."""
        target = self.target(project_id)
        if target is None:
            return None
        return self.factory(target[0], target[1], timeout=timeout or self.settings.label_studio_timeout)
