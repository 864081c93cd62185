"""Label Studio projects from scripts: create, connect the backend, pre-annotate in bulk.

Every function takes a ``label_studio_sdk.LabelStudio`` client (see :func:`labelloop.lsclient.make_client`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx
from tqdm import tqdm

from labelloop import lsclient
from labelloop.errors import LabelStudioError

log = logging.getLogger(__name__)

SSRF_HELP = (
    "Label Studio refuses ML backends on loopback and private addresses by default. Start Label Studio with "
    "USE_DEFAULT_BANNED_SUBNETS=false (or ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false), or give "
    "the backend an address Label Studio may reach (e.g. its docker-compose service name)."
)


def connect_backend(client, project_id: int, backend_url: str, *, title: str = "LabelLoop",
                    basic_auth: tuple[str, str] | None = None, interactive: bool = True):
    """Connect the ML backend at ``backend_url`` to a project; returns the SDK's ML backend object.

    With ``basic_auth`` the connection and the webhook Label Studio creates for it both carry the credentials.
    """
    kwargs = {"project": project_id, "url": backend_url.rstrip("/"), "title": title, "is_interactive": interactive}
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


def preannotate(client, project_id: int, backend_url: str, *, label_config: str | None = None,
                batch_size: int = 64, basic_auth: tuple[str, str] | None = None, progress: bool = True) -> str | None:
    """Ask the backend for predictions on every task and store them with ``import_predictions``.

    Much faster than Label Studio's "Retrieve predictions" action, which saves predictions one by one.
    Sets the project's ``model_version`` to the predictions' version so scores and sorting use them.
    Returns that version (None when the project has no tasks).
    """
    if label_config is None:
        label_config = lsclient.call("reading the project", client.projects.get, id=project_id).label_config
    tasks = [{"id": t.id, "data": t.data} for t in lsclient.iter_tasks(client, project_id)]
    version = None
    with httpx.Client(base_url=backend_url.rstrip("/"), auth=basic_auth, timeout=600) as http:
        for i in tqdm(range(0, len(tasks), batch_size), desc="pre-annotating", unit="batch", disable=not progress):
            batch = tasks[i : i + batch_size]
            response = http.post("/predict", json={"tasks": batch, "project": str(project_id),
                                                   "label_config": label_config})
            if response.status_code != 200:
                raise LabelStudioError(f"The backend answered {response.status_code}: {response.text[:500]}")
            rows = []
            for task, pred in zip(batch, response.json()["results"]):
                if "error" in pred:
                    log.warning("task %s: %s", task["id"], pred["error"])
                    continue
                version = pred["model_version"]
                rows.append({"task": task["id"], "result": pred["result"], "score": pred["score"],
                             "model_version": version})
            lsclient.push_predictions(client, project_id, rows)
    if version:
        lsclient.set_model_version(client, project_id, version)
    return version


def create_project(client, title: str, label_config: str, tasks: Sequence[dict] = (), *,
                   uncertainty_sampling: bool = True, description: str = ""):
    """Create a project (optionally serving the least confident task first) and import ``tasks``."""
    kwargs = {"title": title, "label_config": label_config, "description": description}
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
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}]},
    }
    return lsclient.call("creating a Data Manager tab", client.views.create, project=project_id, data=data)
