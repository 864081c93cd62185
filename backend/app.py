"""FastAPI app speaking Label Studio's ML backend protocol (as Label Studio 1.23 sends it).

Routes: ``GET /health``, ``POST /setup``, ``POST /predict``, ``POST /webhook``, ``POST /train``,
``GET /versions``, ``GET /metrics``. Each one parses the request, calls
:class:`~labelloop.service.ModelService`, and formats the answer. Errors are JSON ``{"error": ...}``
with a 4xx status that says what to send instead.
"""

from __future__ import annotations

import hmac
import json
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from labelloop import __version__
from labelloop.lsclient import basic_auth_header
from labelloop.errors import ConfigError, LabelLoopError, ModelError, TaskDataError
from labelloop.service import ModelService, TrainingWorker
from labelloop.settings import LabelLoopSettings

log = logging.getLogger("labelloop.backend")

MAX_BODY_BYTES = 256 * 1024 * 1024
OPEN_PATHS = {"/health", "/"}


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_json(request: Request, *, required: tuple[str, ...] = ()) -> dict:
    """The request body as a JSON object holding ``required`` keys, or a 4xx that says what is wrong."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(413, f"Request body is {len(body):,} bytes; the limit is {MAX_BODY_BYTES:,}.")
    if not body.strip():
        raise RequestError(400, "Empty request body: send a JSON object.")
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RequestError(400, f"Request body is not UTF-8 (bad byte at position {e.start}): send UTF-8 JSON.") from e
    except json.JSONDecodeError as e:
        raise RequestError(400, f"Request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}).") from e
    if not isinstance(payload, dict):
        raise RequestError(400, f"Request body must be a JSON object, not {type(payload).__name__}.")
    missing = [k for k in required if k not in payload]
    if missing:
        raise RequestError(422, f"Request body lacks {', '.join(map(repr, missing))}.")
    return payload


def create_app(settings: LabelLoopSettings | None = None, *, service: ModelService | None = None,
               train_in_background: bool = True) -> FastAPI:
    """Build the backend app; ``train_in_background=False`` leaves the queue for the caller to run."""
    settings = settings or LabelLoopSettings()
    service = service or ModelService(settings)
    worker = TrainingWorker(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if train_in_background:
            worker.start()
        yield
        worker.stop()

    app = FastAPI(title="LabelLoop ML backend", version=__version__, lifespan=lifespan)
    app.state.service = service
    app.state.worker = worker
    expected_auth = basic_auth_header(*settings.basic_auth) if settings.basic_auth else None

    @app.middleware("http")
    async def basic_auth(request: Request, call_next):
        if expected_auth and request.url.path not in OPEN_PATHS:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), expected_auth.encode()):
                if request.url.path == "/webhook":
                    log.warning("refused a webhook without valid basic auth: connect with `labelloop connect`, or add "
                                "an Authorization header to the webhook in the project's Settings > Webhooks")
                return JSONResponse({"error": "Basic authentication required: set the user and password in the "
                                     "ML backend connection."}, status_code=401,
                                    headers={"WWW-Authenticate": 'Basic realm="labelloop"'})
        return await call_next(request)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        log.info("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(LabelLoopError)
    async def labelloop_error(request: Request, exc: LabelLoopError):
        status = 422 if isinstance(exc, (ConfigError, TaskDataError)) else 503 if isinstance(exc, ModelError) else 502
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.get("/")
    @app.get("/health")
    async def health():
        return {"status": "UP", "model_class": "LabelLoop", "version": __version__}

    @app.post("/setup")
    async def setup(request: Request):
        payload = await read_json(request, required=("schema",))
        version = await run_in_threadpool(
            service.setup, payload.get("project"), payload["schema"],
            hostname=payload.get("hostname"), access_token=payload.get("access_token"),
        )
        return {"model_version": version}

    @app.post("/predict")
    async def predict(request: Request):
        payload = await read_json(request, required=("tasks",))
        tasks = payload["tasks"]
        if not isinstance(tasks, list):
            raise RequestError(422, "'tasks' must be a list of Label Studio tasks ({\"id\": ..., \"data\": {...}}).")
        if not tasks:
            raise RequestError(422, "'tasks' is empty: send at least one task to predict.")
        params = payload.get("params") if isinstance(payload.get("params"), dict) else {}
        results = await run_in_threadpool(
            service.predict, tasks, project=payload.get("project"), label_config=payload.get("label_config"),
            context=params.get("context"),
        )
        return {"results": results, "model_version": results[0]["model_version"]}

    @app.post("/webhook")
    async def webhook(request: Request):
        payload = await read_json(request, required=("action",))
        return await run_in_threadpool(service.handle_event, payload)

    @app.post("/train")
    async def train(request: Request):
        """The pre-webhook training call; queued exactly like START_TRAINING."""
        payload = await read_json(request, required=("project",))
        return await run_in_threadpool(service.handle_event, {"action": "START_TRAINING", "project": payload["project"]})

    @app.get("/versions")
    async def versions():
        return {"versions": await run_in_threadpool(service.versions)}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        m = service.metrics
        lines = [
            ("labelloop_predict_requests_total", "counter", m.predict_requests),
            ("labelloop_predicted_tasks_total", "counter", m.predicted_tasks),
            ("labelloop_failed_tasks_total", "counter", m.failed_tasks),
            ("labelloop_predict_seconds_total", "counter", round(m.predict_seconds, 6)),
            ("labelloop_webhook_events_total", "counter", m.webhook_events),
            ("labelloop_trainings_total", "counter", m.trainings),
            ("labelloop_training_failures_total", "counter", m.training_failures),
            ("labelloop_training_seconds_total", "counter", round(m.training_seconds, 6)),
            ("labelloop_training_queue", "gauge", service.store.pending_jobs()),
            ("labelloop_llm_dropped_mentions_total", "counter", m.llm_dropped_mentions),
        ]
        usage = service.llm_usage() or {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached": 0}
        lines += [(f"labelloop_llm_{key}_total", "counter", value) for key, value in usage.items()]
        return "".join(f"# TYPE {name} {kind}\n{name} {value}\n" for name, kind, value in lines)

    return app
