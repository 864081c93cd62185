"""What the backend sends where, and what it does when Label Studio hangs or fails: a recording fake host
stands in for a stranger's server, a socket that never answers for a hung Label Studio."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labelloop.errors import ConfigError, LabelStudioError
from labelloop.serving.clients import Clients
from labelloop.settings import LabelLoopSettings

from .conftest import SENTIMENT, choice, webhook

ENV_KEY = "the-real-environment-key-0123456789"


@pytest.fixture
def recorder():
    """An HTTP server on loopback that records every request's path and headers and answers 404."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self):
            seen.append((self.command, self.path, dict(self.headers)))
            self.send_response(404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "not here"}')

        do_GET = do_POST = do_PATCH = do_DELETE = _record

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


@pytest.fixture
def silent():
    """A socket that accepts connections and never answers: a hung Label Studio (close it to end the hang)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


@pytest.fixture
def silent_port(silent):
    return f"http://127.0.0.1:{silent.getsockname()[1]}"


def test_the_environment_key_never_goes_to_a_host_a_request_named(make_client, recorder, monkeypatch):
    url, seen = recorder
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ENV_KEY)
    c = make_client(push_predictions=True, label_studio_timeout=2)
    r = c.post("/setup", json={"project": "7.1", "schema": SENTIMENT, "hostname": url, "access_token": "its-own-token"})
    assert r.status_code == 200
    webhook(c, 1, 1, "A fine film.", choice("Positive"))
    c.app.state.worker.run_pending()
    assert seen, "the backend should have called the host that /setup named, with that request's token"
    for _, _, headers in seen:
        assert ENV_KEY not in str(headers)
        assert "its-own-token" in headers.get("Authorization", "")
    # The stranger's (failed) answer did not replace what the webhooks stored.
    assert len(c.app.state.service.store.latest_annotations(7)) == 1


def test_with_a_configured_url_a_requests_hostname_is_ignored(make_client, recorder, silent_port):
    url, seen = recorder
    c = make_client(push_predictions=True, label_studio_url=silent_port, label_studio_api_key=ENV_KEY,
                    label_studio_timeout=0.5)
    c.post("/setup", json={"project": "7.1", "schema": SENTIMENT, "hostname": url, "access_token": "x"})
    webhook(c, 1, 1, "A fine film.", choice("Positive"))
    c.app.state.worker.run_pending()
    assert seen == []


def test_clients_follow_the_rules():
    bare = Clients(LabelLoopSettings(label_studio_api_key=ENV_KEY), factory=lambda url, key, timeout: (url, key))
    assert bare.client_for(1) is None  # the key alone goes nowhere
    bare.remember(1, "http://ls.test", "setup-token")
    assert bare.client_for(1) == ("http://ls.test", "setup-token")
    fixed = Clients(LabelLoopSettings(label_studio_url="http://mine:8080", label_studio_api_key=ENV_KEY),
                    factory=lambda url, key, timeout: (url, key))
    fixed.remember(1, "http://evil.test", "setup-token")
    assert fixed.client_for(1) == ("http://mine:8080", ENV_KEY)


class MemoryBindings(dict):
    def bound_host(self, project_id):
        return self.get(project_id)

    def bind_host(self, project_id, host):
        self[project_id] = host


def test_a_project_stays_bound_to_the_label_studio_that_set_it_up():
    accepted = {"good-token"}
    clients = Clients(LabelLoopSettings(), factory=lambda url, key, timeout: (url, key),
                      bindings=(bindings := MemoryBindings()), verify=lambda client, pid: client[1] in accepted)
    clients.remember(1, "http://ls.test", "first-token")
    assert bindings == {1: "http://ls.test"}
    # A stranger's /setup can neither move the project nor swap in a token its Label Studio does not accept.
    with pytest.raises(ConfigError, match="served for the Label Studio at http://ls.test"):
        clients.remember(1, "http://evil.test", "attacker-token")
    clients.remember(1, "http://ls.test", "guessed-token")
    assert clients.client_for(1) == ("http://ls.test", "first-token")
    clients.remember(1, "http://ls.test", "good-token")  # a rotated token the bound host accepts
    assert clients.client_for(1) == ("http://ls.test", "good-token")
    with pytest.raises(ConfigError, match="blank"):
        clients.remember(2, "http://ls.test", "   ")
    # The operator's list moves a project, and only to listed hosts.
    listed = Clients(LabelLoopSettings(label_studio_hosts="http://ls.test, http://new-ls.test:8080"),
                     factory=lambda url, key, timeout: (url, key), bindings=bindings)
    listed.remember(1, "http://new-ls.test:8080/", "token")
    assert bindings[1] == "http://new-ls.test:8080"
    with pytest.raises(ConfigError, match="LABELLOOP_LABEL_STUDIO_HOSTS"):
        listed.remember(3, "http://evil.test", "token")


def test_a_hijacking_setup_is_refused_and_the_binding_survives_a_restart(make_client, recorder):
    url, seen = recorder
    c = make_client(push_predictions=True, label_studio_timeout=2)
    assert c.post("/setup", json={"project": "7.1", "schema": SENTIMENT, "hostname": url,
                                  "access_token": "owner-token"}).status_code == 200
    webhook(c, 1, 1, "A fine film.", choice("Positive"))
    hijack = {"project": "7.1", "schema": SENTIMENT, "hostname": "http://127.0.0.2:9", "access_token": "attacker"}
    r = c.post("/setup", json=hijack)
    assert r.status_code == 422 and url in r.json()["error"] and "LABELLOOP_LABEL_STUDIO_HOSTS" in r.json()["error"]
    assert len(c.app.state.service.store.latest_annotations(7)) == 1  # nothing replaced, nothing wiped
    restarted = make_client(push_predictions=True, label_studio_timeout=2)
    assert restarted.post("/setup", json=hijack).status_code == 422


@pytest.mark.model
def test_a_hung_label_studio_delays_only_its_own_project(make_client, silent, silent_port):
    c = make_client(push_predictions=True, label_studio_timeout=20, training_threads=2)
    service = c.app.state.service
    c.post("/setup", json={"project": "7.1", "schema": SENTIMENT, "hostname": silent_port, "access_token": "t"})
    c.post("/setup", json={"project": "8.1", "schema": SENTIMENT})
    webhook(c, 1, 1, "A fine film.", choice("Positive"), project=7)
    worker = service.worker()
    worker.start()
    try:
        time.sleep(0.5)  # project 7's training is now waiting on the silent Label Studio
        webhook(c, 2, 2, "A dull film.", choice("Negative"), project=8)
        service.learning.wake.set()
        deadline = time.monotonic() + 15
        while service.store.current_name(8) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.store.current_name(8) == "labelloop-v1"
        while len(service.store.running_jobs()) > 1 and time.monotonic() < deadline:  # 8's job ends after its save
            time.sleep(0.1)
        assert [p for p, _ in service.store.running_jobs()] == [7]
    finally:
        silent.close()  # Label Studio "comes back" refusing: project 7's training ends, and the threads with it
        worker.stop(timeout=60)


class FlakyLabelStudio:
    """Enough of the SDK's client for publishing; fails while ``down`` is set."""

    def __init__(self):
        self.down = True
        self.stored, self.version = [], None
        self.tasks = self
        self.projects = self

    def _check(self):
        if self.down:
            raise OSError("connection refused")

    def list(self, **kwargs):
        self._check()
        labelled = type("Task", (), {"id": 1, "data": {"text": "A fine film."}, "is_labeled": True, "annotations": [
            {"id": 1, "result": choice("Positive")}], "predictions_model_versions": []})
        open_ = type("Task", (), {"id": 2, "data": {"text": "A film."}, "is_labeled": False, "annotations": [],
                                  "predictions_model_versions": sorted(
                                      {p["model_version"] for p in self.stored if p["task"] == 2})})
        return type("Page", (), {"items": [labelled, open_]})

    def import_predictions(self, id, request):
        self._check()
        self.stored += request

    def update(self, id, model_version):
        self._check()
        self.version = model_version


