"""The ML backend protocol through the app's test client, on the packaged MiniLM encoder."""

from __future__ import annotations

import base64
import json
import time

import pytest
from fastapi.testclient import TestClient

from labelloop.backend.app import create_app
from labelloop.settings import LabelLoopSettings

TEXT = '<Text name="text" value="$text"/>'
SENTIMENT = f"""<View>{TEXT}<Choices name="sentiment" toName="text">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""
TOPICS = f"""<View>{TEXT}<Choices name="topics" toName="text" choice="multiple">
<Choice value="Sports"/><Choice value="Politics"/><Choice value="Technology"/></Choices></View>"""
NER = f"""<View>{TEXT}<Labels name="label" toName="text"><Label value="PER"/><Label value="LOC"/></Labels></View>"""
BOTH = f"""<View>{TEXT}<Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/>
</Choices><Labels name="label" toName="text"><Label value="PER"/><Label value="LOC"/></Labels></View>"""

NER_EXAMPLES = [
    ("Maria Lopez flew from Madrid to Berlin on Monday.", [(0, 11, "PER"), (22, 28, "LOC"), (32, 38, "LOC")]),
    ("John Smith lives in London.", [(0, 10, "PER"), (20, 26, "LOC")]),
    ("We met Anna Berg and Tom Hale in Oslo.", [(7, 16, "PER"), (21, 29, "PER"), (33, 37, "LOC")]),
    ("The weather was nice all week.", []),
    ("Paris London", [(0, 5, "LOC"), (6, 12, "LOC")]),
]


def task(i, text):
    return {"id": i, "data": {"text": text}}


def span_result(start, end, label, text):
    return {"from_name": "label", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]}}


@pytest.fixture
def settings(tmp_path):
    return LabelLoopSettings(home=tmp_path / "home", push_predictions=False)


@pytest.fixture
def client(settings):
    app = create_app(settings, train_in_background=False)
    with TestClient(app) as c:
        yield c


def run_queued_training(client):
    client.app.state.worker.run_pending()


def setup_project(client, config, project="7.1700000000"):
    r = client.post("/setup", json={"project": project, "schema": config, "hostname": "http://localhost:8080",
                                    "access_token": "secret-token"})
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def annotate(client, annotation_id, task_id, text, result, project_id=7, action="ANNOTATION_CREATED"):
    r = client.post("/webhook", json={
        "action": action, "project": {"id": project_id}, "task": {"id": task_id, "data": {"text": text}},
        "annotation": {"id": annotation_id, "task": task_id, "result": result, "was_cancelled": False},
    })
    assert r.status_code == 200, r.text
    return r.json()


def test_health_and_versions(client):
    assert client.get("/health").json()["status"] == "UP"
    assert client.get("/versions").json() == {"versions": ["labelloop-v0"], "problems": {}}


@pytest.mark.model
def test_zero_shot_classification_before_any_label(client):
    assert setup_project(client, SENTIMENT) == "labelloop-v0"
    tasks = [task(1, "I absolutely loved it, a wonderful and happy experience."),
             task(2, "Terrible, awful and sad. I hated every minute.")]
    r = client.post("/predict", json={"tasks": tasks, "project": "7.1700000000", "label_config": SENTIMENT})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [res["result"][0]["value"]["choices"] for res in results] == [["Positive"], ["Negative"]]
    for res in results:
        assert 0.0 <= res["score"] <= 1.0
        assert res["model_version"] == "labelloop-v0"
        assert res["result"][0]["from_name"] == "sentiment" and res["result"][0]["to_name"] == "text"


@pytest.mark.model
def test_multiple_choice_returns_known_labels_with_probabilities(client):
    setup_project(client, TOPICS)
    r = client.post("/predict", json={"tasks": [task(1, "The striker scored twice in the final match.")],
                                      "project": "7.1700000000", "label_config": TOPICS})
    (res,) = r.json()["results"]
    chosen = res["result"][0]["value"]["choices"]
    assert chosen and set(chosen) <= {"Sports", "Politics", "Technology"}
    assert "Sports" in chosen
    assert 0.0 <= res["score"] <= 1.0


@pytest.mark.model
def test_classification_learns_from_annotations_and_bumps_version(client):
    setup_project(client, SENTIMENT)
    # Labels that contradict the zero-shot guess: the trained head must follow the annotators.
    examples = [("The parcel came on a Tuesday.", "Negative"), ("It is blue and weighs two kilos.", "Negative"),
                ("The meeting starts at nine.", "Positive"), ("The report has twelve pages.", "Positive")]
    for i, (text, label) in enumerate(examples):
        annotate(client, 100 + i, i, text, [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                              "value": {"choices": [label]}}])
    run_queued_training(client)
    assert client.post("/setup", json={"project": "7.1700000000", "schema": SENTIMENT}).json()["model_version"] \
        == "labelloop-v1"
    r = client.post("/predict", json={"tasks": [task(i, t) for i, (t, _) in enumerate(examples)],
                                      "project": "7.1700000000", "label_config": SENTIMENT})
    predicted = [res["result"][0]["value"]["choices"][0] for res in r.json()["results"]]
    assert predicted == [label for _, label in examples]
    assert all(res["model_version"] == "labelloop-v1" for res in r.json()["results"])
    assert "labelloop-v1" in client.get("/versions").json()["versions"]


@pytest.mark.model
def test_ner_spans_have_exact_offsets_and_adjacent_entities_stay_apart(client):
    setup_project(client, NER)
    for i, (text, spans) in enumerate(NER_EXAMPLES):
        annotate(client, 200 + i, i, text, [span_result(s, e, label, text) for s, e, label in spans])
    run_queued_training(client)
    texts = [t for t, _ in NER_EXAMPLES] + ["Yesterday John Smith visited Paris London and Madrid."]
    r = client.post("/predict", json={"tasks": [task(i, t) for i, t in enumerate(texts)],
                                      "project": "7.1700000000", "label_config": NER})
    results = r.json()["results"]
    for text, res in zip(texts, results):
        assert 0.0 <= res["score"] <= 1.0
        for region in res["result"]:
            v = region["value"]
            assert text[v["start"] : v["end"]] == v["text"]
            assert v["labels"][0] in ("PER", "LOC")
            assert 0.0 <= region["score"] <= 1.0
    found = {(r["value"]["text"], r["value"]["labels"][0]) for r in results[-1]["result"]}
    assert {("John Smith", "PER"), ("Paris", "LOC"), ("London", "LOC"), ("Madrid", "LOC")} <= found
    assert len({r["id"] for r in results[-1]["result"]}) == len(results[-1]["result"])


@pytest.mark.model
def test_long_text_is_windowed_not_truncated(client):
    setup_project(client, NER)
    text, spans = NER_EXAMPLES[0]
    annotate(client, 1, 1, text, [span_result(s, e, label, text) for s, e, label in spans])
    run_queued_training(client)
    filler = "the weather was calm and nothing happened " * 200  # ~1,600 tokens, several windows
    long_text = filler + "John Smith lives in London. " + filler + "Maria Lopez flew to Berlin."
    (res,) = client.post("/predict", json={"tasks": [task(1, long_text)], "project": "7.1700000000"}).json()["results"]
    found = {(r["value"]["text"], r["value"]["start"]) for r in res["result"]}
    assert ("Berlin", long_text.rindex("Berlin")) in found
    for region in res["result"]:
        assert long_text[region["value"]["start"] : region["value"]["end"]] == region["value"]["text"]


@pytest.mark.model
def test_config_with_several_controls_is_served_whole(client):
    setup_project(client, BOTH)
    (res,) = client.post("/predict", json={"tasks": [task(1, "Great day in Rome with Anna.")],
                                           "project": "7.1700000000", "label_config": BOTH}).json()["results"]
    assert [r["from_name"] for r in res["result"]] == ["sentiment"]  # no span model before any label


@pytest.mark.parametrize("config, fragment", [
    ('<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img">'
     '<Label value="Car"/></RectangleLabels></View>', "RectangleLabels"),
    (f'<View>{TEXT}<TextArea name="answer" toName="text"/></View>', "TextArea"),
    ("<View><Text name=", "could not be parsed"),
    ("", "empty"),
])
def test_unsupported_config_is_a_clear_4xx(client, config, fragment):
    r = client.post("/setup", json={"project": "7.1", "schema": config})
    assert r.status_code == 422
    assert fragment in r.json()["error"] and "<Choices" in r.json()["error"]
    r = client.post("/predict", json={"tasks": [task(1, "x")], "label_config": config})
    assert r.status_code == 422


@pytest.mark.parametrize("body, status, fragment", [
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe\x00garbage", 400, "not UTF-8"),
    (b"", 400, "Empty request body"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"label_config": "<View/>"}', 422, "'tasks'"),
    (b'{"tasks": {}}', 422, "must be a list"),
    (b'{"tasks": []}', 422, "empty"),
])
def test_malformed_requests_get_4xx_json(client, body, status, fragment):
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert fragment in r.json()["error"]


@pytest.mark.model
def test_bad_tasks_get_their_own_empty_result_and_never_shift_others(client, settings):
    setup_project(client, SENTIMENT)
    huge = "x" * (settings.max_text_chars + 1)
    tasks = [task(1, "Wonderful, I love it."), {"id": 2, "data": {"other": "no text field"}},
             task(3, huge), "not a task", task(5, "   "), {"id": 6, "data": {"text": {"nested": 1}}},
             task(7, "Horrible and disappointing.")]
    r = client.post("/predict", json={"tasks": tasks, "project": "7.1700000000", "label_config": SENTIMENT})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == len(tasks)
    assert results[0]["result"][0]["value"]["choices"] == ["Positive"]
    assert results[-1]["result"][0]["value"]["choices"] == ["Negative"]
    for res, fragment in zip(results[1:-1], ["no 'text' field", "characters", "no 'data'", "empty", "not text"]):
        assert res["result"] == [] and fragment in res["error"]
    assert client.get("/metrics").text.count("labelloop_failed_tasks_total 5") == 1


def test_ten_megabyte_text_is_refused_per_task_quickly(client):
    setup_project(client, SENTIMENT)
    started = time.perf_counter()
    r = client.post("/predict", json={"tasks": [task(1, "word " * 2_000_000)], "project": "7.1700000000"})
    assert r.status_code == 200
    assert "LABELLOOP_MAX_TEXT_CHARS" in r.json()["results"][0]["error"]
    assert time.perf_counter() - started < 30


def test_predict_without_config_or_known_project_says_what_to_send(client):
    r = client.post("/predict", json={"tasks": [task(1, "hi")], "project": "99.1"})
    assert r.status_code == 422 and "label_config" in r.json()["error"]


def test_webhook_is_persisted_before_ack_and_queues_one_coalesced_training(client):
    setup_project(client, SENTIMENT)
    store = client.app.state.service.store
    for i in range(3):
        reply = annotate(client, 300 + i, i, f"text {i}", [{"from_name": "sentiment", "to_name": "text",
                                                           "type": "choices", "value": {"choices": ["Positive"]}}])
        assert reply["training_queued"] is True
    assert len(store.latest_annotations(7)) == 3
    assert store.pending_jobs() == 1
    r = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 7}})
    assert r.json()["training_queued"] is False


def test_webhook_errors_are_4xx(client):
    assert client.post("/webhook", json={"project": {"id": 1}}).status_code == 422
    r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}})
    assert r.status_code == 422 and "annotation" in r.json()["error"]
    r = client.post("/webhook", json={"action": "START_TRAINING"})
    assert r.status_code == 422 and "project" in r.json()["error"]


@pytest.mark.model
def test_odd_digits_long_numbers_and_lone_surrogates_get_4xx_not_500(client):
    for route in ("/setup", "/webhook", "/train", "/predict"):
        for project in ("\u00b2.1700000000", "\u00b9", "\u0663"):  # superscripts and an Arabic-Indic digit
            body = ('{"project": "' + project + '", "schema": "<View/>", "action": "START_TRAINING", "tasks": '
                    '[{"data": {"text": "hi"}}]}')
            r = client.post(route, content=body.encode(), headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (route, project, r.status_code)
    r = client.post("/predict", content=b'{"tasks": [' + b"9" * 5000 + b"]}",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "too long" in r.json()["error"]
    r = client.post("/webhook", content=b'{"action": "\\ud800", "project": {"id": 1}}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "surrogate" in r.json()["error"]
    r = client.post("/setup", json={"project": "7.1", "schema": SENTIMENT, "hostname": "http://localhost:8080",
                                    "access_token": "   "})
    assert r.status_code == 422 and "blank" in r.json()["error"]
    r = client.post("/predict", content=b'{"label_config": %s, "tasks": [{"data": {"text": "ok \\udc00 there"}}, '
                    b'{"data": {"text": "A fine film."}}]}' % json.dumps(SENTIMENT).encode(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200
    first, second = r.json()["results"]
    assert "surrogate" in first["error"] and second["result"]
    r = client.post("/predict", json={"tasks": [task(1, "x")], "label_config": SENTIMENT},
                    headers={"content-length": "\u00b2".encode("latin-1")})
    assert 400 <= r.status_code < 500


def test_setup_stores_configs_for_a_bounded_number_of_projects(tmp_path):
    """Unauthenticated /setup calls for made-up project ids grew the state database by 30 MB each."""
    settings = LabelLoopSettings(home=tmp_path / "home", push_predictions=False, max_projects=3)
    with TestClient(create_app(settings, train_in_background=False)) as c:
        for project in (1, 2, 3):
            assert c.post("/setup", json={"project": f"{project}.1", "schema": SENTIMENT}).status_code == 200
        refused = c.post("/setup", json={"project": "4.1", "schema": SENTIMENT})
        assert refused.status_code == 422 and "LABELLOOP_MAX_PROJECTS" in refused.json()["error"]
        assert c.post("/setup", json={"project": "2.1", "schema": SENTIMENT}).status_code == 200  # known ones go on
        big = SENTIMENT.replace("</View>", " " * 300_000 + "</View>")
        assert c.post("/setup", json={"project": "2.1", "schema": big}).status_code == 422
        assert c.app.state.service.store.projects() == [1, 2, 3]


def test_start_training_and_legacy_train_route_enqueue(client):
    setup_project(client, SENTIMENT)
    assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}}).json()["training_queued"]
    assert client.post("/train", json={"project": "7.1700000000"}).json()["training_queued"]
    assert client.app.state.service.store.pending_jobs() == 1


def test_training_failure_is_recorded_not_raised(client):
    store = client.app.state.service.store
    store.request_training(42, "START_TRAINING")
    run_queued_training(client)
    assert "no labeling config" in store.last_error(42)
    assert "labelloop_training_failures_total 1" in client.get("/metrics").text


@pytest.mark.model
def test_background_training_survives_restart(settings):
    annotation = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Negative"]}}]
    # A webhook is accepted, then the process dies before training.
    app = create_app(settings, train_in_background=False)
    with TestClient(app) as c:
        setup_project(c, SENTIMENT)
        annotate(c, 1, 1, "The box was brown.", annotation)
    app.state.service.store.close()
    # The restarted server finds the queued job and trains it in the background.
    app = create_app(settings)
    with TestClient(app) as c:
        deadline = time.monotonic() + 60
        while c.app.state.service.store.pending_jobs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.post("/setup", json={"project": "7.1", "schema": SENTIMENT}).json()["model_version"] == "labelloop-v1"
    # And a third start serves the saved model from disk.
    with TestClient(create_app(settings, train_in_background=False)) as c:
        (res,) = c.post("/predict", json={"tasks": [task(1, "The box was brown.")], "project": "7.1"}).json()["results"]
        assert res["model_version"] == "labelloop-v1"


def test_label_change_falls_back_to_zero_shot_instead_of_wrong_labels(client):
    setup_project(client, SENTIMENT)
    annotate(client, 1, 1, "Nice.", [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                      "value": {"choices": ["Positive"]}}])
    run_queued_training(client)
    changed = SENTIMENT.replace('<Choice value="Negative"/>', '<Choice value="Negative"/><Choice value="Mixed"/>')
    assert setup_project(client, changed) == "labelloop-v0"


def raw_request(port, path, headers, body=b""):
    import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body)
    return sock


def test_a_spoofed_forwarded_for_picks_no_throttle_key(tmp_path, live_server):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default: a local guesser rotating it escaped the
    throttle and could lock out any address. The servers believe it only from LABELLOOP_TRUSTED_PROXIES."""
    import httpx

    from labelloop.settings import forwarded

    port = live_server(LabelLoopSettings(home=tmp_path, basic_auth_user="ls", basic_auth_pass="pa55word"))
    bad = "Basic " + base64.b64encode(b"ls:wrong").decode()
    codes = [httpx.get(f"http://127.0.0.1:{port}/versions", timeout=10,
                       headers={"Authorization": bad, "X-Forwarded-For": f"203.0.113.{i}"}).status_code
             for i in range(12)]
    assert codes[:5] == [401] * 5 and 429 in codes[5:]  # the guesser is slowed whatever address it claims
    assert forwarded(LabelLoopSettings(trusted_proxies="10.0.0.5")) == {"proxy_headers": True,
                                                                        "forwarded_allow_ips": "10.0.0.5"}


