"""The pool against real engines: a local Ray (started here, bound to 127.0.0.1, fractional CPUs per actor) gives
the scores the in-process engine gives, a killed Ray job resumes and leaves no process, and the working set is
refilled into a real Label Studio with predictions embedded and the labels joined back to the pool's ids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from labelloop.pool.corpus import Pool, add_corpus
from labelloop.pool.jobs import Job, read_scores
from labelloop.pool.scoring import STUB, ScorerSpec, score_pool
from labelloop.pool.working_set import POOL_ID, SCORE_FIELD, labels, refill, working_set
from labelloop.serving.service import ModelService
from labelloop.settings import LabelLoopSettings
from labelloop.studio import lsclient
from tests.integration.conftest import labelloop_cli

ray = pytest.importorskip("ray")

CONFIG = """<View><Text name="text" value="$text"/><Choices name="topic" toName="text">
<Choice value="sport"/><Choice value="cooking"/></Choices></View>"""
WORDS = {"sport": ["goal", "match", "striker", "league", "referee", "tennis"],
         "cooking": ["oven", "recipe", "flour", "simmer", "garlic", "bake"]}


def corpus(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        words = WORDS["sport" if i % 2 else "cooking"]
        rows.append({"text": f"{words[i % 6]} and {words[(i // 6) % 6]}, story {i}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def project_home(home: Path) -> Path:
    ModelService(LabelLoopSettings(home=home, push_predictions=False)).store.save_label_config(1, CONFIG)
    return home


@pytest.fixture(autouse=True)
def deadline():
    """A hard limit per test: a hung engine fails the test instead of the run."""
    def expired(signum, frame):
        raise TimeoutError("the test ran past its 420 s limit")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(420)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def test_ray_and_the_in_process_engine_give_the_same_scores(tmp_path, local_ray):
    source = corpus(tmp_path / "c.jsonl", 300)
    for name in ("here", "ray"):
        add_corpus(project_home(tmp_path / name), 1, source, shard_rows=80)
    stub = {name: ScorerSpec(str(tmp_path / name), 1, kind=STUB, labels=("sport", "cooking")) for name in ("here", "ray")}
    here = score_pool(tmp_path / "here", 1, spec=stub["here"], batch_size=32)
    there = score_pool(tmp_path / "ray", 1, engine="ray", spec=stub["ray"], batch_size=32, workers=2,
                       cpus_per_worker=0.5)
    assert here.scored == there.scored == 300 and there.state == "done" and there.shards_done == 4
    columns = ("id", "label", "confidence", "probs", "model_version")
    assert (read_scores(Pool(tmp_path / "here", 1), "stub", columns).to_pylist()
            == read_scores(Pool(tmp_path / "ray", 1), "stub", columns).to_pylist())
    # The project's own model (the packaged encoder, loaded once per actor) scores the same on both engines.
    model_here = score_pool(tmp_path / "here", 1, batch_size=64)
    model_ray = score_pool(tmp_path / "ray", 1, engine="ray", batch_size=64, workers=2)
    a = read_scores(Pool(tmp_path / "here", 1), model_here.version, ("id", "label", "probs")).to_pylist()
    b = read_scores(Pool(tmp_path / "ray", 1), model_ray.version, ("id", "label", "probs")).to_pylist()
    assert [r["id"] for r in a] == [r["id"] for r in b] and [r["label"] for r in a] == [r["label"] for r in b]
    assert all(x == pytest.approx(y, abs=1e-4) for ra, rb in zip(a, b) for x, y in zip(ra["probs"], rb["probs"]))


def session_processes(sid: int) -> list[str]:
    rows = subprocess.run(["ps", "-eo", "pid=,sid=,comm="], capture_output=True, text=True).stdout.splitlines()
    return [r for r in rows if r.split()[1:2] == [str(sid)]]


def test_a_killed_ray_job_resumes_with_what_it_had_not_finished_and_leaves_no_process(tmp_path):
    home = project_home(tmp_path / "home")
    add_corpus(home, 1, corpus(tmp_path / "c.jsonl", 3000), shard_rows=100)
    env = {**os.environ, "LABELLOOP_HOME": str(home)}
    command = [sys.executable, "-m", "labelloop.cli", "pool", "score", "--project", "1", "--engine", "ray",
               "--workers", "2", "--batch-size", "50"]
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    job = Job(Pool(home, 1), "labelloop-v0")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(job.folder.glob("part-*.parquet")) and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    finished = len(list(job.folder.glob("part-*.parquet")))
    assert 0 < finished < 30, (tmp_path / "first.log").read_text()[-2000:]
    deadline = time.monotonic() + 60  # Ray's workers notice their raylet is gone and exit
    while session_processes(first.pid) and time.monotonic() < deadline:
        time.sleep(1)
    assert not session_processes(first.pid)
    again = labelloop_cli(env)(*command[3:])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "done: 3,000 of 3,000 texts" in again.stdout
    state = json.loads((job.folder / "score.json").read_text())
    assert state["state"] == "done" and state["shards_done"] == 30
    assert read_scores(Pool(home, 1), "labelloop-v0", ("id",)).num_rows == 3000
    assert not list(job.folder.glob("*.partial"))


def test_the_working_set_is_refilled_in_label_studio_and_its_labels_come_back_to_the_pool(tmp_path, ls):
    from labelloop.audit import in_audit

    project = ls.projects.create(title="pool", label_config=CONFIG)
    home = tmp_path / "home"
    # What the backend keeps when it is connected to the project: its labeling config.
    ModelService(LabelLoopSettings(home=home, push_predictions=False)).store.save_label_config(project.id, CONFIG)
    add_corpus(home, project.id, corpus(tmp_path / "c.jsonl", 400), shard_rows=100)
    cold = refill(ls, home, project.id, size=30, audit_share=0.2, label_config=CONFIG, chunk=12, pace=0.0)
    assert (cold.imported, cold.chunks, cold.version) == (30, 3, None)  # no scores yet: a random draw
    held, open_ = working_set(ls, project.id)
    assert open_ == 30 and len(held) == 30
    tasks = list(ls.tasks.list(project=project.id, fields="all"))
    assert all(POOL_ID in t.data and "text" in t.data and not t.predictions for t in tasks)
    assert sum(in_audit(project.id, t.data[POOL_ID], 0.2) for t in tasks) == cold.audit == 6  # by pool id

    # Annotators label ten; a refill after a scoring tops the project up again, least confident first.
    for task in tasks[:10]:
        label = "sport" if any(w in task.data["text"] for w in WORDS["sport"]) else "cooking"
        ls.annotations.create(id=task.id, project=project.id, result=[
            {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [label]}}])
    scored = score_pool(home, project.id, batch_size=64)
    topped = refill(ls, home, project.id, size=30, audit_share=0.2, label_config=CONFIG, chunk=500, pace=0.0)
    assert topped.open_before == 20 and topped.imported == 10 and topped.version == scored.version
    fresh = [t for t in ls.tasks.list(project=project.id, fields="all") if t.data[POOL_ID] not in held]
    assert len(fresh) == 10 and all(SCORE_FIELD in t.data for t in fresh)
    assert all(t.predictions for t in fresh)
    for p in (p for t in fresh for p in t.predictions):
        p = p if isinstance(p, dict) else p.model_dump()
        assert p["model_version"] == scored.version and 0 <= p["score"] <= 1 and p["result"][0]["value"]["choices"]
    joined = labels(ls, project.id, CONFIG)
    assert len(joined) == 10 and {j["pool_id"] for j in joined} <= set(held)
    texts = Pool(home, project.id).texts([j["pool_id"] for j in joined])
    assert all((j["label"] == "sport") == any(w in texts[j["pool_id"]] for w in WORDS["sport"]) for j in joined)


def test_the_pools_record_of_what_label_studio_holds_is_trusted_only_while_label_studio_agrees(
        tmp_path, ls, monkeypatch):
    """A refill lists only the open tasks and reads which pool ids the labelled ones hold from the pool's record,
    checked against Label Studio's count; a task deleted by hand or an import killed after it was recorded makes
    it list the project once and rewrite the record."""
    from labelloop.pool.working_set import RECORD

    project = ls.projects.create(title="pool record", label_config=CONFIG)
    home = project_home(tmp_path / "home")
    add_corpus(home, project.id, corpus(tmp_path / "c.jsonl", 300), shard_rows=100)
    pool = Pool(home, project.id)
    refill(ls, home, project.id, size=20, audit_share=0.0, label_config=CONFIG, pace=0.0)
    tasks = list(ls.tasks.list(project=project.id, fields="all"))
    for task in tasks[:12]:
        ls.annotations.create(id=task.id, project=project.id, result=[
            {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": ["sport"]}}])
    ls.projects.import_tasks(id=project.id, request=[{"text": "a task of the project's own, not from the pool"}])

    listed = []
    real = lsclient.iter_tasks

    def spy(*args, **kwargs):
        listed.append(kwargs.get("filters"))
        return real(*args, **kwargs)

    monkeypatch.setattr(lsclient, "iter_tasks", spy)
    everything = working_set(ls, project.id)  # no pool given: every task listed
    assert everything == ({t.data[POOL_ID] for t in tasks}, 8) and listed == [[lsclient.OPEN], None]
    listed.clear()
    assert working_set(ls, project.id, pool) == everything and listed == [[lsclient.OPEN]]  # the record is trusted

    # A labelled task deleted by hand: Label Studio counts one pool task less, so the project is listed again.
    ls.tasks.delete(id=tasks[0].id)
    listed.clear()
    after_delete = working_set(ls, project.id, pool)
    assert after_delete == (everything[0] - {tasks[0].data[POOL_ID]}, 8) and listed == [[lsclient.OPEN], None]
    assert set((pool.folder / RECORD).read_text().split()) == after_delete[0]
    assert (pool.folder / RECORD).stat().st_mode & 0o077 == 0

    # An import killed after its texts were recorded: the record is ahead of Label Studio, and is rewritten.
    with open(pool.folder / RECORD, "a") as f:
        f.write("never-imported\n")
    listed.clear()
    assert working_set(ls, project.id, pool) == after_delete and listed == [[lsclient.OPEN], None]
    listed.clear()
    assert working_set(ls, project.id, pool) == after_delete and listed == [[lsclient.OPEN]]

    # The next refill imports only texts Label Studio does not hold, and records them.
    monkeypatch.setattr(lsclient, "iter_tasks", real)
    topped = refill(ls, home, project.id, size=20, audit_share=0.0, label_config=CONFIG, pace=0.0)
    assert topped.imported == 12 and topped.open_before == 8
    ids = [t.data.get(POOL_ID) for t in ls.tasks.list(project=project.id, fields="all") if POOL_ID in t.data]
    assert len(ids) == len(set(ids)) == 31 and set((pool.folder / RECORD).read_text().split()) == set(ids)


def test_the_backend_refills_a_drained_working_set_from_the_pool(tmp_path, ls, start_backend):
    """Annotators drain the working set: the backend tops it up from the pool within 30 s though nothing trained,
    and before the publish of a retrain, where the texts it brought get the new version's predictions."""
    from labelloop.studio.projects import connect_backend
    from tests.integration.conftest import wait_for

    project = ls.projects.create(title="pool refilled by the backend", label_config=CONFIG)
    add_corpus(tmp_path / "backend0", project.id, corpus(tmp_path / "c.jsonl", 300), shard_rows=100)
    backend = start_backend(LABELLOOP_WORKING_SET="20", LABELLOOP_RETRAIN_EVERY="0", LABELLOOP_AUDIT_SHARE="0",
                            LABELLOOP_POOL_RESCORE="off")
    first = refill(ls, tmp_path / "backend0", project.id, size=20, audit_share=0.0, label_config=CONFIG, pace=0.0)
    assert first.imported == 20
    ml = connect_backend(ls, project.id, backend.url)

    def drain(count: int) -> None:
        open_tasks = [t for t in ls.tasks.list(project=project.id, fields="all") if not t.is_labeled]
        for task in open_tasks[:count]:
            label = "sport" if any(w in task.data["text"] for w in WORDS["sport"]) else "cooking"
            ls.annotations.create(id=task.id, project=project.id, result=[
                {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [label]}}])

    def check(total: int, version: str) -> bool:
        """Whether the project holds ``total`` distinct pool texts, 20 of them open, each open one predicted by
        ``version`` (the new ones too: the refill runs before the publish predicts the open tasks)."""
        now = list(ls.tasks.list(project=project.id, fields="all"))
        ids = [t.data[POOL_ID] for t in now]
        assert len(set(ids)) == len(ids)  # none of the texts it brought was held already
        open_tasks = [t for t in now if not t.is_labeled]
        return len(now) == total and len(open_tasks) == 20 and all(
            version in [(p if isinstance(p, dict) else p.model_dump())["model_version"] for p in t.predictions]
            for t in open_tasks)

    drain(11)  # 9 open: under half the working set; nothing trains (retraining waits for the Train button)
    wait_for(lambda: check(31, "labelloop-v0"), timeout=120, what="the backend's refill and its publish")

    drain(11)
    ls.ml.train(id=ml.id)
    wait_for(lambda: ls.projects.get(id=project.id).model_version == "labelloop-v1", timeout=240,
             what="the retrained version to be published")
    # Within 30 s of the first import the publish leaves the refill to the next look (one import per 30 s).
    wait_for(lambda: check(42, "labelloop-v1"), timeout=120, what="the second refill and its publish")
    assert "labelloop_refilled_tasks_total 22" in httpx.get(backend.url + "/metrics").text
