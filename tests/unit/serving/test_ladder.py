"""The learning ladder in the backend: audit tasks never train, a background fine-tune is judged on them, the
gate promotes it, the head keeps learning on top, and every step is recorded. A tiny random BERT built here
stands in for the encoder, so the real fine-tuning process runs in seconds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from labelloop.audit import in_audit
from labelloop.finetune.config import RunConfig
from labelloop.models import TunedHead
from labelloop.serving.service import ModelService
from labelloop.serving.versions import UNTRAINED_VERSION
from labelloop.settings import LabelLoopSettings

pytestmark = pytest.mark.model  # the ladder's fine-tunes and gate on the packaged encoder

torch = pytest.importorskip("torch")

CONFIG = """<View><Text name="text" value="$text"/><Choices name="topic" toName="text">
<Choice value="sport"/><Choice value="cooking"/></Choices></View>"""
WORDS = {"sport": ["goal", "match", "striker", "league", "referee", "tennis"],
         "cooking": ["oven", "recipe", "flour", "simmer", "garlic", "bake"]}


def text(label: str, i: int) -> str:
    words = WORDS[label]
    return f"{words[i % 6]} {words[(i // 6) % 6]} {words[(i + 3) % 6]} {i}"


def quick(n_labels, train_file, *, base_model="", method="full"):
    """A fine-tune (full, or SetFit below LABELLOOP_SETFIT_BELOW labels) a tiny random model learns from in
    seconds."""
    if method == "setfit":
        return RunConfig(task="classification", train_file=str(train_file), base_model=base_model, method="setfit",
                         epochs=2, batch_size=8, max_length=32, save_steps=10_000)
    return RunConfig(task="classification", train_file=str(train_file), base_model=base_model, method="full",
                     epochs=30, batch_size=8, learning_rate=2e-3, max_length=32, save_steps=10_000)


def annotate(service, task_id, label):
    service.store.upsert_annotation(1, task_id, task_id, {"text": text(label, task_id)},
                                    [{"from_name": "topic", "to_name": "text", "type": "choices",
                                      "value": {"choices": [label]}}], cancelled=False)


@pytest.fixture
def make_service(tmp_path, tiny_bert_path):
    def make(**overrides):
        settings = LabelLoopSettings(**{"home": tmp_path / "home", "model": tiny_bert_path, "push_predictions": False,
                                        "audit_share": 0.4, "min_audit": 8, "finetune": "auto", "finetune_at": 12,
                                        **overrides})
        service = ModelService(settings)
        service.ladder.run_config = quick
        service.store.save_label_config(1, CONFIG)
        return service

    return make


def wait_for_finetune(service, timeout=600.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_ = [f for f in service.store.finetunes(1) if not f.done]
        if open_ and all(service.ladder.run_ended(f) for f in open_):
            return
        time.sleep(0.5)
    raise AssertionError("the background fine-tune did not finish")


def test_audit_tasks_are_never_trained_on_and_the_split_survives_a_restart(make_service):
    service = make_service(finetune="off")
    for task_id in range(1, 41):
        annotate(service, task_id, "sport" if task_id % 2 else "cooking")
    audit = {r.task_id for r in service.annotations.audit_records(1)}
    assert audit == {t for t in range(1, 41) if in_audit(1, t, 0.4)} and 8 <= len(audit) <= 24
    version = service.fit(1)
    record = service.registry.record(1, version)
    assert record is not None and record.n_annotations == 40 - len(audit)
    # A duplicate of an audit text under another task id trains nothing either.
    first = min(audit)
    service.store.upsert_annotation(1, 500, 500, {"text": text("sport" if first % 2 else "cooking", first)},
                                    [{"from_name": "topic", "to_name": "text", "type": "choices",
                                      "value": {"choices": ["sport"]}}], cancelled=False)
    assert 500 not in {r.task_id for r in service.annotations.training_records(1)}
    restarted = make_service(finetune="off")
    assert {r.task_id for r in restarted.annotations.audit_records(1)} == audit


@pytest.mark.parametrize("method", ["full", "setfit"])
def test_the_ladder_fine_tunes_in_the_background_promotes_through_the_gate_and_keeps_learning(make_service, method):
    # retrain_every=0 keeps the head from training: the challenger meets the zero-shot champion, which a
    # random encoder leaves near chance, so the gate's verdict is sure.
    if method == "setfit":
        pytest.importorskip("setfit")
    service = make_service(retrain_every=0, setfit_below=400 if method == "setfit" else 0)
    for task_id in range(1, 61):
        annotate(service, task_id, "sport" if task_id % 2 else "cooking")
    assert service.ladder_status(1)["rung"] == "zero-shot"
    assert service.ladder.step(1) is None  # starts the fine-tune, promotes nothing yet
    started = service.store.finetunes(1)
    assert len(started) == 1 and started[0].labels == len(service.annotations.training_records(1))
    assert [d.action for d in service.store.decisions(1)] == ["finetune"]
    assert service.store.decisions(1)[0].evidence["method"] == method  # SetFit below 400 labels, as measured
    assert service.ladder_status(1)["finetune_running"] == [started[0].run_id]
    assert service.ladder.step(1) is None and len(service.store.finetunes(1)) == 1  # one at a time

    wait_for_finetune(service)
    service.learning.finetunes_finished()  # the worker's timer queues a training for the project
    assert service.store.claim_job().reason == "fine-tune finished"
    audit = len(service.annotations.audit_records(1))
    promoted = service.ladder.step(1)
    decision = service.store.decisions(1)[-2]
    assert decision.action == "promote", decision.evidence["reason"]
    evidence = decision.evidence
    assert promoted is not None and service.model_version(1) == promoted
    assert evidence["champion_version"] == UNTRAINED_VERSION and evidence["by"] == "gate"
    assert evidence["frame"] == audit >= 8
    # Promoted over zero-shot there is nothing to roll back to, so the frame has served: its labels train now and
    # a fresh frame is drawn over the tasks not labelled yet.
    assert service.store.decisions(1)[-1].action == "new frame" and service.annotations.frame(1).round == 1
    assert not service.annotations.audit_records(1) and len(service.annotations.training_records(1)) == 60
    assert evidence["wealth"] >= 20 and evidence["labels"] == evidence["disagreements"] > 0
    assert evidence["challenger"]["value"] > evidence["champion"]["value"] and evidence["delta"]["value"] > 0
    spec = service.schema(1).controls[0]
    served = service.registry.current(1).model(spec)
    assert isinstance(served, TunedHead)
    status = service.ladder_status(1)
    assert status["rung"] == "fine-tuned encoder + head" and status["since"] is not None
    assert f"at {2 * started[0].labels} training labels" in status["next_finetune"]  # labels double first

    # The head keeps learning on the fine-tuned encoder's features after each annotation.
    before = service.predict([{"data": {"text": text("sport", 999)}}], project=1)[0]
    annotate(service, 61, "sport")
    retrained = service.fit(1)
    assert retrained != promoted and isinstance(service.registry.current(1).model(spec), TunedHead)
    assert service.registry.current(1).model(spec).trained_on == len(service.annotations.training_records(1))
    after = service.predict([{"data": {"text": text("sport", 999)}}], project=1)[0]
    assert after["model_version"] == retrained and before["model_version"] == promoted
    # Restarted, the tuned head loads from its files and predicts the same.
    again = make_service(retrain_every=0)
    probs = again.choice_probabilities(1, text("sport", 999))["topic"]
    assert probs == pytest.approx(service.choice_probabilities(1, text("sport", 999))["topic"], abs=1e-5)

    # Rollback works at this rung too, and is recorded.
    assert service.rollback(1) == promoted
    assert service.store.decisions(1)[-1].action == "rollback"


def test_a_stopped_backend_stops_its_fine_tune_and_starts_it_again_when_back(make_service):
    import os

    service = make_service(retrain_every=0)
    for task_id in range(1, 61):
        annotate(service, task_id, label_of(task_id))
    service.ladder.step(1)
    (finetune,) = service.store.finetunes(1)
    pid = int((service.ladder.runs.get(finetune.run_id).folder / "pid").read_text())
    service.close()  # what the backend does on shutdown
    with pytest.raises(ProcessLookupError):
        for _ in range(600):  # reaped by its waiter thread a moment after it ends (slower on busy cores)
            os.kill(pid, 0)
            time.sleep(0.1)
    assert service.ladder.runs.get(finetune.run_id).status == "cancelled"
    restarted = make_service(retrain_every=0)
    assert restarted.ladder.next_due(1) is None  # due again at the same label count, not at twice as many
    restarted.ladder.step(1)
    assert len(restarted.store.finetunes(1)) == 2
    restarted.close()


def test_the_same_training_data_trains_no_new_version(make_service):
    """An audit annotation, a repeated webhook: nothing a training learns from changed, so no new version is
    made (and so none is published)."""
    service = make_service(finetune="off")
    for task_id in range(1, 21):
        annotate(service, task_id, label_of(task_id))
    first = service.fit(1)
    assert first is not None
    audit_task = next(t for t in range(100, 400) if in_audit(1, t, 0.4))
    annotate(service, audit_task, label_of(audit_task))
    assert service.fit(1) is None and service.model_version(1) == first
    training_task = next(t for t in range(100, 400) if not in_audit(1, t, 0.4))
    annotate(service, training_task, label_of(training_task))
    assert service.fit(1) not in (None, first)


class Oracle:
    """A challenger that reads the topic off the words (always right here)."""

    def predict_proba(self, texts):
        return np.array([[1.0, 0.0] if any(w in t for w in WORDS["sport"]) else [0.0, 1.0] for t in texts])


class Contrarian(Oracle):
    def predict_proba(self, texts):
        return 1.0 - super().predict_proba(texts)


def label_of(task_id):
    return "sport" if task_id % 2 else "cooking"


def gated_service(make_service, challenger, *, first_train=30):
    """A champion (a head trained on ``first_train`` tasks; zero-shot on the random encoder, near chance, for 0),
    200 unannotated tasks known from a pull, and a gate opened for ``challenger``."""
    service = make_service(retrain_every=0, finetune="off", gate_budget=40)
    for task_id in range(1, first_train + 1):
        if not in_audit(1, task_id, 0.4):
            annotate(service, task_id, label_of(task_id))
    if first_train:
        service.fit(1)
    service.annotations.keep_unlabeled(1, [(t, {"text": text(label_of(t), t)}) for t in range(100, 300)])
    spec = service.schema(1).controls[0]
    gate = service.ladder.open_gate(1, spec, challenger, "challenger", "run-1")
    return service, spec, gate


def test_the_gate_serves_disagreements_first_and_promotes_on_a_handful_of_their_labels(make_service, monkeypatch):
    service, spec, gate = gated_service(make_service, Oracle(), first_train=0)
    # A challenger at the gate is not queued again by the timer: its disagreement labels queue trainings.
    service.store.add_finetune(1, "run-1", 12)
    monkeypatch.setattr(service.ladder, "run_ended", lambda finetune: True)
    service.learning.finetunes_finished()
    assert service.store.claim_job() is None
    champion = service.model_version(1)
    assert gate.champion == champion and gate.frame == len(service.annotations.audit_tasks(1, spec)) > 40
    items = service.store.gate_items(1, "run-1")
    disagree = [i.task_id for i in items if i.disagree]
    first = service.ladder.serve_first(1)
    assert sorted(first) == sorted(disagree) and len(first) >= 5
    assert first == sorted(first, key=lambda t: __import__("labelloop.audit").audit.audit_rank(1, t))
    # The queue serves exactly those tasks first, in that order.
    tasks = list(range(100, 300))
    scores = service.queue_order(1, tasks, [{"text": text(label_of(t), t)} for t in tasks],
                                 np.linspace(0.1, 0.9, len(tasks)), cold=False)
    assert [tasks[i] for i in np.argsort(scores, kind="stable")[:len(first)]] == first

    verdicts = []
    for task_id in first:
        annotate(service, task_id, label_of(task_id))
        evidence = service.ladder.evidence(1, spec, service.store.gate(1, "run-1"))
        verdicts.append(evidence.verdict)
        if evidence.verdict != "hold":
            break
    assert verdicts[-1] == "promote" and len(verdicts) <= 12, verdicts
    assert evidence.wins == evidence.labels == len(verdicts) and evidence.losses == 0
    assert evidence.delta.value > 0 and evidence.delta.n == len(verdicts)
    # Absolute accuracies are stratified: unknown until an audit task where the two agree is labelled too.
    assert np.isnan(evidence.champion.value) and (evidence.champion.low, evidence.champion.high) == (0.0, 1.0)
    agreeing = next(i.task_id for i in items if not i.disagree)
    annotate(service, agreeing, label_of(agreeing))
    evidence = service.ladder.evidence(1, spec, service.store.gate(1, "run-1"))
    assert evidence.challenger.value > evidence.champion.value and evidence.labels == len(verdicts)
    # Labelled disagreements leave the front of the queue; the gate's state survives a restart.
    assert service.ladder.serve_first(1) == first[len(verdicts):]
    again = make_service(retrain_every=0, finetune="off", gate_budget=40)
    assert again.ladder.serve_first(1) == first[len(verdicts):]
    assert again.ladder.evidence(1, spec, again.store.gate(1, "run-1")).verdict == "promote"
    # Audit tasks are never trained on, gate or no gate.
    assert not {r.task_id for r in service.annotations.training_records(1)} & set(first)


def test_a_worse_challenger_stops_for_futility_with_its_evidence(make_service):
    service, spec, _ = gated_service(make_service, Contrarian(), first_train=0)
    for task_id in service.ladder.serve_first(1):
        annotate(service, task_id, label_of(task_id))
        evidence = service.ladder.evidence(1, spec, service.store.gate(1, "run-1"))
        if evidence.verdict != "hold":
            break
    assert evidence.verdict == "futility" and evidence.losses == evidence.labels <= 15
    assert evidence.delta.high < 0 and "can't gain" in evidence.reason


def test_a_promotion_the_labels_then_disprove_is_rolled_back_to_the_champion_it_replaced(make_service):
    service, spec, gate = gated_service(make_service, Contrarian())
    champion = gate.champion
    # A lead forced the contrarian in (as if promoted): a new version serves, and the gate watches it.
    fresh = (t for t in range(1000, 2000) if not in_audit(1, t, 0.4))
    new_task = next(fresh)
    annotate(service, new_task, label_of(new_task))
    service.store.set_current(1, service.trainer.fit(1))
    promoted = service.model_version(1)
    assert promoted != champion
    service.store.update_gate(1, "run-1", promoted=promoted, state="watch",
                              counted=list(service.annotations.answers(
                                  1, spec, {i.task_id for i in service.store.gate_items(1, "run-1")})))
    for _ in range(4):  # more trainings would prune the champion's folder, but the watch pins it
        new_task = next(fresh)
        annotate(service, new_task, label_of(new_task))
        assert service.trainer.fit(1) is not None
    assert champion in service.store.pinned_versions(1)
    assert service.registry.record(1, champion) is not None
    for task_id in service.ladder.serve_first(1):
        annotate(service, task_id, label_of(task_id))
        if service.ladder.step(1) is not None:
            break
    assert service.model_version(1) == champion
    decision = service.store.decisions(1)[-2]
    assert decision.action == "rollback" and decision.champion == champion and decision.challenger == promoted
    assert service.store.decisions(1)[-1].action == "new frame"  # the watch is over: the frame's labels train
    assert decision.evidence["direction"] == "rollback" and decision.evidence["wealth"] >= 20
    assert service.store.gate(1, "run-1").state == "closed" and not service.ladder.serve_first(1)
    assert service.store.decisions(1).count(decision) == 1  # recorded once


def test_one_challenger_per_audit_frame_and_the_frames_labels_then_train(make_service):
    service, spec, gate = gated_service(make_service, Oracle(), first_train=0)
    assert gate.round == 0
    judged = service.ladder.serve_first(1)[:3]
    for task_id in judged:
        annotate(service, task_id, label_of(task_id))
    labelled = {r.task_id for r in service.store.latest_annotations(1)}
    # A newer challenger: the held one gives way, its frame's labels train, and the newcomer gets a fresh frame.
    second = service.ladder.open_gate(1, spec, Contrarian(), "second", "run-2")
    actions = [d.action for d in service.store.decisions(1)]
    assert actions[-2:] == ["superseded", "new frame"] and service.store.gate(1, "run-1").state == "closed"
    assert second.round == 1 and service.annotations.frame(1).round == 1
    assert set(judged) <= {r.task_id for r in service.annotations.training_records(1)}
    items = service.store.gate_items(1, "run-2")
    assert items and not {i.task_id for i in items} & labelled  # nothing in the new frame was labelled before
    assert set(service.ladder.serve_first(1)) == {i.task_id for i in items if i.disagree}
    # A promotion's rollback watch ends when the next challenger is ready, and that one too gets a fresh frame.
    service.store.update_gate(1, "run-2", promoted="labelloop-v9", state="watch", counted=[])
    third = service.ladder.open_gate(1, spec, Oracle(), "third", "run-3")
    keep = [d for d in service.store.decisions(1) if d.action == "keep"][-1]
    assert keep.challenger == "labelloop-v9" and "run-3" not in keep.evidence["reason"] and "third" in keep.evidence["reason"]
    assert third.round == 2 and [g.run_id for g in service.store.gates(1, states=("open", "watch"))] == ["run-3"]
    assert [r.round for r in service.store.audit_rounds(1)] == [1, 2]
    status = service.ladder_status(1)
    assert status["frame"]["round"] == 2 and "audit frame 2" in status["frame"]["line"]
