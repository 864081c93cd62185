"""The learning ladder in the backend: audit tasks never train, a background fine-tune is judged on them, the
gate promotes it, the head keeps learning on top, and every step is recorded. A tiny random BERT built here
stands in for the encoder, so the real fine-tuning process runs in seconds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from labelloop.audit import in_audit
from labelloop.finetune.config import RunConfig
from labelloop.models import HeadClassifier, TunedHead
from labelloop.serving.service import ModelService
from labelloop.serving.versions import UNTRAINED_VERSION
from labelloop.settings import LabelLoopSettings

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


def wait_for_finetune(service, timeout=240.0):
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
    assert service.ladder.status(1)["rung"] == "zero-shot"
    assert service.ladder.step(1) is None  # starts the fine-tune, promotes nothing yet
    started = service.store.finetunes(1)
    assert len(started) == 1 and started[0].labels == len(service.annotations.training_records(1))
    assert [d.action for d in service.store.decisions(1)] == ["finetune"]
    assert service.store.decisions(1)[0].evidence["method"] == method  # SetFit below 400 labels, as measured
    assert service.ladder.status(1)["finetune_running"] == [started[0].run_id]
    assert service.ladder.step(1) is None and len(service.store.finetunes(1)) == 1  # one at a time

    wait_for_finetune(service)
    service.finetunes_finished()  # the worker's timer queues a training for the project
    assert service.store.claim_job().reason == "fine-tune finished"
    promoted = service.ladder.step(1)
    decision = service.store.decisions(1)[-1]
    assert decision.action == "promote", decision.evidence["reason"]
    evidence = decision.evidence
    assert promoted is not None and service.model_version(1) == promoted
    assert evidence["champion"]["model_version"] == UNTRAINED_VERSION
    assert evidence["challenger"]["n"] == len(service.annotations.audit_records(1)) >= 8
    assert evidence["p_value"] < 0.05 and evidence["challenger"]["accuracy"] > evidence["champion"]["accuracy"]
    spec = service.schema(1).controls[0]
    served = service.registry.current(1).model(spec)
    assert isinstance(served, TunedHead)
    status = service.ladder.status(1)
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


def test_a_challenger_on_too_small_an_audit_split_is_held_and_judged_again_only_when_it_grows(make_service):
    service = make_service(retrain_every=0, min_audit=500)
    for task_id in range(1, 41):
        annotate(service, task_id, "sport" if task_id % 2 else "cooking")
    service.ladder.step(1)
    wait_for_finetune(service)
    assert service.ladder.step(1) is None
    assert service.ladder.step(1) is None  # nothing new to judge on: no second record
    actions = [d.action for d in service.store.decisions(1)]
    assert actions == ["finetune", "hold"]
    assert "needs 500" in service.store.decisions(1)[-1].evidence["reason"]
    assert service.model_version(1) == UNTRAINED_VERSION
    service.finetunes_finished()  # a held challenger is not re-queued by the timer, only by new audit labels
    assert service.store.claim_job() is None
    new_audit = next(t for t in range(41, 400) if in_audit(1, t, 0.4))
    annotate(service, new_audit, "sport" if new_audit % 2 else "cooking")
    service.ladder.step(1)
    assert [d.action for d in service.store.decisions(1)] == ["finetune", "hold", "hold"]
    assert service.ladder.status(1)["held"] == [service.store.finetunes(1)[0].run_id]


def test_a_worse_challenger_is_refused_with_its_evidence(make_service):
    service = make_service(min_audit=8)  # the head trains on every annotation, so the champion is good
    for task_id in range(1, 41):
        annotate(service, task_id, "sport" if task_id % 2 else "cooking")
    service.fit(1)
    champion = service.model_version(1)
    assert isinstance(service.registry.current(1).model(service.schema(1).controls[0]), HeadClassifier)

    class Contrarian:  # always the wrong class on the audit items
        def predict_proba(self, texts):
            gold = {t: label for t, label in zip(*service.ladder.audit_items(1, service.schema(1).controls[0]))}
            return np.array([[1.0, 0.0] if gold[t] == 1 else [0.0, 1.0] for t in texts])

    evidence = service.ladder.judge(1, Contrarian(), "contrarian")
    assert evidence.verdict == "refuse" and evidence.champion.model_version == champion
    assert evidence.challenger.accuracy == 0.0 and evidence.champion.n == evidence.challenger.n >= 8
