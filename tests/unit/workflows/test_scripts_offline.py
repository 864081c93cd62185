"""Parts of the SDK scripts that need no server: templates, task files, retries."""

import json

import pytest

from labelloop.errors import ConfigError, LabelStudioAuthError, LabelStudioUnavailableError
from labelloop.labeling.schema import parse_label_config
from labelloop.studio import lsclient
from labelloop.studio.importing import read_tasks
from labelloop.templates import TEMPLATES, label_config


@pytest.mark.parametrize("template", [t for t in TEMPLATES if t != "prompt-response"])
def test_templates_are_served_by_the_backend(template):
    schema = parse_label_config(label_config(template, ["PER", 'Odd "quoted" & <label>']))
    control = schema.controls[0]  # coreference adds its relations after the mentions
    assert [c.kind for c in schema.controls[1:]] == (["relations"] if template == "coreference" else [])
    assert control.labels == ("PER", 'Odd "quoted" & <label>') or template == "sentiment"
    assert control.multiple == (template == "multi-label")


def test_sentiment_has_default_labels_and_others_require_them():
    assert parse_label_config(label_config("sentiment")).controls[0].labels == ("Positive", "Negative", "Neutral")
    with pytest.raises(ConfigError, match="needs labels"):
        label_config("ner", [])
    with pytest.raises(ConfigError, match="unknown template"):
        label_config("audio", ["a"])


def test_prompt_response_template_is_valid_label_studio_xml():
    from label_studio_sdk.label_interface import LabelInterface

    config = label_config("prompt-response", text_field="question")
    interface = LabelInterface(config)
    assert {c.tag for c in interface.controls} == {"TextArea"}
    assert interface.get_object("prompt").value_name == "question"


def test_read_tasks_from_jsonl_csv_and_text(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"data": {"text": "two"}}) + "\n")
    (tmp_path / "b.csv").write_text('text,source\n"three, with comma",x\nfour,y\n')
    (tmp_path / "c.txt").write_text("five\n\nsix\n")
    assert read_tasks(tmp_path / "a.jsonl") == [{"text": "one"}, {"text": "two"}]
    assert read_tasks(tmp_path / "b.csv") == [{"text": "three, with comma", "source": "x"}, {"text": "four", "source": "y"}]
    assert read_tasks(tmp_path / "c.txt") == [{"text": "five"}, {"text": "six"}]


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"text": "ok"}\n{broken\n', "bad.jsonl:2: not valid JSON"),
    ("missing.jsonl", '{"body": "no text"}\n', "missing.jsonl:1: the 'text' field is missing or empty; every task needs its text there"),
    ("cols.csv", "body\nx\n", "no 'text' column"),
    ("x.xlsx", "x", "unknown file type"),
    ("empty.jsonl", "", "empty.jsonl holds no tasks"),
    ("blank.txt", "\n  \n", "blank.txt holds no tasks"),
    ("header.csv", "text,source\n", "header.csv holds no tasks"),
    ("nothing.csv", "", "nothing.csv is empty: it needs a header row"),
])
def test_read_tasks_errors_name_the_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_tasks(tmp_path / name)


def _api_error(status):
    from label_studio_sdk.core.api_error import ApiError

    return ApiError(status_code=status, body={"id": "1", "status_code": status, "version": "1.23.2", "detail": "x"})


def test_call_retries_transient_failures_then_succeeds(monkeypatch):
    monkeypatch.setattr(lsclient.time, "sleep", lambda s: None)
    import httpx

    attempts = iter([httpx.ConnectError("down"), _api_error(503), "ok"])

    def flaky():
        item = next(attempts)
        if isinstance(item, Exception):
            raise item
        return item

    assert lsclient.call("reading", flaky) == "ok"


def test_call_does_not_retry_writes_or_client_errors(monkeypatch):
    monkeypatch.setattr(lsclient.time, "sleep", lambda s: None)
    import httpx

    calls = []

    def down():
        calls.append(1)
        raise httpx.ConnectError("down")

    with pytest.raises(LabelStudioUnavailableError, match="did not answer"):
        lsclient.call("pushing", down, retry=None)
    assert len(calls) == 1
    with pytest.raises(LabelStudioUnavailableError):
        lsclient.call("reading", down, retry=lsclient.Retry(attempts=3))
    assert len(calls) == 4


def test_401_explains_token_kinds_and_never_shows_the_token():
    def refused():
        raise _api_error(401)

    with pytest.raises(LabelStudioAuthError) as e:
        lsclient.call("reading", refused)
    assert "legacy token" in str(e.value) and "personal access token" in str(e.value)


