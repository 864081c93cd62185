"""Durable state that can't be poisoned or wedged: keyed by instance and project, leased jobs, a full disk,
private files, and the files a crash leaves behind."""

import multiprocessing
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from labelloop.serving.store import Store

from .conftest import SENTIMENT, choice, webhook


def test_an_annotation_id_that_two_projects_use_never_moves_or_overwrites(tmp_path):
    store = Store(tmp_path)
    store.upsert_annotation(1, 10, 5, {"text": "sentiment text"}, choice("Positive"), cancelled=False)
    store.upsert_annotation(2, 20, 5, {"text": "ner text"}, [], cancelled=False)
    assert [r.data["text"] for r in store.latest_annotations(1)] == ["sentiment text"]
    assert [r.data["text"] for r in store.latest_annotations(2)] == ["ner text"]
    store.replace_annotations(2, [])  # a pull of project 2 leaves project 1 alone
    assert len(store.latest_annotations(1)) == 1
    store.delete_annotations(2, [5])
    assert len(store.latest_annotations(1)) == 1
    other = Store(tmp_path, instance="http://other-label-studio:8080")  # a second Label Studio on one home
    other.upsert_annotation(1, 10, 5, {"text": "other server"}, [], cancelled=False)
    assert [r.data["text"] for r in store.latest_annotations(1)] == ["sentiment text"]


def test_a_webhook_flood_across_projects_stores_every_annotation_for_its_project(client):
    for i in range(60):
        assert webhook(client, i % 20, i, f"text {i}", choice("Positive"), project=7 + i % 3).status_code == 200
    store = client.app.state.service.store
    assert sorted(len(store.latest_annotations(p)) for p in (7, 8, 9)) == [20, 20, 20]


def test_state_files_are_private(tmp_path):
    store = Store(tmp_path / "home")
    assert stat.S_IMODE(os.stat(tmp_path / "home").st_mode) == 0o700
    store.upsert_annotation(1, 1, 1, {"text": "secret task text"}, [], cancelled=False)
    for name in ("state.sqlite3", "state.sqlite3-wal"):
        assert stat.S_IMODE(os.stat(tmp_path / "home" / name).st_mode) == 0o600, name


def test_a_full_disk_is_a_503_that_says_so_and_nothing_is_half_stored(client):
    store = client.app.state.service.store
    webhook(client, 1, 1, "first", choice("Positive"))
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")  # SQLite now answers SQLITE_FULL, as on a full disk
    r = webhook(client, 2, 2, "word " * 50_000, choice("Positive"))
    assert r.status_code == 503 and "full" in r.json()["error"] and "free disk space" in r.json()["error"]
    store._db.execute("PRAGMA max_page_count=1073741823")
    assert [a.annotation_id for a in store.latest_annotations(7)] == [1]


LEASE_WORKER = """
import os, sys, time
from pathlib import Path
from labelloop.serving.store import Store
home, log, stop = sys.argv[1:4]
store = Store(Path(home))
Path(f"{log}.ready.{os.getpid()}").touch()
while not Path(stop).exists():
    job = store.claim_job()
    if job is None:
        time.sleep(0.01)
        continue
    started = time.time()
    time.sleep(0.05)  # training
    with open(log, "a") as f:
        f.write(f"{job.project_id} {started} {time.time()} {os.getpid()}\\n")
    store.finish_job(job)
"""


def test_two_processes_on_one_home_never_train_one_project_at_once(tmp_path):
    store = Store(tmp_path)
    log, stop = tmp_path / "trainings.log", tmp_path / "stop"
    workers = [subprocess.Popen([sys.executable, "-c", LEASE_WORKER, str(tmp_path), str(log), str(stop)])
               for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("trainings.log.ready.*"))) < 2 and time.monotonic() < deadline:
        assert all(w.poll() is None for w in workers), "a worker process died at start-up"
        time.sleep(0.05)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # requests keep arriving while trainings run
        for project in (1, 2, 3, 4):  # more projects than processes: both always find work
            store.request_training(project, "ANNOTATION_CREATED")
        time.sleep(0.01)
    stop.touch()
    for w in workers:
        w.wait(30)
    runs = [line.split() for line in log.read_text().splitlines()]
    assert len({pid for *_, pid in runs}) == 2 and len(runs) > 10, runs
    for project in ("1", "2", "3", "4"):
        spans = sorted((float(a), float(b)) for p, a, b, _ in runs if p == project)
        assert all(next_start >= end for (_, end), (next_start, _) in zip(spans, spans[1:])), project


