"""Calls to Label Studio through label-studio-sdk, with errors that say what to do.

Functions take a ``LabelStudio`` client so callers (and tests) choose how it is built; use
:func:`make_client` for the usual one. SDK and HTTP failures become
:class:`~labelloop.errors.LabelStudioError` subclasses; tokens never appear in messages.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from labelloop.errors import ConfigError, LabelStudioAuthError, LabelStudioError, LabelStudioUnavailableError
from labelloop.retry import Retry, retry_after

T = TypeVar("T")
log = logging.getLogger(__name__)


DEFAULT_RETRY = Retry()
# For calls whose failure has a fallback (syncing annotations before a training): one quick retry only.
BEST_EFFORT = Retry(attempts=2)
# A refused connection (nothing listens there) rarely heals within a minute: a server still starting gets
# two seconds, then the caller hears of it.
REFUSED_RETRY = Retry(attempts=3, base=0.5)
RETRY_STATUSES = {429, 500, 502, 503, 504}

AUTH_HELP = (
    "Label Studio refused the API key (HTTP {status}). A legacy token works only when legacy tokens are "
    "enabled for the organization (Organization > API Tokens Settings); otherwise create a personal access "
    "token under Account & Settings and set LABEL_STUDIO_API_KEY to it."
)


def check_url(url: str, what: str = "LABEL_STUDIO_URL (or --url)") -> str:
    """``url`` without a trailing slash; :class:`ConfigError` naming the fix unless it is an http(s) URL."""
    parsed = urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        example = f"http://{url.strip()}" if "://" not in url else "http://127.0.0.1:8080"
        raise ConfigError(f"{what} must be an address starting with http:// or https://, e.g. {example} "
                          f"(got {url!r})")
    return url.strip().rstrip("/")


def make_client(url: str, api_key: str, *, timeout: float = 300.0):
    """A ``label_studio_sdk.LabelStudio`` client for ``url``; :func:`call` decides what is retried, so the
    SDK's own retries are off (they stacked on ours: a refused connection took a minute to report)."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=check_url(url), api_key=api_key, timeout=timeout, max_retries=0)


def call(what: str, fn: Callable[..., T], *args: Any, retry: Retry | None = DEFAULT_RETRY, **kwargs: Any) -> T:
    """Run one SDK call; map its failures to our errors, naming ``what`` was attempted.

    Connection errors, 5xx and 429 are retried with backoff under ``retry``; pass ``retry=None`` for a
    call that must not be repeated blindly (a write whose effect may have landed before the error).
    """
    waits = iter(retry.waits()) if retry else iter(())
    refused = iter(REFUSED_RETRY.waits()) if retry else iter(())
    while True:
        try:
            return _call_once(what, fn, *args, **kwargs)
        except LabelStudioError as e:
            status = getattr(e.__cause__, "status_code", None)
            transient = isinstance(e, LabelStudioUnavailableError) or status in RETRY_STATUSES
            if isinstance(e.__cause__, httpx.ConnectError):
                wait = next(refused, None)
            else:
                wait = next(waits, None) if transient else None
            if wait is None:
                raise
            asked = retry_after(getattr(e.__cause__, "headers", None) or {}) if status in (429, 503) else None
            wait = wait if asked is None else asked
            log.warning("%s failed (%s); retrying in %.1fs", what, type(e.__cause__).__name__, wait)
            time.sleep(wait)