def test_connect_explains_label_studio_refusing_loopback_backends():
    from types import SimpleNamespace

    from labelloop.errors import LabelStudioError
    from labelloop.studio.projects import connect_backend

    def refuse(**kwargs):
        raise _api_error_body(403, {"detail": "URL resolves to a reserved network address (block: 127.0.0.0/8)"})

    client = SimpleNamespace(ml=SimpleNamespace(create=refuse),
                             projects=SimpleNamespace(get=lambda id: SimpleNamespace(label_config=None)))
    with pytest.raises(LabelStudioError) as e:
        connect_backend(client, 1, "http://127.0.0.1:9090")
    assert "USE_DEFAULT_BANNED_SUBNETS=false" in str(e.value)
    assert not isinstance(e.value, LabelStudioAuthError)


def _api_error_body(status, body):
    from label_studio_sdk.core.api_error import ApiError

    return ApiError(status_code=status, body=body)


def test_import_of_a_missing_file_is_a_one_line_error_before_any_network_call(tmp_path, monkeypatch):
    from labelloop.cli import main

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "unused")
    with pytest.raises(SystemExit) as stop:  # port 9 (discard) would be retried for a minute if it were called
        main(["import", "--url", "http://127.0.0.1:9", "--project", "1", str(tmp_path / "nope.jsonl")])
    assert str(stop.value) == f"error: {tmp_path / 'nope.jsonl'}: no such file; check the path (JSONL, CSV, TSV or " \
                              "plain text, a task per line)"


