"""Requests an attacker or a broken client sends: each gets a 4xx (or a per-task error), never a 500."""

import json

import pytest

from .conftest import SENTIMENT, choice, webhook


def post_raw(client, path, body: bytes, content_type="application/json", **headers):
    return client.post(path, content=body, headers={"content-type": content_type, **headers})


def test_only_json_bodies_are_accepted_so_no_web_page_can_post_without_a_preflight(client):
    body = json.dumps({"project": "7.1", "schema": SENTIMENT, "hostname": "http://evil.test", "access_token": "t"})
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        r = post_raw(client, "/setup", body.encode(), kind)
        assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert post_raw(client, "/setup", body.encode(), "application/json; charset=utf-8").status_code == 200


def test_declared_length_over_the_limit_is_refused_before_reading(make_client):
    c = make_client(max_body_bytes=4096)
    r = c.post("/predict", content=b"{}", headers={"content-type": "application/json", "content-length": "999999999"})
    assert r.status_code == 413 and "LABELLOOP_MAX_BODY_BYTES" in r.json()["error"]
    big = json.dumps({"tasks": [{"data": {"text": "x" * 10_000}}]}).encode()
    assert post_raw(c, "/predict", big).status_code == 413


def test_tasks_per_request_are_capped(make_client):
    c = make_client(max_tasks_per_request=3)
    tasks = [{"id": i, "data": {"text": "hi"}} for i in range(4)]
    r = c.post("/predict", json={"tasks": tasks, "label_config": SENTIMENT})
    assert r.status_code == 413 and "labelloop preannotate" in r.json()["error"]


@pytest.mark.parametrize("path, body, fragment", [
    ("/predict", "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("/webhook", '{"action": ' + "[" * 3000 + "]" * 3000 + "}", "nested too deeply"),
    ("/webhook", '{"action": 5, "project": {"id": 7}}', "'action' must be a string"),
    ("/webhook", '{"action": "START_TRAINING", "project": {"id": 99999999999999999999999}}', "project"),
    ("/webhook", '{"action": "ANNOTATION_CREATED", "project": {"id": 7}, "task": {"id": 1, "data": {}}, '
                 '"annotation": {"id": 123456789012345678901234567890, "result": []}}', "annotation id"),
    ("/webhook", '{"action": "ANNOTATION_CREATED", "project": {"id": 7}, "task": {"id": 1, "data": {}}, '
                 '"annotation": {"id": 1, "result": {"not": "a list"}}}', "result"),
    ("/webhook", '{"action": "PROJECT_UPDATED", "project": {"id": 7, "label_config": ["x"]}}', "label_config"),
    ("/setup", '{"project": "7.1", "schema": {"xml": 1}}', "'schema' must be a string"),
    ("/setup", '{"project": "7.1", "schema": "<View/>", "hostname": 12}', "'hostname' must be a string"),
    ("/predict", '{"tasks": [{"data": {"text": "x"}}], "label_config": 3}', "'label_config' must be a string"),
    ("/predict", '{"tasks": [{"data": {"text": "x"}}], "project": [1]}', "'project'"),
])
def test_malformed_fields_are_4xx_that_say_what_to_send(client, path, body, fragment):
    r = post_raw(client, path, body.encode())
    assert 400 <= r.status_code < 500, r.text
    assert fragment in r.json()["error"]


def test_a_non_ascii_or_url_less_token_from_setup_is_refused_not_kept(client):
    r = client.post("/setup", json={"project": "7.1", "schema": SENTIMENT, "hostname": "http://ls.test",
                                    "access_token": "t\u00f6ken"})
    assert r.status_code == 422 and "ASCII" in r.json()["error"]
    r = client.post("/setup", json={"project": "7.1", "schema": SENTIMENT, "hostname": "file:///etc/passwd",
                                    "access_token": "token"})
    assert r.status_code == 422 and "http(s)" in r.json()["error"]


@pytest.mark.model
def test_a_lone_surrogate_fails_only_its_own_task(client):
    body = ('{"project": "7.1", "tasks": [{"id": 1, "data": {"text": "Lovely day"}}, '
            '{"id": 2, "data": {"text": "bad \\ud800 text"}}, {"id": 3, "data": {"text": "Awful, sad, horrible"}}]}')
    r = post_raw(client, "/predict", body.encode())
    assert r.status_code == 200
    first, bad, last = r.json()["results"]
    assert first["result"] and last["result"]
    assert bad["result"] == [] and "surrogate" in bad["error"]


@pytest.mark.model
def test_a_malformed_annotation_is_refused_at_the_webhook_and_never_blocks_training(client):
    store = client.app.state.service.store
    bad = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": ["Positive"]}]
    r = webhook(client, 1, 1, "A fine film.", bad)
    assert r.status_code == 422 and "'value' must be an object" in r.json()["error"]
    assert store.latest_annotations(7) == []
    # One that slipped in before (an older version stored anything) is skipped by training.
    store.upsert_annotation(7, 2, 2, {"text": "An old one."}, bad, cancelled=False)
    assert webhook(client, 3, 3, "A lovely film.", choice("Positive")).status_code == 200
    client.app.state.worker.run_pending()
    assert store.last_error(7) is None
    assert client.post("/setup", json={"project": "7.1", "schema": SENTIMENT}).json()["model_version"] == "labelloop-v1"
    assert "labelloop_refused_events_total 1" in client.get("/metrics").text


def test_a_webhook_label_config_that_cannot_be_served_is_not_stored(client):
    huge = SENTIMENT.replace('<Choice value="Negative"/>', "".join(f'<Choice value="L{i}"/>' for i in range(3000)))
    r = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 7, "label_config": huge}})
    assert r.status_code == 200
    assert client.app.state.service.store.label_config(7) == SENTIMENT
    r = client.post("/setup", json={"project": "7.1", "schema": huge})
    assert r.status_code == 422 and "up to 2,000" in r.json()["error"]


def test_metrics_say_what_they_count(client):
    text = client.get("/metrics").text
    assert "# HELP labelloop_webhook_events_total webhook events stored and acknowledged" in text
    assert "labelloop_process_info{pid=" in text and "labelloop_trainings_running 0" in text
