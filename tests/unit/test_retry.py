"""The one backoff policy: jittered exponential waits, and a server's Retry-After honoured (Label Studio's
client and the LLM endpoint both)."""

import json

import httpx
import pytest

from labelloop.retry import Retry, retry_after


def test_waits_grow_to_a_cap_with_jitter_inside_its_bounds():
    waits = [list(Retry(attempts=6, base=1.0, cap=5.0, jitter=0.2).waits()) for _ in range(50)]
    assert all(len(w) == 5 for w in waits)
    for k, nominal in enumerate([1.0, 2.0, 4.0, 5.0, 5.0]):
        seen = [w[k] for w in waits]
        assert all(0.8 * nominal <= x <= 1.2 * nominal for x in seen)
        assert len(set(seen)) > 1  # clients that failed together do not come back together
    assert list(Retry(attempts=3, base=1.0, jitter=0.0).waits()) == [1.0, 2.0]


def test_retry_after_reads_seconds_and_dates_and_is_capped():
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after": "999"}, cap=60.0) == 60.0
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past: now
    assert retry_after({}) is None and retry_after({"Retry-After": "soon"}) is None


def test_the_llm_endpoint_waits_as_long_as_the_server_asks(monkeypatch):
    from labelloop import llm

    slept, calls = [], []
    monkeypatch.setattr(llm.engines.time, "sleep", slept.append)

    def server(request):
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"})
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}], "usage": {}})

    endpoint = llm.OpenAIEndpoint("http://127.0.0.1:1/v1", "m", http=httpx.Client(transport=httpx.MockTransport(server)))
    answer = endpoint._post("/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert answer["choices"][0]["message"]["content"] == "ok" and len(calls) == 2 and slept == [7.0]
    assert json.loads(calls[0].content)["messages"][0]["content"] == "hi"


def test_label_studio_calls_wait_as_long_as_label_studio_asks(monkeypatch):
    from label_studio_sdk.core.api_error import ApiError

    from labelloop.studio import lsclient

    slept, tries = [], []
    monkeypatch.setattr(lsclient.time, "sleep", slept.append)

    def busy():
        tries.append(1)
        if len(tries) < 3:
            raise ApiError(status_code=429, headers={"retry-after": "4"}, body={"detail": "throttled"})
        return "done"

    assert lsclient.call("listing", busy) == "done" and slept == [4.0, 4.0]
    with pytest.raises(Exception, match="throttled"):
        lsclient.call("listing", lambda: (_ for _ in ()).throw(
            ApiError(status_code=429, headers={}, body={"detail": "throttled"})), retry=lsclient.Retry(attempts=2))