def test_stalled_and_piled_up_bodies_are_dropped_not_held(tmp_path, live_server, monkeypatch):
    from labelloop.backend import protocol

    monkeypatch.setattr(protocol, "BODY_IDLE_SECONDS", 1.0)
    port = live_server(LabelLoopSettings(home=tmp_path, push_predictions=False, max_inflight_body_bytes=2048))
    json_head = {"Content-Type": "application/json", "Content-Length": "5000"}
    # Two unfinished uploads hold 2,000 bytes between them; a third may not pile more on.
    held = [raw_request(port, "/webhook", json_head, b" " * 1000) for _ in range(2)]
    time.sleep(0.3)
    third = raw_request(port, "/webhook", json_head, b" " * 1000)
    assert b" 503 " in third.recv(4096).split(b"\r\n")[0]
    # A body that stalls is dropped after the idle time, and its bytes are given back.
    for sock in held:
        assert b" 408 " in sock.recv(4096).split(b"\r\n")[0]
        sock.close()
    third.close()
    fine = raw_request(port, "/webhook", {"Content-Type": "application/json", "Content-Length": "2"}, b"{}")
    assert b" 422 " in fine.recv(4096).split(b"\r\n")[0]  # served again (422: the body lacks an action)
    fine.close()


@pytest.mark.model
def test_a_caller_that_hangs_up_stops_a_long_predict_within_a_chunk(tmp_path, live_server, caplog):
    port = live_server(LabelLoopSettings(home=tmp_path, push_predictions=False))
    body = json.dumps({"label_config": SENTIMENT, "tasks": [task(i, f"Review number {i}: a fine and moving film, "
                                                                     f"though long ({i}).") for i in range(3000)]})
    with caplog.at_level("INFO", logger="labelloop.backend"):
        sock = raw_request(port, "/predict", {"Content-Type": "application/json", "Content-Length": str(len(body))},
                           body.encode())
        time.sleep(2.0)
        sock.close()
        started = time.monotonic()
        deadline = started + 60
        while time.monotonic() < deadline and not any("the caller left" in r.message for r in caplog.records):
            time.sleep(0.2)
    left = [r.message for r in caplog.records if "the caller left" in r.message]
    assert left and "of 3000 tasks" in left[0]
    assert int(left[0].split("after ")[1].split(" of")[0]) < 3000