@pytest.fixture
def web_page_server():
    """A local HTTP server that answers every request with an HTML page and the given status (404)."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def _page(self):
            body = b"<!DOCTYPE html><html><body>" + b"x" * 2000 + b"</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = _page

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(argv, monkeypatch) -> str:
    from labelloop.cli import main

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "unused")
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return str(stop.value)


def test_a_refused_connection_fails_within_seconds_and_says_what_to_check(tmp_path, monkeypatch):
    import time

    started = time.monotonic()
    port = _free_port()
    message = _cli(["export", "--url", f"http://127.0.0.1:{port}", "--project", "1", "--out",
                    str(tmp_path / "out")], monkeypatch)
    assert time.monotonic() - started < 10
    assert message.startswith(f"error: reading the project: Label Studio did not answer at http://127.0.0.1:{port} "
                              "(ConnectError)")
    assert "LABEL_STUDIO_URL" in message


def test_a_url_without_http_names_the_fix_at_once(tmp_path, monkeypatch):
    import time

    started = time.monotonic()
    message = _cli(["export", "--url", "127.0.0.1:8080", "--project", "1", "--out", str(tmp_path / "out")],
                   monkeypatch)
    assert time.monotonic() - started < 5
    assert message == ("error: LABEL_STUDIO_URL (or --url) must be an address starting with http:// or https://, "
                       "e.g. http://127.0.0.1:8080 (got '127.0.0.1:8080')")


def test_a_url_that_is_not_label_studio_says_so_without_its_page(web_page_server, tmp_path, monkeypatch):
    message = _cli(["export", "--url", web_page_server, "--project", "1", "--out", str(tmp_path / "out")],
                   monkeypatch)
    assert "answered HTTP 404 with a web page, which is not Label Studio's API" in message
    assert "http://127.0.0.1:8080" in message and "<html" not in message and "xxxx" not in message


def test_a_backend_url_that_is_not_a_backend_is_refused_before_label_studio_is_asked(web_page_server, monkeypatch):
    from labelloop.studio.projects import probe_backend

    with pytest.raises(ConfigError) as e:
        probe_backend(web_page_server)
    assert str(e.value) == (f"{web_page_server} is not a LabelLoop backend (its /health answered a web page): pass "
                            "the address `labelloop backend` listens on (default http://127.0.0.1:9090), not Label "
                            "Studio's or the dashboard's")
    assert probe_backend(f"http://127.0.0.1:{_free_port()}") is False  # nothing here: left to Label Studio
    with pytest.raises(ConfigError, match="must be an address starting with http"):
        probe_backend("localhost:9090")
    # through the CLI: refused before any call to Label Studio (port 9 would be a connection error)
    message = _cli(["connect", "--url", "http://127.0.0.1:9", "--project", "1", "--backend", web_page_server],
                   monkeypatch)
    assert message.startswith(f"error: {web_page_server} is not a LabelLoop backend")


def test_label_studio_errors_read_as_sentences_not_json():
    body = {"id": "5f0c", "status_code": 400, "version": "1.23.2", "detail": "Validation error", "exc_info": None,
            "validation_errors": {"label_config": ["These labels are still used: Positive", "Remove them first."]}}
    text = lsclient.describe_error(400, body)
    assert text == ("Label Studio answered HTTP 400: Validation error: label_config: These labels are still used: "
                    "Positive Remove them first.")
    assert "5f0c" not in lsclient.describe_error(404, {**body, "status_code": 404, "detail": "Not found."})
    assert lsclient.describe_error(404, {**body, "detail": "Not found."}).endswith("(check the project or task id)")
    assert "not Label Studio's API" in lsclient.describe_error(404, {"detail": "Not Found"})  # FastAPI's answer


def test_connect_says_why_the_backend_refuses_a_config_before_label_studio_hides_it(tmp_path, live_server):
    from types import SimpleNamespace

    from labelloop.errors import ConfigError
    from labelloop.settings import LabelLoopSettings
    from labelloop.studio.projects import connect_backend

    port = live_server(LabelLoopSettings(home=tmp_path, push_predictions=False))
    config = '<View><Text name="text" value="$text"/><TextArea name="answer" toName="text"/></View>'
    created = []
    client = SimpleNamespace(projects=SimpleNamespace(get=lambda id: SimpleNamespace(label_config=config)),
                             ml=SimpleNamespace(create=lambda **kw: created.append(kw)))
    with pytest.raises(ConfigError, match="LABELLOOP_PREDICTOR=llm"):
        connect_backend(client, 3, f"http://127.0.0.1:{port}")
    assert created == []  # Label Studio was never asked
    client.projects.get = lambda id: SimpleNamespace(label_config=config.replace(
        '<TextArea name="answer" toName="text"/>', '<Choices name="c" toName="text"><Choice value="a"/>'
        '<Choice value="b"/></Choices>'))
    connect_backend(client, 3, f"http://127.0.0.1:{port}")
    assert len(created) == 1


def test_a_refused_connection_names_the_address_it_tried():
    from labelloop.errors import LabelStudioUnavailableError
    from labelloop.studio.localstudio import free_port
    from labelloop.studio.lsclient import call, make_client

    port = free_port()
    client = make_client(f"http://127.0.0.1:{port}", "token", timeout=5)
    with pytest.raises(LabelStudioUnavailableError, match=f"did not answer at http://127.0.0.1:{port}"):
        call("listing projects", client.projects.list, retry=None)


def test_preannotate_resumes_after_label_studio_goes_away_with_growing_waits(monkeypatch):
    """Pushes fail while Label Studio is down; the run resumes from what it has stored, nothing twice."""
    from types import SimpleNamespace

    from labelloop.workflows import preannotation as sync

    stored: dict[int, int] = {}
    downs = iter([True, True, False, True])  # per push: down, down, up, down, then up for good
    waits: list[float] = []

    def push(client, project_id, rows, *, chunk):
        if next(downs, False):
            raise LabelStudioUnavailableError("Label Studio at http://127.0.0.1:8080 did not answer")
        for row in rows:
            stored[row["task"]] = stored.get(row["task"], 0) + 1
        return len(rows)

    def tasks(client, project_id, **kwargs):
        return (SimpleNamespace(id=i, data={"text": f"text {i}"}) for i in range(1, 31))

    class Predictor:
        def model_version(self, project_id, label_config):
            return "v1"

        def predict(self, batch, project_id, label_config):
            return [{"result": [], "score": 0.5, "model_version": "v1"} for _ in batch]

    monkeypatch.setattr(sync.lsclient, "push_predictions", push)
    monkeypatch.setattr(sync.lsclient, "iter_tasks", tasks)
    monkeypatch.setattr(sync.lsclient, "task_ids_with_version", lambda c, p, v: set(stored))
    monkeypatch.setattr(sync.lsclient, "set_model_version", lambda c, p, v: None)
    monkeypatch.setattr(sync.time, "sleep", waits.append)
    project = SimpleNamespace(label_config="<View/>", task_number=30)
    client = SimpleNamespace(projects=SimpleNamespace(get=lambda id: project))
    report = sync.preannotate(client, 1, Predictor(), batch_size=5, chunk=10, progress=False)
    assert stored == {i: 1 for i in range(1, 31)} and report.restarts == 3
    assert waits == [2.0, 4.0, 8.0]

    downs = iter([True] * 10)
    stored.clear()
    with pytest.raises(LabelStudioUnavailableError):
        sync.preannotate(client, 1, Predictor(), batch_size=5, chunk=10, progress=False, max_restarts=2)
