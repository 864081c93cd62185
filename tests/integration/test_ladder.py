"""The learning ladder against a real Label Studio: annotations cross the fine-tune threshold, the encoder is
fine-tuned in a background process while webhooks stay fast, the gate opens on the audit split and Label
Studio's queue serves the audit tasks where the two models disagree first, their labels settle the verdict
with its evidence recorded, a lead promotes through the gate (or past it, recorded), and the head keeps
retraining on the fine-tuned encoder with every new version reaching Label Studio."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

from labelloop.audit import in_audit
from labelloop.finetune.registry import RunRegistry
from labelloop.models import TunedHead
from labelloop.serving.service import ModelService
from labelloop.serving.store import Store
from labelloop.settings import LabelLoopSettings
from labelloop.studio.projects import connect_backend
from tests.integration.conftest import wait_for

CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="verdict" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""
GOOD = ["wonderful", "delightful", "brilliant", "lovely", "superb", "charming", "moving", "gripping"]
BAD = ["dreadful", "boring", "awful", "miserable", "tedious", "clumsy", "shallow", "lifeless"]
THINGS = ["film", "soundtrack", "ending", "cast", "script", "camera work"]


def reviews() -> list[tuple[str, str]]:
    good = [(f"The {thing} was {adj}, honestly.", "Positive") for adj, thing in itertools.product(GOOD, THINGS)]
    bad = [(f"The {thing} was {adj}, honestly.", "Negative") for adj, thing in itertools.product(BAD, THINGS)]
    return [r for pair in zip(good, bad) for r in pair]  # 96 texts, labels alternating


def choice(label: str) -> list[dict]:
    return [{"from_name": "verdict", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def test_annotations_cross_the_threshold_and_the_ladder_fine_tunes_judges_and_keeps_learning(
        ls, label_studio, start_backend, tmp_path):
    settings = {"LABELLOOP_AUDIT_SHARE": "0.3", "LABELLOOP_MIN_AUDIT": "8", "LABELLOOP_FINETUNE": "auto",
                "LABELLOOP_FINETUNE_AT": "40"}
    backend = start_backend(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token, **settings)
    home = backend.log.parent
    rows = reviews()
    project = ls.projects.create(title="ladder", label_config=CONFIG)
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in rows])
    connect_backend(ls, project.id, backend.url)
    tasks = {t.data["text"]: t.id for t in ls.tasks.list(project=project.id)}
    store = Store(home)

    # Annotators label the training tasks first; the audit tasks wait in the queue.
    audit = {tasks[t] for t, _ in rows if in_audit(project.id, tasks[t], 0.3)}
    gold = {tasks[t]: label for t, label in rows}
    for text, label in rows:
        if tasks[text] not in audit:
            ls.annotations.create(id=tasks[text], result=choice(label), project=project.id)
    wait_for(lambda: store.finetunes(project.id), timeout=180, what="a background fine-tune to start")
    finetune = store.finetunes(project.id)[0]
    assert finetune.labels >= 40 and finetune.labels <= len(rows) - len(audit)

    # Webhooks are acknowledged at once while the encoder fine-tunes in its own process.
    registry = RunRegistry(home)
    assert registry.get(finetune.run_id).status in ("queued", "running", "succeeded")
    started = time.perf_counter()
    first = next(t for t in rows if tasks[t[0]] not in audit)
    ls.annotations.create(id=tasks[first[0]], result=choice(first[1]), project=project.id)
    assert time.perf_counter() - started < 5.0

    # The gate opens on the finished fine-tune: it and the serving head predict every audit task.
    wait_for(lambda: store.gates(project.id), timeout=600, what="the gate to open on the fine-tune", interval=2)
    gate = store.gates(project.id)[0]
    assert gate.run_id == finetune.run_id and gate.champion.startswith("labelloop-v")
    items = store.gate_items(project.id, gate.run_id)
    assert {i.task_id for i in items} == audit
    disagree = {i.task_id for i in items if i.disagree}

    def queue_front(n: int) -> list[int]:
        ordered = ls.tasks.list(project=project.id, fields="all",
                                query=json.dumps({"ordering": ["tasks:predictions_score"]}))
        return [t.id for t in ordered if not t.is_labeled][:n]

    if disagree:  # Label Studio's uncertainty queue serves exactly those audit tasks first
        wait_for(lambda: set(queue_front(len(disagree))) == disagree, timeout=300,
                 what="Label Studio's queue to serve the gate's disagreements first")
    for task_id in queue_front(len(disagree)):
        ls.annotations.create(id=task_id, result=choice(gold[task_id]), project=project.id)
    settled = ("promote", "futility", "refuse", "carry")  # carry: every disagreement labelled, no verdict yet
    verdict = wait_for(lambda: next((d for d in store.decisions(project.id) if d.action in settled), None),
                       timeout=300, what="the gate's verdict once its disagreements are labelled", interval=2)
    assert verdict.challenger is not None and verdict.evidence["run"] == finetune.run_id
    assert verdict.evidence["frame"] == len(audit) and verdict.evidence["disagreements"] == len(disagree)
    assert verdict.evidence["labels"] <= len(disagree) and verdict.evidence["champion_version"] == gate.champion
    if verdict.action == "promote":
        assert verdict.evidence["wealth"] >= 20
    service = ModelService(LabelLoopSettings(home=home, audit_share=0.3, finetune="off"))
    if verdict.action == "promote":  # audit tasks are never trained on while the rollback watch judges on them
        assert not {r.task_id for r in service.annotations.training_records(project.id)} & audit
    else:  # the frame has served (or carries its evidence over): its labels train now, and a fresh frame is drawn
        # over the tasks not labelled yet
        wait_for(lambda: any(d.action == "new frame" for d in store.decisions(project.id)), timeout=60,
                 what="a fresh audit frame once the challenger is settled")
        labelled = {r.task_id for r in service.store.latest_annotations(project.id)}
        assert labelled & audit <= {r.task_id for r in service.annotations.training_records(project.id)}
        assert service.annotations.frame(project.id).round == 1 and not any(
            task_id in service.annotations.frame(project.id) for task_id in labelled)

    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LABELLOOP_HOME": str(home), **settings}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labelloop.cli", *args], env=env, capture_output=True, text=True,
                              timeout=600)

    status = cli("ladder", "--project", str(project.id))
    assert status.returncode == 0, status.stderr
    assert f"project {project.id} serves labelloop-v" in status.stdout and "audit frame " in status.stdout
    assert finetune.run_id in status.stdout

    if verdict.action != "promote":
        # A lead's promotion meets the same gate; an override goes through and is recorded.
        refused = cli("promote", finetune.run_id, "--project", str(project.id))
        assert refused.returncode != 0 and "was not promoted" in refused.stderr + refused.stdout
        forced = cli("promote", finetune.run_id, "--project", str(project.id), "--force")
        assert forced.returncode == 0, forced.stderr
        assert f"now serves run {finetune.run_id}" in forced.stdout
        assert [d.action for d in store.decisions(project.id) if d.action in ("forced", "promote")]
    promoted = store.current_name(project.id)
    wait_for(lambda: ls.projects.get(id=project.id).model_version == promoted, timeout=180,
             what="Label Studio to show the promoted version")

    # After promotion the loop keeps learning: the head retrains on the fine-tuned encoder's features.
    spec = service.schema(project.id).controls[0]
    assert isinstance(service.registry.current(project.id).model(spec), TunedHead)
    extra = ls.tasks.create(project=project.id, data={"text": "The soundtrack was radiant, honestly."})
    ls.annotations.create(id=extra.id, result=choice("Positive"), project=project.id)
    wait_for(lambda: (store.current_name(project.id) or "") != promoted, timeout=300,
             what="a retrain on top of the promoted encoder")
    newer = store.current_name(project.id)
    assert isinstance(ModelService(LabelLoopSettings(home=home, audit_share=0.3, finetune="off"))
                      .registry.current(project.id).model(spec), TunedHead)
    wait_for(lambda: ls.projects.get(id=project.id).model_version == newer, timeout=180,
             what="Label Studio to show the retrained version")
