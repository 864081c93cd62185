"""The wire format of Label Studio's ML backend protocol, parsed once at the edge.

Every request body is hostile until checked here: its size (``Content-Length`` before reading, then the
bytes as they arrive), its type (``application/json`` only, so no web page can send one without a CORS
preflight), its nesting and every field's type and range. What passes becomes plain values or the core's
:class:`~labelloop.labeling.tasks.Event`; what fails is a :class:`RequestError` with a 4xx status and a
message that says what to send instead.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from labelloop.labeling.tasks import Annotation, Event, parse_project_id

MAX_ID = 2**63 - 1


class RequestError(Exception):
    """A request the backend refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BodyBudget:
    """Bytes of request bodies a process holds at once, across all requests: past ``limit`` a new chunk is refused
    (503), so slow or unfinished uploads can't pile up memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held -= n


BODY_IDLE_SECONDS = 15.0  # a body that sends nothing for this long is dropped (408)
BODY_TOTAL_SECONDS = 120.0  # nor may one take longer than this to arrive


async def read_json(request: Request, *, limit: int, budget: BodyBudget | None = None, idle: float | None = None,
                    total: float | None = None) -> dict[str, Any]:
    """The request body as a JSON object, read no further than ``limit`` bytes, within ``total`` seconds and no
    ``idle`` seconds without data, holding its bytes against the process's ``budget``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise RequestError(415, f"Send the body as JSON with Content-Type: application/json (got {kind or 'none'!r}).")
    declared = request.headers.get("content-length")
    if declared is not None and (not (declared.isascii() and declared.isdecimal()) or len(declared) > 20
                                 or int(declared) > limit):
        raise RequestError(413, f"Request body is {declared} bytes; the limit is {limit:,} (LABELLOOP_MAX_BODY_BYTES).")
    idle = BODY_IDLE_SECONDS if idle is None else idle
    total = BODY_TOTAL_SECONDS if total is None else total
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + total
    stream = request.stream().__aiter__()
    try:
        while True:
            wait = min(idle, deadline - time.monotonic())
            if wait <= 0:
                raise RequestError(408, f"Request body took over {total:.0f} s to arrive: send it in one go.")
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), timeout=wait)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise RequestError(408, f"Request body stalled (nothing for {idle:.0f} s): send it in one go.") from None
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"Request body is over the limit of {limit:,} bytes (LABELLOOP_MAX_BODY_BYTES).")
            if budget is not None and not budget.take(len(chunk)):
                raise RequestError(503, "The backend holds too many request bodies at once: try again shortly.")
            chunks.append(chunk)
        body = b"".join(chunks)
    finally:
        if budget is not None:
            budget.give(sum(len(c) for c in chunks))
        chunks = []
    if not body.strip():
        raise RequestError(400, "Empty request body: send a JSON object.")
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RequestError(400, f"Request body is not UTF-8 (bad byte at position {e.start}): send UTF-8 JSON.") from e
    except json.JSONDecodeError as e:
        raise RequestError(400, f"Request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}).") from e
    except RecursionError as e:
        raise RequestError(400, "Request body is nested too deeply to be a Label Studio request.") from e
    except ValueError as e:  # a number longer than Python converts (4,300 digits)
        raise RequestError(400, f"Request body holds a number too long to read ({str(e)[:80]}).") from e
    if not isinstance(payload, dict):
        raise RequestError(400, f"Request body must be a JSON object, not {type(payload).__name__}.")
    return payload