def test_start_up_reclaims_only_the_jobs_of_dead_processes(tmp_path):
    store = Store(tmp_path)
    for project in (1, 2):
        store.request_training(project, "START_TRAINING")
    alive, dead = store.claim_job(), store.claim_job()
    ctx = multiprocessing.get_context("spawn")
    gone = ctx.Process(target=time.sleep, args=(0,))
    gone.start()
    gone.join()
    store._db.execute("UPDATE jobs SET holder=? WHERE project_id=?", (f"{os.uname().nodename}:{gone.pid}",
                                                                      dead.project_id))
    assert Store(tmp_path).reclaim_dead_jobs() == 1  # another process starting up
    job = store.claim_job()
    assert job is not None and job.project_id == dead.project_id
    assert store.claim_job() is None  # the live holder's job stays with it
    store.finish_job(alive)


def _train(client, texts_labels, start_id=0):
    for i, (text, label) in enumerate(texts_labels):
        webhook(client, start_id + i, start_id + i, text, choice(label))
    client.app.state.worker.run_pending()


EXAMPLES = [("A wonderful, moving film.", "Positive"), ("Dull and far too long.", "Negative")]


@pytest.mark.model
def test_a_version_folder_without_its_row_never_wedges_training(client):
    models = client.app.state.service.store.models_dir / "7"
    (models / "labelloop-v1").mkdir(parents=True)  # kill -9 between saving and recording
    (models / "labelloop-v2.partial-dead").mkdir()
    _train(client, EXAMPLES)
    version = client.post("/setup", json={"project": "7.1", "schema": SENTIMENT}).json()["model_version"]
    assert version == "labelloop-v2"
    assert not (models / "labelloop-v2.partial-dead").exists()
    _train(client, EXAMPLES, start_id=10)
    assert client.post("/setup", json={"project": "7.1", "schema": SENTIMENT}).json()["model_version"] == "labelloop-v3"


@pytest.mark.model
def test_a_truncated_or_mis_shaped_model_file_falls_back_to_the_last_good_version(client):
    _train(client, EXAMPLES)
    _train(client, EXAMPLES, start_id=10)
    service = client.app.state.service
    broken = service.store.models_dir / "7" / "labelloop-v2" / "control0.npz"
    broken.write_bytes(broken.read_bytes()[:40])
    service.registry._cache.clear()
    assert client.post("/setup", json={"project": "7.1", "schema": SENTIMENT}).json()["model_version"] == "labelloop-v1"
    r = client.post("/predict", json={"project": "7.1", "tasks": [{"id": 1, "data": {"text": "Great fun"}}]})
    assert r.status_code == 200 and r.json()["results"][0]["model_version"] == "labelloop-v1"
    problems = client.get("/versions").json()["problems"]
    assert "labelloop-v2" in problems and "BadZipFile" in problems["labelloop-v2"]
    # Wrong shapes in a well-formed file are caught the same way.
    v1 = service.store.models_dir / "7" / "labelloop-v1" / "control0.npz"
    np.savez(v1, weight=np.zeros((3, 2)), bias=np.zeros(2), prior_weight=np.zeros((3, 2)))
    service.registry._cache.clear()
    assert client.post("/setup", json={"project": "7.1", "schema": SENTIMENT}).json()["model_version"] == "labelloop-v0"
    r = client.post("/predict", json={"project": "7.1", "tasks": [{"id": 1, "data": {"text": "Great fun"}}]})
    assert r.status_code == 200 and r.json()["results"][0]["result"]
    _train(client, EXAMPLES, start_id=20)  # and the next training serves again
    assert client.post("/setup", json={"project": "7.1", "schema": SENTIMENT}).json()["model_version"] == "labelloop-v3"


@pytest.mark.model
def test_old_model_folders_are_pruned_but_the_rollback_target_stays(make_client):
    c = make_client(keep_versions=2)
    c.post("/setup", json={"project": "7.1", "schema": SENTIMENT})
    for k in range(5):
        _train(c, EXAMPLES, start_id=10 * k)
    folder = c.app.state.service.store.models_dir / "7"
    assert sorted(p.name for p in folder.iterdir()) == ["labelloop-v4", "labelloop-v5"]
    service = c.app.state.service
    assert service.rollback(7) == "labelloop-v4"
    _train(c, EXAMPLES, start_id=100)  # v6 serves; v4 (its rollback target... is v5) and the newest stay
    assert sorted(p.name for p in folder.iterdir()) == ["labelloop-v5", "labelloop-v6"]
    assert c.get("/versions").json()["versions"] == ["labelloop-v0", "labelloop-v5", "labelloop-v6"]


