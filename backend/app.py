"""FastAPI app speaking Label Studio's ML backend protocol (as Label Studio 1.23 sends it).

Routes: ``GET /health``, ``POST /setup``, ``POST /predict``, ``POST /webhook``, ``POST /train``,
``GET /versions``, ``GET /metrics``. Each one parses the request (:mod:`labelloop.backend.protocol`),
calls :class:`~labelloop.serving.service.ModelService`, and formats the answer. Errors are JSON
``{"error": ...}`` with a status that says what went wrong: 4xx for what the caller should send
instead, 503 when the disk is full or a model can't be loaded.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from labelloop import __version__
from labelloop.auth import LoginThrottle, throttle_keys
from labelloop.backend.protocol import (
    BodyBudget,
    RequestError,
    length_order,
    predict_request,
    read_json,
    setup_request,
    webhook_event,
)
from labelloop.errors import ConfigError, LabelLoopError, ModelError, StorageFullError, TaskDataError
from labelloop.labeling.tasks import Event, parse_project_id
from labelloop.serving.service import ModelService
from labelloop.settings import LabelLoopSettings
from labelloop.studio.lsclient import basic_auth_header

log = logging.getLogger("labelloop.backend")

OPEN_PATHS = {"/health", "/"}
PREDICT_CHUNK = 128  # tasks predicted between two checks that the caller is still there (about a second of work)


# What Label Studio sends, as OpenAPI schemas: documentation, and what a fuzzer of the served schema varies
# (the routes parse bodies themselves, in labelloop.backend.protocol, so FastAPI can't derive these).
_PROJECT = {"oneOf": [{"type": "string", "example": "3.1700000000"}, {"type": "integer"},
                      {"type": "object", "properties": {"id": {"type": "integer"}}}]}
SETUP_BODY = {"type": "object", "required": ["schema"], "properties": {
    "project": _PROJECT, "schema": {"type": "string"}, "hostname": {"type": "string"},
    "access_token": {"type": "string"}, "extra_params": {"type": "object"}}}
PREDICT_BODY = {"type": "object", "required": ["tasks"], "properties": {
    "tasks": {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "integer"}, "data": {"type": "object", "properties": {"text": {"type": "string"}}}}}},
    "project": _PROJECT, "label_config": {"type": "string"}, "params": {"type": "object"}}}
WEBHOOK_BODY = {"type": "object", "required": ["action", "project"], "properties": {
    "action": {"type": "string", "enum": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                                         "START_TRAINING", "PROJECT_UPDATED"]},
    "project": _PROJECT, "task": {"type": "object"}, "annotation": {"type": "object", "properties": {
        "id": {"type": "integer"}, "result": {"type": "array", "items": {"type": "object"}}}}}}
TRAIN_BODY = {"type": "object", "required": ["project"], "properties": {"project": _PROJECT}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class BasicAuth:
    """HTTP basic auth for every path but the open ones, throttled per client address (Label Studio's own calls
    keep working during an attack from elsewhere).

    A plain ASGI middleware: it hands the request's ``receive`` on untouched, so a route still learns when its
    caller hangs up (Starlette's ``BaseHTTPMiddleware`` hid that, and a /predict whose caller had left ran on).
    """

    def __init__(self, app: ASGIApp, *, expected: str) -> None:
        self.app = app
        self.expected = expected.encode()
        self.throttle = LoginThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        client = scope.get("client")
        keys = throttle_keys(None, client[0] if client else "unknown")
        wait = self.throttle.wait(*keys) if given else 0.0
        if wait > 0:  # refused unchecked: guessing from this address has to wait
            response = JSONResponse({"error": f"Too many failed logins from this address: try again in {wait:.0f} s."},
                                    status_code=429, headers={"Retry-After": str(max(1, round(wait)))})
            await response(scope, receive, send)
            return
        ok = hmac.compare_digest(given, self.expected)
        if given:
            self.throttle.record(ok, *keys)
        if ok:
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/webhook":
            log.warning("refused a webhook without valid basic auth: connect with `labelloop connect`, or add an "
                        "Authorization header to the webhook in the project's Settings > Webhooks")
        response = JSONResponse({"error": "Basic authentication required: set the user and password in the ML "
                                 "backend connection."}, status_code=401, headers={"WWW-Authenticate": 'Basic realm="labelloop"'})
        await response(scope, receive, send)


def create_app(settings: LabelLoopSettings | None = None, *, service: ModelService | None = None,
               train_in_background: bool = True) -> FastAPI:
    """Build the backend app; ``train_in_background=False`` leaves the queue for the caller to run."""
    settings = settings or LabelLoopSettings()
    service = service or ModelService(settings)
    worker = service.worker()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if train_in_background:
            worker.start()
        yield
        worker.stop()
        service.close()

    app = FastAPI(title="LabelLoop ML backend", version=__version__, lifespan=lifespan)
    app.state.service = service
    app.state.worker = worker
    expected_auth = basic_auth_header(*settings.basic_auth) if settings.basic_auth else None
    limit = settings.max_body_bytes
    bodies = BodyBudget(settings.max_inflight_body_bytes)

    if expected_auth:
        app.add_middleware(BasicAuth, expected=expected_auth)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        log.info("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(LabelLoopError)
    async def labelloop_error(request: Request, exc: LabelLoopError) -> JSONResponse:
        if isinstance(exc, StorageFullError):
            status = 503
        elif isinstance(exc, (ConfigError, TaskDataError)):
            status = 422
        else:
            status = 503 if isinstance(exc, ModelError) else 502
        if request.url.path == "/webhook":
            service.metrics.add(refused_events=1)
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.get("/")
    @app.get("/health", response_model=None)
    async def health() -> dict[str, str]:
        return {"status": "UP", "model_class": "LabelLoop", "version": __version__}

    @app.post("/setup", openapi_extra=_body(SETUP_BODY), response_model=None)
    async def setup(request: Request) -> dict[str, str]:
        req = setup_request(await read_json(request, limit=limit, budget=bodies))
        version = await run_in_threadpool(service.setup, req.project, req.label_config, hostname=req.hostname,
                                          access_token=req.access_token)
        return {"model_version": version}

    @app.post("/predict", openapi_extra=_body(PREDICT_BODY), response_model=None)
    async def predict(request: Request) -> dict[str, Any] | JSONResponse:
        req = predict_request(await read_json(request, limit=limit, budget=bodies), max_tasks=settings.max_tasks_per_request)
        # Chunks of similar length pad little: the tasks are predicted shortest first, answered in their order.
        order = length_order(req.tasks)
        results: list[dict[str, Any]] = [{}] * len(order)
        for start in range(0, len(order), PREDICT_CHUNK):
            if start and await request.is_disconnected():
                log.info("POST /predict: the caller left after %d of %d tasks; stopped", start, len(req.tasks))
                return JSONResponse({"error": "client disconnected"}, status_code=499)
            chunk = order[start : start + PREDICT_CHUNK]
            answered = await run_in_threadpool(service.predict, [req.tasks[i] for i in chunk],
                                               project=req.project, label_config=req.label_config)
            for i, result in zip(chunk, answered, strict=True):
                results[i] = result
        return {"results": results, "model_version": results[0]["model_version"]}

    @app.post("/webhook", openapi_extra=_body(WEBHOOK_BODY), response_model=None)
    async def webhook(request: Request) -> dict[str, Any]:
        event = webhook_event(await read_json(request, limit=limit, budget=bodies))
        return await run_in_threadpool(service.handle_event, event)

    @app.post("/train", openapi_extra=_body(TRAIN_BODY), response_model=None)
    async def train(request: Request) -> dict[str, Any]:
        """The pre-webhook training call; queued exactly like START_TRAINING."""
        payload = await read_json(request, limit=limit, budget=bodies)
        pid = parse_project_id(payload.get("project")) if isinstance(payload.get("project"), (int, str, dict)) else None
        if pid is None:
            raise RequestError(422, "Request body lacks 'project' (Label Studio's project id).")
        return await run_in_threadpool(service.handle_event, Event("START_TRAINING", pid))

    @app.get("/versions", response_model=None)
    async def versions() -> dict[str, Any]:
        names = await run_in_threadpool(service.versions)
        problems = await run_in_threadpool(service.problems)
        return {"versions": names, "problems": problems}

    @app.get("/metrics", response_class=PlainTextResponse, response_model=None)
    async def metrics() -> str:
        queued, running = await run_in_threadpool(service.training_load)
        gauges = {"training_queue": (queued, "trainings queued or running (all processes)"),
                  "trainings_running": (running, "trainings running now (all processes)")}
        usage = service.llm_usage() or {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached": 0}
        return service.metrics.render(gauges, usage)

    return app