def _call_once(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    from label_studio_sdk.core.api_error import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as e:
        if (e.status_code in (401, 403) and "reserved network address" not in str(e.body)
                and isinstance(e.body, dict) and "status_code" in e.body):  # Label Studio's own refusal
            raise LabelStudioAuthError(f"{what}: " + AUTH_HELP.format(status=e.status_code)) from e
        raise LabelStudioError(f"{what}: {describe_error(e.status_code or 0, e.body)}") from e
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
        raise ConfigError(f"{what}: {e}. LABEL_STUDIO_URL (or --url) must start with http:// or https://") from e
    except (httpx.TransportError, OSError) as e:
        raise LabelStudioUnavailableError(
            f"{what}: Label Studio did not answer{_at(e)} ({type(e).__name__}). Check that it is running and that "
            "LABEL_STUDIO_URL points at it."
        ) from e


def _at(error: Exception) -> str:
    """" at http://host:port", the address a failed request went to (never its path, query or credentials)."""
    try:
        url = error.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # an OSError, or an httpx error raised before a request existed
        return ""
    return f" at {url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def describe_error(status: int, body: Any) -> str:
    """An HTTP error from Label Studio in words: its ``detail`` and validation errors, not its raw JSON;
    an answer that is not Label Studio's (a web page, another server's JSON) says where to point instead."""
    if isinstance(body, dict) and "status_code" in body and "detail" in body:  # Label Studio's error body
        text = str(body["detail"])
        errors = body.get("validation_errors")
        if isinstance(errors, dict) and errors:
            text += ": " + "; ".join(f"{field}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                                     for field, v in errors.items())
        if status == 404:
            text += " (check the project or task id)"
        return f"Label Studio answered HTTP {status}: {_sentences(text)}"
    if status >= 500:
        return f"Label Studio answered HTTP {status}: {_short(_plain(body))}"
    return (f"the server answered HTTP {status} with {_plain(body, limit=80)}, which is not Label Studio's API: "
            "check that LABEL_STUDIO_URL (or --url) is Label Studio's address (e.g. http://127.0.0.1:8080), not "
            "the LabelLoop backend's or the dashboard's")


def _sentences(text: str, limit: int = 600) -> str:
    """``text`` without HTML tags, cut after its last whole sentence within ``limit`` characters."""
    text = " ".join(re.sub(r"<[^>]+>", "", text).split())
    if len(text) <= limit:
        return text
    end = text.rfind(". ", 0, limit)
    return text[: end + 1] if end > 0 else text[:limit] + "..."


def _plain(body: Any, limit: int = 300) -> str:
    if isinstance(body, str) and body.lstrip()[:1] == "<":
        return "a web page"
    return repr(_short(body, limit))


def _short(body: Any, limit: int = 300) -> str:
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def iter_tasks(client, project_id: int, *, fields: str = "task_only", page_size: int = 500,
               filters: list[dict] | None = None, include: str | None = None,
               retry: Retry | None = DEFAULT_RETRY) -> Iterator[Any]:
    """All tasks of a project (matching Data Manager ``filters``), in id order.

    ``include`` names the only task fields to fetch (e.g. ``"id,data"``): listing is ~3x faster.
    Pages are keyed on the last id seen rather than numbered, so tasks changing while we iterate
    (predictions or annotations landing) never shift a page; each page is retried on its own.
    """
    last_id = 0
    while True:
        items = [{"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": last_id},
                 *(filters or [])]
        query = json.dumps({"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]})
        page = call(f"listing tasks of project {project_id}",
                    lambda q=query: client.tasks.list(project=project_id, fields=fields, page=1, page_size=page_size,
                                                      query=q, include=include).items, retry=retry)
        yield from page
        if len(page) < page_size:
            return
        last_id = page[-1].id


def list_projects(client, *, page_size: int = 100, retry: Retry | None = DEFAULT_RETRY) -> list[Any]:
    """Every project, a page at a time, following Label Studio's ``next`` link. (The SDK's pager asks for
    the page after the last one, which Label Studio answers with a 404 and a traceback in its log.)"""
    projects: list[Any] = []
    page = 1
    while True:
        response = call("listing projects", lambda p=page: client.projects.list(page=p, page_size=page_size).response,
                        retry=retry)
        projects += response.results or []
        if not response.next or not response.results:
            return projects
        page += 1


# Data Manager filter: tasks nobody has annotated yet.
UNLABELED = {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}
# Data Manager filters on ``is_labeled`` (the task has the annotations the project's overlap asks for), through
# "Completed", the time of its newest annotation, which Label Studio leaves empty until then.
OPEN = {"filter": "filter:tasks:completed_at", "operator": "empty", "type": "Datetime", "value": True}
COMPLETED = {**OPEN, "value": False}


def any_task(client, project_id: int, filters: list[dict], *, retry: Retry | None = DEFAULT_RETRY) -> bool:
    """Whether a task of the project matches ``filters``: one page of one id, however large the project."""
    return next(iter_tasks(client, project_id, filters=filters, page_size=1, include="id", retry=retry), None) is not None


def count_tasks(client, project_id: int, filters: list[dict], *, retry: Retry | None = DEFAULT_RETRY) -> int:
    """How many tasks of the project match ``filters``, counted by Label Studio (one page of one id comes back)."""
    query = json.dumps({"filters": {"conjunction": "and", "items": filters}})
    data = _raw(client, f"counting tasks of project {project_id}", "api/tasks/", method="GET", retry=retry,
                params={"project": project_id, "page_size": 1, "page": 1, "include": "id", "query": query})
    if not isinstance(data, dict) or not isinstance(data.get("total"), int):
        raise LabelStudioError(f"Label Studio did not count the tasks of project {project_id} (no 'total' in its "
                               "answer); is it version 1.23 or later?")
    return int(data["total"])


def task_ids_with_version(client, project_id: int, model_version: str) -> set[int]:
    """Ids of the tasks that already hold a prediction of ``model_version``."""
    # Label Studio loops over the filter value and matches substrings: a bare string would match any version
    # sharing one character with it, and "v1" is inside "v10". So: a list, then an exact check.
    filters = [{"filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List",
                "value": [model_version]}]
    tasks = iter_tasks(client, project_id, filters=filters, page_size=1000, include="id,predictions_model_versions")
    return {t.id for t in tasks if model_version in _versions_of(t)}


def _versions_of(task) -> set[str]:
    raw = getattr(task, "predictions_model_versions", None)
    if raw is None and isinstance(getattr(task, "model_extra", None), dict):
        raw = task.model_extra.get("predictions_model_versions")
    if isinstance(raw, list):
        return {str(v).strip() for v in raw}
    return {v.strip().strip('"') for v in str(raw or "").split(",")}


def fetch_annotations(client, project_id: int, *, retry: Retry | None = DEFAULT_RETRY,
                      unlabeled: list[tuple[int, dict]] | None = None) -> list[tuple[int, int, dict, list, bool]]:
    """``(task_id, annotation_id, data, result, cancelled)`` for every annotation in the project.

    The same pass appends ``(task_id, data)`` of every task without an annotation to ``unlabeled``, when given.
    """
    rows = []
    for task in iter_tasks(client, project_id, fields="all", retry=retry):
        for ann in task.annotations or []:
            rows.append((task.id, int(ann["id"]), task.data, ann.get("result") or [], bool(ann.get("was_cancelled"))))
        if unlabeled is not None and not task.annotations and isinstance(task.data, dict):
            unlabeled.append((task.id, task.data))
    return rows


def push_predictions(client, project_id: int, predictions: list[dict], *, chunk: int = 1000) -> int:
    """Store predictions in bulk (``import_predictions``); returns how many were stored."""
    stored = 0
    for i in range(0, len(predictions), chunk):
        part = predictions[i : i + chunk]
        call(f"importing predictions into project {project_id}", client.projects.import_predictions,
             id=project_id, request=part, retry=None)
        stored += len(part)
    return stored


def set_model_version(client, project_id: int, model_version: str) -> None:
    """Point the project's prediction-score column and uncertainty sampling at ``model_version``."""
    call(f"setting model_version of project {project_id}", client.projects.update,
         id=project_id, model_version=model_version)


def _raw(client, what: str, path: str, *, method: str, json_body: Any = None, params: dict | None = None,
         retry: Retry | None = None) -> Any:
    """A call the SDK has no method for, through its own HTTP client (same auth, timeout and base URL); only
    reads may pass a ``retry``."""
    from label_studio_sdk.core.api_error import ApiError

    def send() -> Any:
        response = client._client_wrapper.httpx_client.request(path, method=method, json=json_body, params=params)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=body)
        return response.json() if response.content else None

    return call(what, send, retry=retry)


def prediction_versions(client, project_id: int) -> dict[str, int]:
    """``{model_version: number of predictions}`` stored in the project."""
    data = _raw(client, f"listing model versions of project {project_id}", f"api/projects/{project_id}/model-versions/",
                method="GET")
    return {str(k): int(v) for k, v in (data or {}).items()} if isinstance(data, dict) else {}


def delete_prediction_version(client, project_id: int, model_version: str) -> None:
    """Delete every prediction of ``model_version`` in the project (Label Studio does it in one query)."""
    _raw(client, f"deleting predictions of {model_version} in project {project_id}",
         f"api/projects/{project_id}/model-versions/", method="DELETE", json_body={"model_version": model_version})


def basic_auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ensure_webhook_auth(client, project_id: int, authorization: str) -> int:
    """Add our basic-auth header to the webhooks Label Studio made for this project's ML backends.

    Label Studio creates ``<backend>/webhook`` without the connection's credentials, so a backend that
    requires basic auth would otherwise never hear of annotations. Returns how many were updated.
    """
    backends = call("listing ML backends", client.ml.list, project=project_id)
    urls = {b.url.rstrip("/") + "/webhook" for b in backends}
    updated = 0
    for hook in call("listing webhooks", client.webhooks.list, project=str(project_id)):
        if hook.url in urls and (hook.headers or {}).get("Authorization") != authorization:
            headers = dict(hook.headers or {})
            headers["Authorization"] = authorization
            call("updating a webhook", client.webhooks.update, id=hook.id, url=hook.url, headers=headers)
            updated += 1
    return updated
