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
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from labelloop import __version__
from labelloop.auth import LoginThrottle, throttle_keys
from labelloop.backend.protocol import RequestError, predict_request, read_json, setup_request, webhook_event
from labelloop.errors import ConfigError, LabelLoopError, ModelError, StorageFullError, TaskDataError
from labelloop.labeling.tasks import Event, parse_project_id
from labelloop.lsclient import basic_auth_header
from labelloop.serving.service import ModelService
from labelloop.settings import LabelLoopSettings

log = logging.getLogger("labelloop.backend")

OPEN_PATHS = {"/health", "/"}
PREDICT_CHUNK = 1024  # tasks predicted between two checks that the caller is still there


def create_app(settings: LabelLoopSettings | None = None, *, service: ModelService | None = None,
               train_in_background: bool = True) -> FastAPI:
    """Build the backend app; ``train_in_background=False`` leaves the queue for the caller to run."""
    settings = settings or LabelLoopSettings()
    service = service or ModelService(settings)
    worker = service.worker()

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
    limit = settings.max_body_bytes

    throttle = LoginThrottle()  # per client address: Label Studio's own calls keep working during an attack

    @app.middleware("http")
    async def basic_auth(request: Request, call_next):
        if expected_auth and request.url.path not in OPEN_PATHS:
            given = request.headers.get("authorization", "")
            keys = throttle_keys(None, request.client.host if request.client else "unknown")
            wait = throttle.wait(*keys) if given else 0.0
            if wait > 0:  # refused unchecked: guessing from this address has to wait
                return JSONResponse({"error": f"Too many failed logins from this address: try again in {wait:.0f} s."},
                                    status_code=429, headers={"Retry-After": str(max(1, round(wait)))})
            ok = hmac.compare_digest(given.encode(), expected_auth.encode())
            if given:
                throttle.record(ok, *keys)
            if not ok:
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
    @app.get("/health")
    async def health():
        return {"status": "UP", "model_class": "LabelLoop", "version": __version__}

    @app.post("/setup")
    async def setup(request: Request):
        req = setup_request(await read_json(request, limit=limit))
        version = await run_in_threadpool(service.setup, req.project, req.label_config, hostname=req.hostname,
                                          access_token=req.access_token)
        return {"model_version": version}

    @app.post("/predict")
    async def predict(request: Request):
        req = predict_request(await read_json(request, limit=limit), max_tasks=settings.max_tasks_per_request)
        results: list[dict] = []
        for start in range(0, len(req.tasks), PREDICT_CHUNK):
            if start and await request.is_disconnected():
                log.info("POST /predict: the caller left after %d of %d tasks; stopped", start, len(req.tasks))
                return JSONResponse({"error": "client disconnected"}, status_code=499)
            results += await run_in_threadpool(service.predict, req.tasks[start : start + PREDICT_CHUNK],
                                               project=req.project, label_config=req.label_config)
        return {"results": results, "model_version": results[0]["model_version"]}

    @app.post("/webhook")
    async def webhook(request: Request):
        event = webhook_event(await read_json(request, limit=limit))
        return await run_in_threadpool(service.handle_event, event)

    @app.post("/train")
    async def train(request: Request):
        """The pre-webhook training call; queued exactly like START_TRAINING."""
        payload = await read_json(request, limit=limit)
        pid = parse_project_id(payload.get("project")) if isinstance(payload.get("project"), (int, str, dict)) else None
        if pid is None:
            raise RequestError(422, "Request body lacks 'project' (Label Studio's project id).")
        return await run_in_threadpool(service.handle_event, Event("START_TRAINING", pid))

    @app.get("/versions")
    async def versions():
        names = await run_in_threadpool(service.versions)
        problems = await run_in_threadpool(service.problems)
        return {"versions": names, "problems": problems}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        store = service.store
        gauges = {"training_queue": (store.pending_jobs(), "trainings queued or running (all processes)"),
                  "trainings_running": (len(store.running_jobs()), "trainings running now (all processes)")}
        usage = service.llm_usage() or {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached": 0}
        return service.metrics.render(gauges, usage)

    return app
