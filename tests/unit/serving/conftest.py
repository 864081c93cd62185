"""A backend app on the packaged encoder, and helpers that speak Label Studio's protocol to it."""

import pytest
from fastapi.testclient import TestClient

from labelloop.backend.app import create_app
from labelloop.settings import LabelLoopSettings

SENTIMENT = """<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""


def choice(label: str) -> list:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def webhook(client, annotation_id, task_id, text, result, *, project=7, action="ANNOTATION_CREATED"):
    return client.post("/webhook", json={
        "action": action, "project": {"id": project}, "task": {"id": task_id, "data": {"text": text}},
        "annotation": {"id": annotation_id, "task": task_id, "result": result, "was_cancelled": False}})


@pytest.fixture
def make_client(tmp_path):
    """``make_client(**settings)``: a started app (no background training) on a fresh home."""
    opened = []

    def make(**overrides):
        settings = LabelLoopSettings(**{"home": tmp_path / "home", "push_predictions": False, **overrides})
        client = TestClient(create_app(settings, train_in_background=False))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    c = make_client()
    assert c.post("/setup", json={"project": "7.1", "schema": SENTIMENT}).status_code == 200
    return c
