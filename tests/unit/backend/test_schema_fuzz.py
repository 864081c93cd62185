"""Schemathesis against the schema the backend serves: generated requests to every route get an answer below
500, whatever they hold (a bounded run: a few dozen cases per route)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from labelloop.backend.app import create_app
from labelloop.settings import LabelLoopSettings

schemathesis = pytest.importorskip("schemathesis")


def test_no_generated_request_gets_a_server_error(tmp_path):
    app = create_app(LabelLoopSettings(home=tmp_path, push_predictions=False), train_in_background=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/setup", "/predict", "/webhook", "/train", "/health", "/versions"}
    seen = []

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call()
            seen.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])

        check()
    assert len(seen) >= 6 * 10 and any(400 <= code < 500 for code in seen)