def test_basic_auth_guards_everything_but_health(tmp_path):
    settings = LabelLoopSettings(home=tmp_path, basic_auth_user="ls", basic_auth_pass="pa55word")
    with TestClient(create_app(settings, train_in_background=False)) as c:
        assert c.get("/health").status_code == 200
        for method, path in [("post", "/setup"), ("post", "/predict"), ("post", "/webhook"), ("get", "/versions"),
                             ("get", "/metrics")]:
            r = getattr(c, method)(path)
            assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]
        bad = base64.b64encode(b"ls:wrong").decode()
        assert c.get("/versions", headers={"Authorization": f"Basic {bad}"}).status_code == 401
        good = base64.b64encode(b"ls:pa55word").decode()
        assert c.get("/versions", headers={"Authorization": f"Basic {good}"}).status_code == 200


def test_password_guessing_is_throttled_per_address(tmp_path):
    """After 5 wrong passwords from one address, its next attempts are refused unchecked (429) with a growing
    wait, even with the right password; another address (Label Studio's) is not slowed down."""
    settings = LabelLoopSettings(home=tmp_path, basic_auth_user="ls", basic_auth_pass="pa55word")
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:wrong").decode()}
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:pa55word").decode()}
    app = create_app(settings, train_in_background=False)
    with TestClient(app, client=("203.0.113.9", 5000)) as attacker, \
            TestClient(app, client=("127.0.0.1", 6000)) as studio:
        codes = [attacker.get("/versions", headers=bad).status_code for _ in range(20)]
        assert codes[:5] == [401] * 5 and set(codes[6:]) == {429}
        refused = attacker.get("/versions", headers=good)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "try again in" in refused.json()["error"]
        assert studio.get("/versions", headers=good).status_code == 200
        assert attacker.get("/versions").status_code == 401  # no credentials at all: asked for them, not counted