def trained_once(make_client, monkeypatch, *, down: bool):
    """A backend that trained project 7 once and publishes to a fake Label Studio (down or up)."""
    c = make_client(push_predictions=True)
    service = c.app.state.service
    fake = FlakyLabelStudio()
    fake.down = down
    monkeypatch.setattr(service.clients, "client_for", lambda pid, timeout=None: fake)
    monkeypatch.setattr("labelloop.studio.lsclient.prediction_versions", lambda client, pid: {})
    c.post("/setup", json={"project": "7.1", "schema": SENTIMENT})
    webhook(c, 1, 1, "A fine film.", choice("Positive"))
    c.app.state.worker.run_pending()
    return service, fake


@pytest.mark.model
def test_a_failed_publish_is_retried_when_label_studio_answers_again(make_client, monkeypatch):
    service, fake = trained_once(make_client, monkeypatch, down=True)
    assert service.store.publish_pending(7)[0] == "labelloop-v1" and fake.version is None
    fake.down = False
    service.store.set_publish_pending(7, "labelloop-v1", after=0)  # its back-off has passed
    service.publisher.retry_due()
    assert fake.version == "labelloop-v1" and fake.stored[0]["model_version"] == "labelloop-v1"
    assert [p["task"] for p in fake.stored] == [2]  # the annotated task keeps what it was labelled beside
    assert service.store.publish_pending(7) == (None, None)
    with pytest.raises(LabelStudioError):
        fake.down = True
        service.publish(7, "labelloop-v1")