def test_a_restarted_container_with_the_same_host_and_pid_does_not_keep_a_dead_holders_lease(tmp_path):
    """After a kill -9 the container restarts: same host name, and the new process is PID 1 again (here: our own
    PID), but it is a different process (another start time) or another boot: the old lease is dead."""
    from labelloop.serving import jobs

    store = Store(tmp_path)
    store.request_training(1, "START_TRAINING")
    store.request_training(2, "START_TRAINING")
    host, pid = os.uname().nodename, os.getpid()
    here = jobs.this_holder()
    assert jobs.holder_alive(here)
    earlier_process = f"{host}:{pid}:{jobs._boot_id()}:1"  # our PID, but a process that started at tick 1
    earlier_boot = f"{host}:{pid}:00000000-0000-0000-0000-000000000000:{jobs.start_ticks(pid)}"
    assert not jobs.holder_alive(earlier_process) and not jobs.holder_alive(earlier_boot)
    store._db.execute("UPDATE jobs SET holder=?, started_at=? WHERE project_id=1", (earlier_process, time.time()))
    store._db.execute("UPDATE jobs SET holder=?, started_at=? WHERE project_id=2", (earlier_boot, time.time()))
    assert Store(tmp_path).reclaim_dead_jobs() == 2
    assert {store.claim_job().project_id, store.claim_job().project_id} == {1, 2}


def test_a_lease_without_a_heartbeat_expires_and_any_process_takes_the_job_over(tmp_path, monkeypatch):
    from labelloop.serving import jobs

    store = Store(tmp_path)
    store.request_training(5, "START_TRAINING")
    # Another host's process took the job, then died: nothing here can ask whether it lives.
    gone = time.time() - jobs.LEASE_SECONDS - 1
    store._db.execute("UPDATE jobs SET holder='other-host:1:x:1', started_at=?, heartbeat_at=? WHERE project_id=5",
                      (gone, gone))
    assert store.running_jobs() == []  # /metrics no longer counts it as running
    job = store.claim_job()
    assert job is not None and job.project_id == 5
    # A live holder that keeps beating is never taken over.
    assert store.claim_job() is None
    monkeypatch.setattr(jobs, "LEASE_SECONDS", 0.5)
    time.sleep(0.3)
    assert store.heartbeat() == 1
    time.sleep(0.3)
    assert store.claim_job() is None and [p for p, _ in store.running_jobs()] == [5]
    # A holder whose lease lapsed does not release the job another process took over.
    store._db.execute("UPDATE jobs SET holder='other-host:2:x:1', heartbeat_at=? WHERE project_id=5", (time.time(),))
    store.finish_job(job)
    assert [p for p, _ in store.running_jobs()] == [5]


def test_a_deeply_nested_meta_json_marks_the_version_broken_instead_of_failing_requests(tmp_path):
    from labelloop.serving.versions import UNTRAINED_VERSION, VersionRegistry

    store = Store(tmp_path)
    folder = store.models_dir / "1" / "labelloop-v1"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("[" * 200_000 + "]" * 200_000)
    store.add_version(1, 1, "labelloop-v1", folder, 3)
    assert store.versions(1)[0].audit == {}
    registry = VersionRegistry(store, None)
    assert registry.current(1).version == UNTRAINED_VERSION
    assert "RecursionError" in registry.problems(1)["labelloop-v1"]


def test_a_copied_home_reads_and_prunes_its_own_model_folders(tmp_path):
    import shutil

    from labelloop.serving.versions import VersionRegistry

    original = tmp_path / "original"
    store = Store(original)
    for number in (1, 2):
        folder = store.models_dir / "1" / f"labelloop-v{number}"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text("{}")
        store.add_version(1, number, f"labelloop-v{number}", folder, number)
    # A home from before relative paths: the first row still absolute.
    store._db.execute("UPDATE versions SET path=? WHERE number=1", (str(store.models_dir / "1" / "labelloop-v1"),))
    store.close()
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    restored = Store(copy)
    assert [v.path for v in restored.versions(1)] == [copy / "models/1/labelloop-v1", copy / "models/1/labelloop-v2"]
    for number in (3, 4, 5):
        folder = restored.models_dir / "1" / f"labelloop-v{number}"
        folder.mkdir(parents=True)
        restored.add_version(1, number, f"labelloop-v{number}", folder, number)
    VersionRegistry(restored, None, keep=2)._prune(1)
    assert not (copy / "models/1/labelloop-v1").exists()
    assert (original / "models/1/labelloop-v1").exists() and (original / "models/1/labelloop-v2").exists()
