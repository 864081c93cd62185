"""The Gradio playground (``labelloop playground``): try one or two model versions on any text.

Pick a project the backend serves and up to two of its model versions (A: the serving one, B: the one
before it); the labels (every label's probability) or entity spans of each appear side by side. A second
tab previews augmentation of a text. Projects and versions are filled in only once a user has logged in:
the page a visitor sees before the login holds none of them.
"""

from __future__ import annotations

import gradio as gr

from labelloop import workflows
from labelloop.auth import LoginThrottle, Users, throttle_keys
from labelloop.errors import LabelLoopError
from labelloop.serving.service import ModelService
from labelloop.serving.versions import UNTRAINED_VERSION
from labelloop.settings import LabelLoopSettings, forwarded
from labelloop.studio import lsclient

NONE = "(none)"


def _versions(service: ModelService, project_id: int | None) -> tuple[list[str], str, str]:
    """The project's versions, newest first, and the defaults of A (the serving one) and B (the one before)."""
    if project_id is None:
        return [UNTRAINED_VERSION], UNTRAINED_VERSION, NONE
    versions = [v.model_version for v in service.version_records(int(project_id))][::-1] + [UNTRAINED_VERSION]
    current = service.current_record(int(project_id))
    a = current.model_version if current is not None else versions[0]
    older = versions[versions.index(a) + 1:] if a in versions else versions[1:]
    return versions, a, older[0] if older else NONE


def _title(service: ModelService, project_id: int) -> str:
    """The project's title in Label Studio, or ``project N`` when Label Studio can't say (quickly)."""
    client = service.client_for(project_id, timeout=5)
    if client is not None:
        try:
            project = lsclient.call("reading the project", client.projects.get, id=project_id, retry=None)
            if project.title:
                return f"{project.title} (#{project_id})"
        except LabelLoopError:
            pass
    return f"project {project_id}"


def _choices(service: ModelService, project_id=None):
    """Dropdown updates for the project (the first one if None) and its two versions."""
    projects = service.projects()
    if project_id is None and projects:
        project_id = projects[0]
    versions, a, b = _versions(service, project_id)
    return (gr.Dropdown(choices=[(_title(service, p), p) for p in projects], value=project_id),
            gr.Dropdown(choices=versions, value=a), gr.Dropdown(choices=[NONE, *versions], value=b))


def compare(service: ModelService, project_id, text: str, first: str, second: str):
    """Two ``(label probabilities, highlighted spans)`` pairs, one per chosen version."""
    if project_id is None or str(project_id) not in {str(p) for p in service.projects()}:
        raise gr.Error("Pick a project first (the backend must have been connected to it).")
    versions = [v for v in (first, second) if v and v != NONE]
    try:
        rows = workflows.try_versions(service, int(project_id), text, versions)
    except LabelLoopError as e:
        raise gr.Error(str(e)) from None
    out = []
    for row in rows:
        probs = next(iter(row["choices"].values()), None)
        entities = [{"start": s["start"], "end": s["end"], "entity": f"{s['label']} {s['score']:.2f}"}
                    for s in row["spans"]]
        out += [probs, {"text": text, "entities": entities} if entities or not row["choices"] else None]
    out += [None, None] * (2 - len(rows))
    return out


def augment_preview(text: str, label: str, methods: list[str]) -> list[list[str]]:
    from labelloop.augment.cli import build_augmenters, word_diff

    if not text.strip():
        raise gr.Error("Type a text to augment.")
    record = {"text": text, "label": label or "?"}
    try:
        augmenters = build_augmenters(methods or ["swap"], [record])
    except LabelLoopError as e:
        raise gr.Error(str(e)) from None
    rows = []
    for augmenter in augmenters:
        for variant in augmenter.augment([record], n=3, seed=0):
            rows.append([variant["provenance"]["method"], variant["text"], word_diff(text, variant["text"])])
    return rows


def build(settings: LabelLoopSettings, service: ModelService | None = None) -> gr.Blocks:
    service = service or ModelService(settings)
    with gr.Blocks(title="LabelLoop playground") as app:
        gr.Markdown("# LabelLoop playground\nType a text and compare two model versions of a project.")
        with gr.Tab("Compare versions"):
            with gr.Row():  # empty until a user is logged in; compare() checks what it is sent
                project = gr.Dropdown([], label="Project", allow_custom_value=True)
                first = gr.Dropdown([], label="Version A (default: the serving one)", allow_custom_value=True)
                second = gr.Dropdown([], label="Version B (default: the one before)", allow_custom_value=True)
            text = gr.Textbox(label="Text", lines=4, placeholder="Paste a task's text here")
            run = gr.Button("Predict", variant="primary")
            with gr.Row():
                with gr.Column():
                    labels_a = gr.Label(label="A: labels", num_top_classes=10)
                    spans_a = gr.HighlightedText(label="A: entities")
                with gr.Column():
                    labels_b = gr.Label(label="B: labels", num_top_classes=10)
                    spans_b = gr.HighlightedText(label="B: entities")

            def on_project(pid):
                return _choices(service, pid)[1:]

            project.input(on_project, project, [first, second])
            app.load(lambda: _choices(service), None, [project, first, second])  # after the login, every visit
            run.click(lambda p, t, a, b: compare(service, p, t, a, b), [project, text, first, second],
                      [labels_a, spans_a, labels_b, spans_b], api_name="compare")
        with gr.Tab("Augmentation preview"):
            aug_text = gr.Textbox(label="Text", lines=3)
            aug_label = gr.Textbox(label="Its label")
            aug_methods = gr.CheckboxGroup(["swap", "delete", "synonym", "synonym-insert"], value=["swap"],
                                           label="Methods")
            aug_run = gr.Button("Preview")
            aug_out = gr.Dataframe(headers=["method", "variant", "diff"], label="Variants")
            aug_run.click(augment_preview, [aug_text, aug_label, aug_methods], aug_out, api_name="augment")
    return app


def login_check(users: Users):
    """Gradio's ``auth``: a coroutine that checks a password (scrypt, tens of milliseconds of CPU) in a worker
    thread, one at a time, so a login spray never stalls the event loop that serves everyone else's pages."""
    import anyio

    limiter: list[anyio.CapacityLimiter] = []

    async def check(username: str, password: str) -> bool:
        if not limiter:
            limiter.append(anyio.CapacityLimiter(1))
        return await anyio.to_thread.run_sync(users.check, username, password, limiter=limiter[0])

    return check


def launch(settings: LabelLoopSettings, users: Users, *, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the playground; logins are throttled per user name and per client address."""
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    throttle = LoginThrottle()
    server = FastAPI()

    @server.middleware("http")
    async def throttle_logins(request: Request, call_next):
        if request.method != "POST" or request.url.path.rstrip("/") != "/login":
            return await call_next(request)
        keys = throttle_keys(None, request.client.host if request.client else "unknown")
        wait = throttle.wait(*keys)
        if wait > 0:
            return JSONResponse({"detail": f"Too many failed logins: try again in {wait:.0f} s."}, status_code=429,
                                headers={"Retry-After": str(max(1, round(wait)))})
        response = await call_next(request)
        throttle.record(response.status_code < 400, *keys)
        return response

    check = login_check(users)  # the middleware above throttles the guessing address

    app = build(settings)
    app.queue(default_concurrency_limit=2)
    server = gr.mount_gradio_app(server, app, path="", auth=None if users.open else check,
                                 auth_message="Log in with your LabelLoop dashboard account.", show_error=True)
    uvicorn.run(server, host=host, port=port, log_level="warning", **forwarded(settings))