@pytest.mark.model
def test_an_unchanged_model_is_not_pushed_again_and_a_version_never_twice(make_client, monkeypatch):
    service, fake = trained_once(make_client, monkeypatch, down=False)
    assert [p["model_version"] for p in fake.stored] == ["labelloop-v1"]
    service.store.request_training(7, "ANNOTATION_UPDATED")  # nothing new to learn from: no version, no push
    service.worker().run_pending()
    assert [p["model_version"] for p in fake.stored] == ["labelloop-v1"]
    service.publish(7, "labelloop-v1")  # a rollback to a version Label Studio still holds
    assert len(fake.stored) == 1 and fake.version == "labelloop-v1"


@pytest.mark.model
def test_a_publish_overtaken_by_a_promotion_does_not_set_the_project_back(make_client, monkeypatch):
    c = make_client(push_predictions=True)
    service = c.app.state.service
    fake = FlakyLabelStudio()
    fake.down = False
    monkeypatch.setattr(service.clients, "client_for", lambda pid, timeout=None: fake)
    monkeypatch.setattr("labelloop.studio.lsclient.prediction_versions", lambda client, pid: {})
    c.post("/setup", json={"project": "7.1", "schema": SENTIMENT})
    webhook(c, 1, 1, "A fine film.", choice("Positive"))
    c.app.state.worker.run_pending()
    assert fake.version == "labelloop-v1"
    fake.version = "labelloop-v2"  # what a promotion in another process just published
    # ... and started serving while this publish was pushing:
    monkeypatch.setattr(service.predictions, "model_version", lambda pid: "labelloop-v2")
    service.publisher.publish(7, "labelloop-v1")
    assert fake.stored[-1]["model_version"] == "labelloop-v1" and fake.version == "labelloop-v2"


