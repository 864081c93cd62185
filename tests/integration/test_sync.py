"""SDK scripts against a real Label Studio: import, bulk pre-annotation (surviving a restart), export."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

from labelloop.audit import in_audit
from labelloop.data.dataset import ExportConfig, export_dataset, frozen_test_path
from labelloop.studio import lsclient
from labelloop.studio.importing import import_tasks
from labelloop.studio.projects import create_project
from labelloop.templates import label_config
from labelloop.workflows.preannotation import BackendPredictor, preannotate
from tests.integration.conftest import wait_for

SENT = label_config("sentiment")
ADJ = ["wonderful", "dull", "clever", "clumsy", "moving", "tedious", "charming", "bleak", "witty", "flat"]
NOUN = ["plot", "cast", "score", "ending", "script", "pacing", "dialogue", "camera work", "humour", "finale"]


def texts(n: int) -> list[str]:
    return [f"Review {i}: the {NOUN[i % 10]} felt {ADJ[(i // 10) % 10]} and the {NOUN[(i // 100) % 10]} "
            f"was {ADJ[(i * 7) % 10]}." for i in range(n)]


def versions_per_task(ls, project_id: int, version: str) -> Counter:
    counts = Counter()
    for task in lsclient.iter_tasks(ls, project_id, fields="all"):
        preds = [p if isinstance(p, dict) else p.model_dump() for p in task.predictions or []]
        counts[task.id] = sum(p["model_version"] == version for p in preds)
    return counts


def test_import_skips_exact_and_near_duplicates_and_reruns_cleanly(ls, tmp_path):
    project = create_project(ls, "import", SENT, uncertainty_sampling=False)
    rows = [{"text": "The plot was gripping from start to finish and I loved the cast."},
            {"text": "the plot  was gripping from START to finish and I loved the cast."},  # exact after normalizing
            {"text": "The plot was gripping from start to end and I loved the cast."},  # near
            {"text": "Completely unrelated: the soup was cold."}]
    report = import_tasks(ls, project.id, rows, progress=False)
    assert (report.imported, len(report.exact), len(report.near)) == (2, 1, 1)
    again = import_tasks(ls, project.id, rows + [{"text": "A brand new review."}], progress=False)
    assert (again.imported, len(again.exact), len(again.near)) == (1, 3, 1)
    flagged = import_tasks(ls, project.id, rows[:1], duplicates="flag", progress=False)
    assert flagged.imported == 1
    data = [t.data for t in lsclient.iter_tasks(ls, project.id)]
    assert len(data) == 4 and data[-1]["duplicate_of"].startswith("task ")


class HeldPredictor:
    """The backend's predictions, except that the ``hold_at``-th batch waits until the test lets it go: the
    Label Studio restart then lands in the middle of the run however fast predicting is."""

    def __init__(self, inner: BackendPredictor, hold_at: int) -> None:
        self.inner, self.hold_at, self.calls = inner, hold_at, 0
        self.held, self.release = threading.Event(), threading.Event()

    def model_version(self, project_id, label_config):
        return self.inner.model_version(project_id, label_config)

    def predict(self, tasks, project_id, label_config):
        self.calls += 1
        if self.calls == self.hold_at:
            self.held.set()
            assert self.release.wait(timeout=300)
        return self.inner.predict(tasks, project_id, label_config)


def test_preannotate_is_idempotent_and_survives_a_label_studio_restart(ls, label_studio, start_backend):
    backend = start_backend()
    project = create_project(ls, "bulk", SENT)
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in texts(1500)])
    predictor = BackendPredictor(backend.url)
    held = HeldPredictor(predictor, hold_at=4)  # batches of 50, chunks of 100: the first chunk is pushed by then

    result = {}
    worker = threading.Thread(target=lambda: result.update(report=preannotate(
        ls, project.id, held, batch_size=50, chunk=100, progress=False)))
    worker.start()
    assert held.held.wait(timeout=120)
    wait_for(lambda: sum(versions_per_task(ls, project.id, "labelloop-v0").values()) >= 100, timeout=120,
             what="the first pushed chunk", interval=0.2)
    label_studio.stop()
    held.release.set()  # the run goes on against a Label Studio that is down
    time.sleep(2)
    label_studio.start(timeout=120)
    worker.join(timeout=600)
    report = result["report"]
    assert report.model_version == "labelloop-v0" and report.restarts >= 1
    counts = versions_per_task(ls, project.id, "labelloop-v0")
    assert len(counts) == 1500
    assert set(counts.values()) == {1}, Counter(counts.values())  # nothing lost, nothing twice
    assert ls.projects.get(id=project.id).model_version == "labelloop-v0"

    rerun = preannotate(ls, project.id, predictor, progress=False)
    assert (rerun.stored, rerun.already_done) == (0, 1500)
    scores = [t.predictions_score for t in ls.tasks.list(project=project.id, fields="all", page_size=50).items]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scores)


def test_export_writes_leak_free_splits_with_a_frozen_test_set(ls, tmp_path):
    project = create_project(ls, "export", SENT, uncertainty_sampling=False)
    rows = texts(60) + [texts(60)[0].upper()]  # one exact duplicate of task 0
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in rows])
    tasks = list(lsclient.iter_tasks(ls, project.id))
    for i, task in enumerate(tasks):
        label = "Positive" if "wonderful" in task.data["text"] or i % 2 else "Negative"
        result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        ls.annotations.create(id=task.id, result=result, project=project.id)
        if i < 4:  # a second annotator: agreeing twice, disagreeing twice
            other = label if i < 2 else ("Neutral" if label != "Neutral" else "Positive")
            ls.annotations.create(id=task.id, project=project.id, result=[
                {**result[0], "value": {"choices": [other]}}])
    out = tmp_path / "export"
    report = export_dataset(ls, project.id, out, ExportConfig(audit_share=0.5), state_dir=tmp_path / "home",
                            min_test=10)
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert len(train) + len(test) == len(tasks) - 2 and len(report["conflicts"]) == 2
    assert report["leakage"]["test_texts_in_train"] == 0 and report["duplicates"]["exact"] == 1
    assert {r["text"].lower() for r in train}.isdisjoint({r["text"].lower() for r in test})
    # The test split is the audit split: tasks the backend never trains on (and duplicates of them).
    audit = {t.id for t in tasks if in_audit(project.id, t.id, 0.5)}
    assert sum(r["task_id"] in audit for r in test) >= len(test) - 1 and not audit & {r["task_id"] for r in train}
    assert report["test_split"] == {"n": len(test), "minimum": 10, "enough": True, "frozen": True, "what": "audit"}
    assert report["agreement"]["tasks_with_several_annotations"] == 4
    assert set(json.loads((out / "report.json").read_text())) >= {"labels", "duplicates", "leakage", "agreement"}
    import datasets  # installed with labelloop[train]

    hf = datasets.load_from_disk(str(out / "hf"))
    assert hf["train"].num_rows == len(train) and set(hf["train"].column_names) == {"text", "label", "task_id"}

    again = export_dataset(ls, project.id, tmp_path / "again", ExportConfig(split="content", test_fraction=0.05),
                           state_dir=tmp_path / "home")
    later_test = (tmp_path / "again/test.jsonl").read_text().splitlines()
    assert again["exported"]["test"] >= len(test)
    assert {json.loads(x)["task_id"] for x in later_test} >= {r["task_id"] for r in test}

    # A test split below the gate's minimum is written, said to be too small, and never frozen.
    tiny = export_dataset(ls, project.id, tmp_path / "tiny", ExportConfig(audit_share=0.02),
                          state_dir=tmp_path / "fresh-home", min_test=30)
    assert tiny["test_split"]["enough"] is False and tiny["test_split"]["n"] < 30
    assert not frozen_test_path(tmp_path / "fresh-home", project.id).exists()


def test_cli_create_import_preannotate_export(ls, label_studio, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LABELLOOP_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "labelloop.cli", *args], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    out = cli("project", "create", "--title", "cli", "--template", "classification", "--labels", "Bug,Billing")
    project_id = out.split("created project ")[1].split()[0]
    (tmp_path / "tickets.csv").write_text("text\nThe invoice charged me twice\nThe app crashes on login\n"
                                          "the app crashes on login\n")
    assert "imported 2; exact duplicates: 1" in cli("import", "--project", project_id, str(tmp_path / "tickets.csv"))
    assert "2 predictions of labelloop-v0 stored" in cli("preannotate", "--project", project_id)
    assert ls.projects.get(id=int(project_id)).model_version == "labelloop-v0"
    for task in lsclient.iter_tasks(ls, int(project_id)):
        ls.annotations.create(id=task.id, project=int(project_id), result=[
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Bug"]}}])
    out = cli("export", "--project", project_id, "--out", str(tmp_path / "data"))
    assert "leakage: {'test_texts_in_train': 0}" in out
    assert (tmp_path / "data/train.jsonl").exists() and (tmp_path / "data/report.json").exists()
    # A wrong token is explained, without printing it.
    bad = subprocess.run([sys.executable, "-m", "labelloop.cli", "queue", "--project", project_id],
                         env={**env, "LABEL_STUDIO_API_KEY": "not-a-real-token-123"}, capture_output=True, text=True)
    assert bad.returncode != 0 and "personal access token" in bad.stderr and "not-a-real-token-123" not in bad.stderr


def test_cli_refuses_empty_exports_and_never_leaves_a_half_made_project(ls, label_studio, tmp_path):
    import os
    import subprocess
    import sys

    from labelloop.studio.localstudio import free_port

    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LABELLOOP_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labelloop.cli", *args], env=env, capture_output=True, text=True,
                              timeout=300)

    before = {p.id for p in ls.projects.list()}
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = cli("project", "create", "--title", "half", "--template", "classification", "--labels", "A,B",
              "--connect", dead)
    assert out.returncode == 1, out.stdout
    assert "connecting the ML backend" in out.stderr and "The project was not kept" in out.stderr
    assert "..." not in out.stderr, out.stderr  # the reason is whole, not cut mid-sentence
    assert {p.id for p in ls.projects.list()} == before
    created = cli("project", "create", "--title", "empty", "--template", "classification", "--labels", "A,B")
    project_id = created.stdout.split("created project ")[1].split()[0]
    (tmp_path / "t.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    assert cli("import", "--project", project_id, str(tmp_path / "t.jsonl")).returncode == 0
    out = cli("export", "--project", project_id, "--out", str(tmp_path / "data"))
    assert out.returncode == 1
    assert f"project {project_id} has nothing to export: 2 tasks, none with a usable annotation" in out.stderr
    assert not (tmp_path / "data").exists()


def test_listing_projects_pages_without_asking_label_studio_for_a_page_past_the_end(ls, label_studio):
    for title in ("page one", "page two"):
        create_project(ls, title, label_config("classification", ["A", "B"]))
    log = label_studio.data_dir / "label-studio.log"
    before = log.read_text(errors="replace").count("Invalid page")
    everything = {p.id for p in lsclient.list_projects(ls)}
    assert len(everything) >= 2
    assert {p.id for p in lsclient.list_projects(ls, page_size=1)} == everything
    count = len(everything)
    assert {p.id for p in lsclient.list_projects(ls, page_size=count)} == everything  # a page exactly full
    time.sleep(0.5)
    assert log.read_text(errors="replace").count("Invalid page") == before  # no page past the end was asked for


def test_open_and_completed_filters_follow_the_projects_overlap(ls):
    """The publisher lists only open tasks and asks one id to learn whether any is complete: Label Studio's
    filters must agree with ``is_labeled``, where a task asking two annotators stays open after the first."""
    project = create_project(ls, "open tasks", label_config("sentiment"))
    ls.projects.update(id=project.id, maximum_annotations=2)
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in texts(3)])
    ids = sorted(t.id for t in lsclient.iter_tasks(ls, project.id, include="id"))
    assert not lsclient.any_task(ls, project.id, [lsclient.COMPLETED])
    positive = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]
    second = ls.users.create(username="second-annotator", email="second-annotator@example.com")
    ls.annotations.create(id=ids[0], result=positive, project=project.id)
    ls.annotations.create(id=ids[0], result=positive, project=project.id, completed_by=second.id)
    ls.annotations.create(id=ids[1], result=positive, project=project.id)  # one of the two annotators it asks for
    listed = {t.id: t.is_labeled for t in lsclient.iter_tasks(ls, project.id, include="id,is_labeled")}
    assert listed == {ids[0]: True, ids[1]: False, ids[2]: False}
    assert {t.id for t in lsclient.iter_tasks(ls, project.id, filters=[lsclient.OPEN])} == {ids[1], ids[2]}
    assert {t.id for t in lsclient.iter_tasks(ls, project.id, filters=[lsclient.COMPLETED])} == {ids[0]}
    assert lsclient.any_task(ls, project.id, [lsclient.COMPLETED])


def test_cli_synthesizes_examples_with_the_local_llm_into_jsonl_and_label_studio(ls, label_studio, tmp_path):
    import os
    import subprocess
    import sys

    config = label_config("sentiment")
    reviews = [("I love this kettle, it boils water in a minute.", "Positive"),
               ("Great value, sturdy and it looks lovely on the counter.", "Positive"),
               ("It broke after two days and the lid leaks.", "Negative"),
               ("Terrible support, they never answered my emails.", "Negative")]
    tasks = [{"data": {"text": text}, "annotations": [{"result": [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}]}
        for text, label in reviews]
    project = create_project(ls, "synthetic", config, tasks)
    before = ls.projects.get(id=project.id).task_number
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LABELLOOP_HOME": str(tmp_path / "home"), "LABELLOOP_AUDIT_SHARE": "0"}
    out = subprocess.run([sys.executable, "-m", "labelloop.cli", "synthesize", "--project", str(project.id),
                          "--per-label", "1", "--attempts", "2", "--min-agreement", "0", "--max-tokens", "40",
                          "--output", str(tmp_path / "synthetic.jsonl"), "--add-to-project"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "texts generated; kept" in out.stdout
    rows = [json.loads(line) for line in (tmp_path / "synthetic.jsonl").read_text().splitlines()]
    assert 1 <= len(rows) <= 2
    for row in rows:
        assert row["label"] in ("Positive", "Negative") and row["text"] not in [t for t, _ in reviews]
        assert row["provenance"]["source"] == "synthetic" and row["provenance"]["model"]
    added = [t for t in lsclient.iter_tasks(ls, project.id, fields="all") if t.data.get("augmented")]
    assert ls.projects.get(id=project.id).task_number == before + len(rows) == len(tasks) + len(added)
    assert all(t.data["augmentation_source"] == "synthetic" for t in added)