def test_tokens_never_reach_logs_or_state(client, caplog, settings):
    caplog.set_level("DEBUG")
    setup_project(client, SENTIMENT)
    client.post("/predict", json={"tasks": [task(1, "hello")], "project": "7.1700000000"})
    assert "secret-token" not in caplog.text
    for path in settings.home.rglob("*"):
        if path.is_file():
            assert b"secret-token" not in path.read_bytes()


@pytest.mark.model
def test_metrics_are_prometheus_text(client):
    setup_project(client, SENTIMENT)
    client.post("/predict", json={"tasks": [task(1, "hello")], "project": "7.1700000000"})
    text = client.get("/metrics").text
    assert "# TYPE labelloop_predicted_tasks_total counter\nlabelloop_predicted_tasks_total 1\n" in text
    json.dumps(text)


@pytest.mark.model
def test_timer_policy_retrains_only_when_there_is_something_new(tmp_path):
    settings = LabelLoopSettings(home=tmp_path, push_predictions=False, retrain_every=0, retrain_interval=0.3)
    with TestClient(create_app(settings)) as c:
        setup_project(c, SENTIMENT)
        reply = annotate(c, 1, 1, "A sunny day.", [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                     "value": {"choices": ["Positive"]}}])
        assert reply["training_queued"] is False
        deadline = time.monotonic() + 30
        while "labelloop-v1" not in c.get("/versions").json()["versions"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.get("/versions").json()["versions"] == ["labelloop-v0", "labelloop-v1"]
        time.sleep(1.0)  # three more timer ticks, no new annotation: no new version
        assert c.get("/versions").json()["versions"] == ["labelloop-v0", "labelloop-v1"]


@pytest.mark.model
def test_a_long_predict_answers_every_task_in_the_order_sent(client):
    # Predicted shortest first in chunks, answered in request order: every seventh task has no text and must
    # get its error at its own place, whatever its length sorted it to.
    tasks = [{"id": i, "data": {}} if i % 7 == 0 else task(i, "A fine film. " * (1 + (i * 37) % 11))
             for i in range(300)]
    r = client.post("/predict", json={"tasks": tasks, "label_config": SENTIMENT})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 300
    assert [i for i, res in enumerate(results) if "error" in res] == list(range(0, 300, 7))
    assert all(res["result"] for i, res in enumerate(results) if i % 7)