@pytest.mark.model
def test_a_publish_under_way_is_never_pushed_twice_by_the_retry_timer(make_client, monkeypatch):
    import threading

    service, fake = trained_once(make_client, monkeypatch, down=False)
    fake.stored.clear()
    pushing, release = threading.Event(), threading.Event()
    store_them = fake.import_predictions

    def slow_import(id, request):  # Label Studio takes its time storing them
        pushing.set()
        release.wait(10)
        store_them(id, request)

    fake.import_predictions = slow_import
    publishing = threading.Thread(target=service.publisher.publish, args=(7, "labelloop-v1"))
    publishing.start()
    assert pushing.wait(10)
    service.publisher.retry_due()  # the worker's timer, meanwhile: the version is owed but under way
    release.set()
    publishing.join(10)
    assert len(fake.stored) == 1 and service.store.publish_pending(7) == (None, None)


@pytest.mark.model
def test_a_hung_label_studio_costs_a_project_its_timeout_once_then_trainings_use_what_was_received(
        make_client, silent_port):
    c = make_client(push_predictions=False, label_studio_timeout=1)
    c.post("/setup", json={"project": "7.1", "schema": SENTIMENT, "hostname": silent_port, "access_token": "t"})
    webhook(c, 1, 1, "A fine film.", choice("Positive"))
    started = time.monotonic()
    c.app.state.worker.run_pending()
    first = time.monotonic() - started
    webhook(c, 2, 2, "A dull film.", choice("Negative"))
    started = time.monotonic()
    c.app.state.worker.run_pending()
    second = time.monotonic() - started
    assert first >= 1.0 and second < first / 2, (first, second)
    assert c.app.state.service.store.current_name(7) == "labelloop-v2"  # trained on what the webhooks stored


@pytest.mark.model
def test_owed_publishes_go_out_while_every_training_thread_is_busy(make_client, monkeypatch):
    import threading

    service, fake = trained_once(make_client, monkeypatch, down=True)
    fake.down = False
    service.store.set_publish_pending(7, "labelloop-v1", after=0)
    release = threading.Event()
    monkeypatch.setattr(service.learning, "fit", lambda pid, **_: release.wait(30))  # a training that hangs on Label Studio
    service.store.request_training(8, "START_TRAINING")
    worker = service.worker()
    worker.threads = 1
    worker.start()
    try:
        deadline = time.monotonic() + 15
        while fake.version is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake.version == "labelloop-v1"  # published by its own thread, not after the training
    finally:
        release.set()
        worker.stop(timeout=10)


@pytest.mark.model
def test_a_published_version_has_the_projects_pool_re_scored_and_a_shutdown_stops_it(make_client, monkeypatch):
    service, fake = trained_once(make_client, monkeypatch, down=True)
    started, stopped = [], []
    rescorer = service.publisher.rescorer
    assert rescorer is not None and rescorer.engine == "local"  # the default
    monkeypatch.setattr(rescorer, "start", lambda pid, version: started.append((pid, version)))
    monkeypatch.setattr(rescorer, "stop", lambda: stopped.append(True))
    assert started == []  # Label Studio was down: nothing serves yet
    fake.down = False
    service.publish(7, "labelloop-v1")
    assert started == [(7, "labelloop-v1")]
    service.close()
    assert stopped == [True]


def test_a_refill_that_breaks_never_stops_the_publish(tmp_path, caplog):
    """A pool's refill runs inside the publish: whatever it raises (here what pyarrow says of a damaged shard) is
    logged once, and the publish goes on to predict and push."""
    from labelloop.serving.service import ModelService

    service = ModelService(LabelLoopSettings(home=tmp_path, push_predictions=False))

    def broken(client, project_id, label_config):
        raise ValueError("Parquet magic bytes not found in footer")

    service.publisher.refill = broken
    with caplog.at_level("WARNING", logger="labelloop.serving.publish"):
        service.publisher._top_up(None, 7)
        service.publisher._top_up(None, 7)
    said = [r for r in caplog.records if "not refilled" in r.getMessage()]
    assert len(said) == 1 and "magic bytes" in said[0].getMessage() and said[0].exc_info