def _text(payload: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise RequestError(422, f"Request body lacks {key!r}.")
        return None
    if not isinstance(value, str):
        raise RequestError(422, f"{key!r} must be a string, not {type(value).__name__}.")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RequestError(422, f"{key!r} holds an unpaired surrogate: send valid Unicode text.") from e
    return value


def _id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise RequestError(422, f"{what} must be a whole number from 0 to {MAX_ID}, got {str(value)[:40]!r}.")
    return value


def _project(payload: dict[str, Any], *, required: bool) -> object:
    project = payload.get("project")
    if project is None:
        if required:
            raise RequestError(422, "Request body lacks 'project'.")
        return None
    if isinstance(project, dict):
        project = project.get("id")
    if not isinstance(project, (int, str)) or isinstance(project, bool) or parse_project_id(project) is None:
        raise RequestError(422, "'project' must be Label Studio's project id (\"<id>.<timestamp>\", a number, or "
                                "{\"id\": ...}).")
    return project


@dataclass(frozen=True)
class SetupRequest:
    project: object
    label_config: str
    hostname: str | None
    access_token: str | None


def setup_request(payload: dict[str, Any]) -> SetupRequest:
    return SetupRequest(_project(payload, required=False), _text(payload, "schema", required=True) or "",
                        _text(payload, "hostname"), _text(payload, "access_token"))


@dataclass(frozen=True)
class PredictRequest:
    tasks: list[Any]
    project: object
    label_config: str | None
    context: dict[str, Any] | None


def predict_request(payload: dict[str, Any], *, max_tasks: int) -> PredictRequest:
    tasks = payload.get("tasks")
    if "tasks" not in payload:
        raise RequestError(422, "Request body lacks 'tasks'.")
    if not isinstance(tasks, list):
        raise RequestError(422, "'tasks' must be a list of Label Studio tasks ({\"id\": ..., \"data\": {...}}).")
    if not tasks:
        raise RequestError(422, "'tasks' is empty: send at least one task to predict.")
    if len(tasks) > max_tasks:
        raise RequestError(413, f"{len(tasks):,} tasks in one request; the limit is {max_tasks:,} "
                                "(LABELLOOP_MAX_TASKS_PER_REQUEST). Select fewer, or run `labelloop preannotate`.")
    params = payload.get("params")
    context = params.get("context") if isinstance(params, dict) and isinstance(params.get("context"), dict) else None
    return PredictRequest(tasks, _project(payload, required=False), _text(payload, "label_config"), context)


def length_order(tasks: list[Any]) -> list[int]:
    """Indices of ``tasks`` from the least text to the most (the sum of the lengths of each task's string data
    values; a task without a data object counts as empty), stable for equal lengths."""
    def size(task: object) -> int:
        data = task.get("data") if isinstance(task, dict) else None
        return sum(len(v) for v in data.values() if isinstance(v, str)) if isinstance(data, dict) else 0

    return sorted(range(len(tasks)), key=lambda i: size(tasks[i]))


def webhook_event(payload: dict[str, Any]) -> Event:
    """A webhook payload as an :class:`Event`; an annotation event must carry its annotations."""
    action = _text(payload, "action", required=True) or ""
    project = payload.get("project")
    pid = parse_project_id(_project(payload, required=True))
    assert pid is not None
    label_config = project.get("label_config") if isinstance(project, dict) else None
    if label_config is not None and not isinstance(label_config, str):
        raise RequestError(422, "'project.label_config' must be a string.")
    annotations: list[Annotation] = []
    if action.startswith("ANNOTATION"):
        items = payload.get("annotations") if "annotations" in payload else [payload.get("annotation")]
        task: dict[str, Any] = payload["task"] if isinstance(payload.get("task"), dict) else {}
        if not isinstance(items, list) or not items:
            raise RequestError(422, f"{action} payload lacks the annotation (with its id).")
        for ann in items:
            if not isinstance(ann, dict) or "id" not in ann:
                raise RequestError(422, f"{action} payload lacks the annotation (with its id).")
            task_id = ann.get("task") if isinstance(ann.get("task"), int) else task.get("id", 0)
            data: dict[str, Any] = task["data"] if isinstance(task.get("data"), dict) else {}
            result = ann.get("result") if ann.get("result") is not None else []
            if not isinstance(result, list):
                raise RequestError(422, "an annotation's 'result' must be a list of regions.")
            annotations.append(Annotation(_id(ann["id"], "annotation id"), _id(task_id or 0, "task id"), data,
                                          result, bool(ann.get("was_cancelled"))))
    return Event(action, pid, label_config, tuple(annotations))
