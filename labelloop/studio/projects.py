"""Label Studio projects from scripts: create one, connect the backend, give it the least-confident-first view."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from labelloop.errors import ConfigError, LabelStudioError
from labelloop.studio import lsclient

log = logging.getLogger(__name__)


SSRF_HELP = (
    "Label Studio refuses ML backends on loopback and private addresses by default. Start Label Studio with "
    "USE_DEFAULT_BANNED_SUBNETS=false (or ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false), or give "
    "the backend an address Label Studio may reach (e.g. its docker-compose service name)."
)


def probe_backend(url: str, *, basic_auth: tuple[str, str] | None = None, timeout: float = 10.0) -> bool:
    """Check that ``url`` is a LabelLoop backend before Label Studio is told to use it.

    Raises :class:`ConfigError` when something else answers there (Label Studio, the dashboard, another
    server). Returns False when nothing answers from here: Label Studio may still reach it from its own
    network (docker), so it is left to Label Studio to say.
    """
    lsclient.check_url(url, "the backend URL (--backend / --connect)")
    try:
        response = httpx.get(url.rstrip("/") + "/health", auth=basic_auth, timeout=timeout)
    except httpx.HTTPError:
        log.warning("no answer from %s from this machine; asking Label Studio to connect to it anyway", url)
        return False
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code == 200 and isinstance(answer, dict) and answer.get("model_class") == "LabelLoop":
        return True
    what = "a web page" if response.text.lstrip()[:1] == "<" else f"HTTP {response.status_code}"
    raise ConfigError(f"{url} is not a LabelLoop backend (its /health answered {what}): pass the address "
                      "`labelloop backend` listens on (default http://127.0.0.1:9090), not Label Studio's or "
                      "the dashboard's")


def delete_project(client, project_id: int) -> None:
    """Remove a project (used to undo one this tool just created)."""
    lsclient.call(f"deleting project {project_id}", client.projects.delete, id=project_id, retry=lsclient.BEST_EFFORT)


def connect_backend(client, project_id: int, backend_url: str, *, title: str = "LabelLoop",
                    basic_auth: tuple[str, str] | None = None, interactive: bool = True):
    """Connect the ML backend at ``backend_url`` to a project; returns the SDK's ML backend object.

    With ``basic_auth`` the connection and the webhook Label Studio creates for it both carry the credentials.
    """
    check_backend_serves(client, project_id, backend_url, basic_auth=basic_auth)
    kwargs: dict[str, Any] = {"project": project_id, "url": backend_url.rstrip("/"), "title": title,
                              "is_interactive": interactive}
    if basic_auth:
        kwargs.update(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0], basic_auth_pass=basic_auth[1])
    try:
        backend = lsclient.call(f"connecting the ML backend {backend_url}", client.ml.create, **kwargs)
    except LabelStudioError as e:
        if "reserved network address" in str(e) or "banned" in str(e).lower():
            raise LabelStudioError(f"{e}\n{SSRF_HELP}") from e
        raise
    if basic_auth:
        lsclient.ensure_webhook_auth(client, project_id, lsclient.basic_auth_header(*basic_auth))
    return backend


def check_backend_serves(client, project_id: int, backend_url: str, *,
                         basic_auth: tuple[str, str] | None = None) -> None:
    """Ask the backend whether it can serve the project's labeling config before Label Studio does: Label Studio
    shows only a generic "doesn't look like a valid ML backend", while the backend says what to change. A
    backend this machine can't reach (an address only Label Studio's network knows) is left to Label Studio."""
    project = lsclient.call(f"reading project {project_id}", client.projects.get, id=project_id)
    config = getattr(project, "label_config", None)
    if not isinstance(config, str) or not config.strip():
        return
    try:
        response = httpx.post(backend_url.rstrip("/") + "/setup", json={"project": str(project_id), "schema": config},
                              auth=basic_auth, timeout=60)
    except httpx.HTTPError:
        return
    try:
        error = response.json().get("error") if response.status_code >= 400 else None
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str):
        raise ConfigError(f"the backend at {backend_url} can't serve project {project_id}: {error}")


def create_project(client, title: str, label_config: str, tasks: Sequence[dict] = (), *,
                   uncertainty_sampling: bool = True, description: str = ""):
    """Create a project (optionally serving the least confident task first) and import ``tasks``."""
    kwargs: dict[str, Any] = {"title": title, "label_config": label_config, "description": description}
    if uncertainty_sampling:
        kwargs["sampling"] = "Uncertainty sampling"
    project = lsclient.call(f"creating project {title!r}", client.projects.create, **kwargs)
    if tasks:
        lsclient.call("importing tasks", client.projects.import_tasks, id=project.id, request=list(tasks))
    return project


QUEUE_VIEW_TITLE = "Least confident first"


def setup_uncertainty_queue(client, project_id: int, *, title: str = QUEUE_VIEW_TITLE):
    """Serve the least confident task next, and save a Data Manager tab listing unlabeled tasks that way.

    Sets the project's sampling to "Uncertainty sampling" (the labeling stream then takes the task with
    the lowest prediction score) and creates, once, a tab sorted by ascending prediction score.
    """
    lsclient.call("setting uncertainty sampling", client.projects.update, id=project_id,
                  sampling="Uncertainty sampling")
    for view in lsclient.call("listing Data Manager tabs", client.views.list, project=project_id):
        if (view.data or {}).get("title") == title:
            return view
    data = {
        "title": title,
        "ordering": ["tasks:predictions_score"],
        "filters": {"conjunction": "and", "items": [lsclient.UNLABELED]},
    }
    return lsclient.call("creating a Data Manager tab", client.views.create, project=project_id, data=data)
