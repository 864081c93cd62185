"""One table of ladder cases, run through the backend's ladder and through the simulation's ``auto`` learner:
what ``labelloop al simulate --learner auto`` measures is what the backend decides.

Each case is fed to both as each gets its data (annotations in the backend's store; a pool, labelled ids and a
frozen gate in the simulation), and both must reach the case's answer."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.al import learners
from labelloop.al.learners import GateSettings, LadderLearner, Pool, _SimulatedGate
from labelloop.audit import in_audit
from labelloop.gate import wealth
from labelloop.models import ChoicesModel
from labelloop.policy import CARRY_FRAMES
from labelloop.serving.service import ModelService
from labelloop.settings import LabelLoopSettings

CONFIG = """<View><Text name="text" value="$text"/><Choices name="topic" toName="text">
<Choice value="sport"/><Choice value="cooking"/><Choice value="travel"/></Choices></View>"""
LABELS = ("sport", "cooking", "travel")

# When a fine-tune is due: training labels per label, the label counts earlier fine-tunes started at, the first
# fine-tune's label count, and whether one is due now.
DUE = [
    pytest.param({"sport": 6, "cooking": 5, "travel": 5}, [], 16, True, id="first at finetune_at"),
    pytest.param({"sport": 6, "cooking": 5, "travel": 4}, [], 16, False, id="below finetune_at"),
    pytest.param({"sport": 15, "cooking": 4, "travel": 1}, [], 16, False, id="a label without two examples"),
    pytest.param({"sport": 11, "cooking": 11, "travel": 10}, [16], 16, True, id="again when the labels double"),
    pytest.param({"sport": 10, "cooking": 10, "travel": 10}, [16], 16, False, id="not before they double"),
]

# The gate on one frame of audit tasks: (champion's class, challenger's class, gold class, annotated?) per task,
# repeated, and the verdict both must reach.
def frame(right_for_challenger: int, right_for_champion: int, both_wrong: int, unlabelled: int, agree: int):
    items = ([(1, 0, 0, True)] * right_for_challenger + [(0, 1, 0, True)] * right_for_champion
             + [(1, 2, 0, True)] * both_wrong + [(1, 0, 0, False)] * unlabelled + [(0, 0, 0, True)] * agree)
    return items


GATE = [  # (items, watching a promotion?, verdict)
    pytest.param(frame(14, 0, 0, 10, 20), False, "promote", id="the challenger right on every disagreement"),
    pytest.param(frame(3, 1, 0, 20, 20), False, "hold", id="too few disagreement labels yet"),
    pytest.param(frame(0, 16, 0, 10, 20), False, "futility", id="the champion right on every disagreement"),
    pytest.param(frame(20, 20, 2, 0, 10), False, "refuse", id="the budget spent on a tie"),
    pytest.param(frame(5, 1, 0, 0, 20), False, "carry", id="the frame ran out undecided with budget left"),
    pytest.param(frame(0, 16, 0, 10, 20), True, "rollback", id="the promoted model wrong on new disagreements"),
    pytest.param(frame(14, 0, 0, 10, 20), True, "keep", id="the promoted model right on new disagreements"),
]


def backend(tmp_path, **overrides) -> ModelService:
    settings = LabelLoopSettings(**{"home": tmp_path / "home", "model": "unused-no-encoder-is-loaded",
                                    "push_predictions": False, "finetune": "auto", "gate_budget": 40,
                                    "gate_alpha": 0.05, "gate_min_gain": 0.01, **overrides})
    service = ModelService(settings)
    service.store.save_label_config(1, CONFIG)
    return service


def annotate(service: ModelService, task_id: int, label: str) -> None:
    service.store.upsert_annotation(1, task_id, task_id, {"text": f"text {task_id}"},
                                    [{"from_name": "topic", "to_name": "text", "type": "choices",
                                      "value": {"choices": [label]}}], cancelled=False)


def pool(y: list[int]) -> Pool:
    k = len(LABELS)
    head = ChoicesModel(LABELS, False, np.zeros((4, k)), np.zeros(k), np.zeros((4, k)))
    return Pool([f"text {i}" for i in range(len(y))], np.zeros((len(y), 4)), np.asarray(y), LABELS, head, "", None)


class Started(Exception):
    """The simulation started a fine-tune (the case's answer, without training one)."""


@pytest.mark.parametrize(("counts", "started", "finetune_at", "due"), DUE)
def test_the_backend_starts_a_fine_tune_when_the_table_says(tmp_path, counts, started, finetune_at, due):
    service = backend(tmp_path, audit_share=0.0, finetune_at=finetune_at)
    task = 0
    for label, n in counts.items():
        for _ in range(n):
            task += 1
            annotate(service, task, label)
    for k, labels in enumerate(started):
        service.store.add_finetune(1, f"earlier-{k}", labels)
    assert (service.ladder.next_due(1) is None) == due, service.ladder.next_due(1)


@pytest.mark.parametrize(("counts", "started", "finetune_at", "due"), DUE)
def test_the_simulation_starts_a_fine_tune_when_the_table_says(monkeypatch, counts, started, finetune_at, due):
    y = [LABELS.index(label) for label, n in counts.items() for _ in range(n)]
    learner = framed(LadderLearner(pool(y), 0.1, finetune_at=finetune_at), np.zeros(len(y), dtype=bool))
    learner._started = list(started)

    def start(*args, **kwargs):
        raise Started

    monkeypatch.setattr(learners, "finetune", start)
    try:
        learner.fit(np.arange(len(y)))
        began = False
    except Started:
        began = True
    assert began == due


def framed(learner: LadderLearner, audit: np.ndarray) -> LadderLearner:
    """``learner`` with the audit frame ``audit`` (bool per pool item) instead of its random draw."""
    learner.audit = audit
    return learner


def audit_task_ids(n: int, share: float) -> list[int]:
    ids, task = [], 0
    while len(ids) < n:
        task += 1
        if in_audit(1, task, share):
            ids.append(task)
    return ids


@pytest.mark.parametrize(("items", "watch", "verdict"), GATE)
def test_the_backend_gate_reaches_the_tables_verdict(tmp_path, items, watch, verdict):
    service = backend(tmp_path, audit_share=0.5)
    tasks = audit_task_ids(len(items), 0.5)
    for task, (_, _, gold, annotated) in zip(tasks, items, strict=True):
        if annotated:
            annotate(service, task, LABELS[gold])
    service.store.open_gate(1, "challenger", "labelloop-v1", "challenger",
                            [(t, a, b) for t, (a, b, _, _) in zip(tasks, items, strict=True)])
    if watch:  # promoted before any of these labels came in
        service.store.update_gate(1, "challenger", state="watch", promoted="labelloop-v2", counted=[])
    spec = service.schema(1).single_choice()
    evidence = service.ladder.evidence(1, spec, service.store.gate(1, "challenger"))
    assert evidence.verdict == verdict, evidence.reason


class Promoted(Exception):
    """The simulation promoted the challenger (it then loads its features, which this stand-in has not)."""


class StandIn:
    def features(self, texts):
        raise Promoted

    def predict_proba(self, texts):  # a fresh frame's classes, for a gate carried over (class 0 everywhere)
        return np.tile([1.0, 0.0, 0.0], (len(texts), 1))


def champion_everywhere(cls: int):
    return lambda ids: np.eye(len(LABELS))[np.full(len(ids), cls)]


@pytest.mark.parametrize(("items", "watch", "verdict"), GATE)
def test_the_simulated_gate_reaches_the_tables_verdict(items, watch, verdict):
    gold = [g for _, _, g, _ in items] + [0, 1, 2]  # and three training items, never in the frame
    audit = np.arange(len(gold)) < len(items)
    learner = framed(LadderLearner(pool(gold), 0.1, gate=GateSettings(alpha=0.05, min_gain=0.01, budget=40)), audit)
    audit_ids = np.flatnonzero(audit)
    learner._gate = _SimulatedGate(StandIn(), 10, audit_ids, np.array([a for a, _, _, _ in items]),
                                   np.array([b for _, b, _, _ in items]), opened_at=0,
                                   champion_model=champion_everywhere(0), state="watch" if watch else "open")
    labelled = np.array([i for i, (_, _, _, annotated) in enumerate(items) if annotated])
    try:
        learner._judge(labelled, np.flatnonzero(~audit), labelled)
    except Promoted:
        pass
    verdicts = [e for e in learner.events if e.what != "new frame"]
    reached = verdicts[0].what if verdicts else "hold"
    assert reached == verdict, verdicts[0].detail if verdicts else ""
    # a verdict that closes (or carries) the gate releases the frame's labels to training and draws a fresh frame
    # over the rest
    assert any(e.what == "new frame" for e in learner.events) == (verdict not in ("hold", "promote"))
    if verdict not in ("hold", "promote"):  # no labelled item is in the new frame; the queue's audit quota restarts
        assert not learner.audit[labelled].any() and learner.audit_since == len(labelled)


def _opened(n_disagree: int, n_agree: int, challenger_right: bool):
    """A simulated gate that opened before any of its audit items were labelled: ``n_disagree`` items where the
    two models differ (the challenger right, or both wrong) and ``n_agree`` where they agree."""
    gold = [0] * (n_disagree + n_agree) + [0, 1, 2]
    audit = np.arange(len(gold)) < n_disagree + n_agree
    learner = framed(LadderLearner(pool(gold), 0.1, gate=GateSettings(alpha=0.05, min_gain=0.01, budget=40)), audit)
    challenger = [0 if challenger_right else 2] * n_disagree + [0] * n_agree
    learner._gate = _SimulatedGate(StandIn(), 10, np.flatnonzero(audit), np.array([1] * n_disagree + [0] * n_agree),
                                   np.array(challenger), opened_at=0, champion_model=champion_everywhere(1),
                                   judged=set())
    return learner, np.flatnonzero(audit)


def test_a_batch_of_labels_is_judged_one_label_at_a_time_as_the_backend_does():
    from labelloop.gate import wealth

    learner, labelled = _opened(60, 20, challenger_right=True)
    learner._labelable = labelled  # what annotators may be served: items 80-82 are the test texts
    try:  # all 60 disagreements and the 20 agreements labelled in one batch
        learner._judge(labelled, np.array([80, 81, 82]), labelled)
    except Promoted:
        pass
    first = next(k for k in range(1, 61) if wealth(np.ones(k)) >= 20)
    event = learner.events[-1]
    assert event.what == "promote" and event.evidence["labels"] == first < 60
    # checked afterwards on the test texts (here 80-82, gold 0, 1, 2): the champion says 1, the challenger 0
    assert event.evidence["held_out"] == {"n": 3, "champion": 1 / 3, "challenger": 1 / 3}
    assert event.labels == len(labelled) - (60 - first)  # the labels that came after the verdict are not its
    assert len(learner._gate.counted) == 20 + first  # ...they are the rollback watch's


def test_a_batch_never_spends_more_than_the_gates_budget():
    learner, labelled = _opened(60, 0, challenger_right=False)  # both wrong: no evidence either way
    learner._judge(labelled, np.array([60, 61, 62]), labelled)
    event = learner.events[-2]
    assert event.what == "refuse" and event.evidence["labels"] == 40, event.evidence


def test_the_simulated_gate_frames_only_servable_tasks_and_records_a_challenger_that_gives_way(monkeypatch):
    """Held-out test texts are never served, so they are not in the gate's frame (else it waits on them for
    ever); a challenger still held when the next fine-tune starts is recorded as superseded, as the backend does."""
    y = [k % 3 for k in range(90)]
    audit = np.arange(90) % 5 == 0
    learner = framed(LadderLearner(pool(y), 0.1, finetune_at=12,
                                   gate=GateSettings(alpha=0.05, min_gain=0.01, budget=40)), audit)

    class Challenger:
        def predict_proba(self, texts):
            return np.tile([0.0, 0.0, 1.0], (len(texts), 1))  # class 2 everywhere: unlike the zero-shot head

    monkeypatch.setattr(learners, "finetune", lambda pool, train, name, method: Challenger())
    servable, test = np.arange(72), np.arange(72, 90)
    first = servable[:18]  # 14 training labels (every class) and 4 audit labels
    learner.fit(first, np.setdiff1d(servable, first))
    assert set(learner._gate.audit_ids) <= set(servable.tolist()) and not set(learner._gate.audit_ids) & set(test)
    more = np.union1d(first, servable[18:][~audit[servable[18:]]])  # training labels double, no new audit label
    learner.fit(more, np.setdiff1d(servable, more))
    assert [e.what for e in learner.events if e.what in ("finetune", "superseded")] == [
        "finetune", "finetune", "superseded"]


def test_once_its_gate_is_settled_the_frames_labels_train_and_a_fresh_frame_is_drawn(tmp_path):
    from labelloop.audit import stored_frame

    service = backend(tmp_path, audit_share=0.5, finetune="off")
    audit = audit_task_ids(12, 0.5)
    train = [t for t in range(1, 40) if not in_audit(1, t, 0.5)][:12]
    for task in audit[:8] + train:
        annotate(service, task, LABELS[task % 3])
    service.annotations.keep_unlabeled(1, [(t, {"text": f"text {t}"}) for t in range(100, 400)])
    assert {r.task_id for r in service.annotations.audit_records(1)} == set(audit[:8])
    service.store.open_gate(1, "challenger", "labelloop-v1", "challenger",
                            [(t, k % 2, 0) for k, t in enumerate(audit)])
    service.ladder.step(1)  # judged, or waiting on labels: the frame stays
    assert service.annotations.frame(1).round == 0 and not service.store.audit_rounds(1)
    assert service.ladder.served_first(1)[0]

    service.store.update_gate(1, "challenger", state="closed")  # refused, stopped or superseded
    service.ladder.step(1)
    frame = service.annotations.frame(1)
    assert frame.round == 1 and service.store.decisions(1)[-1].action == "new frame"
    assert service.store.audit_rounds(1)[0].released == 20  # every labelled task, the 8 audit labels among them
    assert {r.task_id for r in service.annotations.training_records(1)} == set(audit[:8] + train)
    assert not service.annotations.audit_records(1)
    # the fresh frame: about half of the tasks not labelled yet, none of the labelled ones
    fresh = [t for t in range(100, 400) if t in frame]
    assert 100 < len(fresh) < 200 and not any(t in frame for t in audit[:8] + train)
    assert fresh != [t for t in range(100, 400) if in_audit(1, t, 0.5)]
    assert {t for t, _ in service.annotations.audit_tasks(1, service.schema(1).controls[0])} == set(fresh)
    assert service.ladder.served_first(1) == (set(), 0.0)  # the earlier round's gate no longer weighs the curve
    # nothing judged on the new frame yet: no further round; the frame survives a restart and reads the same
    # from the state file for exports, the dashboard and the pool
    service.ladder.step(1)
    again = backend(tmp_path, audit_share=0.5, finetune="off")
    assert again.annotations.frame(1) == frame == stored_frame(tmp_path / "home", 1, 0.5)
    assert stored_frame(tmp_path / "home", 2, 0.5).round == 0 and stored_frame(tmp_path / "none", 1, 0.5).round == 0
    # a task labelled from now on is audit or not by the new frame
    annotate(again, fresh[0], "sport")
    assert [r.task_id for r in again.annotations.audit_records(1)] == [fresh[0]]
    # the next challenger's gate opens on the new frame
    again.store.open_gate(1, "next", "labelloop-v1", "next", [(t, 0, 1) for t in fresh], round=frame.round)
    assert again.store.gate(1, "next").round == 1


# A frame that runs out undecided: the challenger right on 5 of its 6 disagreements (W < 20, budget left). Its
# evidence carries over to a fresh frame, where the challenger is right on every disagreement; both must promote
# it on the labels of both frames.
FIRST = frame(5, 1, 0, 0, 20)
WINS_ALONE = next(k for k in range(1, 40) if wealth(np.ones(k)) >= 20)  # on a fresh frame with nothing carried


def challenger_class(task: int) -> int:
    """The carried challenger on the fresh frame: class 1 on every third task, where it is right (the champion
    says 0 everywhere)."""
    return 1 if task % 3 == 0 else 0


def test_the_backend_carries_an_undecided_gate_to_a_fresh_frame_and_promotes_on_both(tmp_path, monkeypatch):
    service = backend(tmp_path, audit_share=0.5, finetune="off")
    tasks = audit_task_ids(len(FIRST), 0.5)
    for task, (_, _, gold, _) in zip(tasks, FIRST, strict=True):
        annotate(service, task, LABELS[gold])
    service.annotations.keep_unlabeled(1, [(t, {"text": f"text {t}"}) for t in range(1000, 1400)])
    service.store.add_finetune(1, "run-1", 30)
    service.store.open_gate(1, "run-1", "labelloop-v1", "run-1",
                            [(t, a, b) for t, (a, b, _, _) in zip(tasks, FIRST, strict=True)])
    monkeypatch.setattr(service.ladder, "run_status", lambda finetune: "succeeded")
    monkeypatch.setattr(service.ladder.runs, "get", lambda run_id: type("Run", (), {"task": "classification"}))
    monkeypatch.setattr(service.ladder, "_frozen_classes", lambda project_id, spec, gate, texts: (
        np.zeros(len(texts), dtype=int), np.array([challenger_class(int(t.split()[1])) for t in texts])))
    drawn = service.store.new_audit_round
    monkeypatch.setattr(service.store, "new_audit_round", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):  # killed after the carry was recorded, before the fresh frame was drawn
        service.ladder.step(1)
    monkeypatch.setattr(service.store, "new_audit_round", drawn)
    extend = service.store.extend_gate
    monkeypatch.setattr(service.store, "extend_gate", lambda *a, **k: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):  # killed again, after the fresh frame was drawn, before the gate was extended
        service.ladder.step(1)
    monkeypatch.setattr(service.store, "extend_gate", extend)
    service.ladder.step(1)  # back: the carry is not recorded twice, and the fresh frame takes the gate on
    actions = [d.action for d in service.store.decisions(1)]
    assert actions == ["carry", "new frame"], actions
    gate = service.store.gate(1, "run-1")
    assert gate.state == "open" and gate.round == 1 and gate.frame > len(FIRST)
    fresh = service.ladder.serve_first(1)  # the new frame's disagreements, served first
    assert fresh and all(t >= 1000 and challenger_class(t) == 1 for t in fresh), [t for t in fresh if t < 1000 or t % 3]
    spec = service.schema(1).single_choice()
    for task in fresh:
        annotate(service, task, LABELS[1])
        evidence = service.ladder.evidence(1, spec, service.store.gate(1, "run-1"))
        if evidence.verdict != "hold":
            break
    assert evidence.verdict == "promote" and evidence.losses == 1, evidence.reason
    assert 0 < evidence.wins - 5 < WINS_ALONE  # the first frame's labels still count


def test_the_simulation_carries_an_undecided_gate_to_a_fresh_frame_and_promotes_on_both():
    n = 400
    gold = [g for _, _, g, _ in FIRST] + [challenger_class(i) for i in range(len(FIRST), n)]
    audit = np.arange(n) < len(FIRST)
    learner = framed(LadderLearner(pool(gold), 0.1, gate=GateSettings(alpha=0.05, min_gain=0.01, budget=40),
                                   rng=np.random.default_rng(3)), audit)

    class Challenger(StandIn):
        def predict_proba(self, texts):
            return np.eye(len(LABELS))[[challenger_class(int(t.split()[1])) for t in texts]]

    learner._labelable = np.arange(n)
    learner._gate = _SimulatedGate(Challenger(), 10, np.flatnonzero(audit), np.array([a for a, _, _, _ in FIRST]),
                                   np.array([b for _, b, _, _ in FIRST]), opened_at=0,
                                   champion_model=champion_everywhere(0))
    labelled = np.flatnonzero(audit)
    learner._judge(labelled, np.zeros(0, dtype=int), labelled)
    assert [e.what for e in learner.events] == ["carry", "new frame"]
    gate = learner._gate
    assert gate is not None and gate.state == "open" and len(gate.audit_ids) > len(FIRST)
    fresh = learner.serve_first(np.setdiff1d(np.arange(n), labelled))
    assert len(fresh) and all(challenger_class(t) == 1 and learner.audit[t] for t in fresh)
    for k in range(1, len(fresh) + 1):
        now = np.union1d(labelled, fresh[:k])
        try:
            learner._judge(now, np.setdiff1d(now, np.flatnonzero(learner.audit)), now[learner.audit[now]])
        except Promoted:
            break
    event = learner.events[-1]
    assert event.what == "promote" and (event.evidence["wins"], event.evidence["losses"]) == (5 + k, 1)
    assert k < WINS_ALONE


@pytest.mark.parametrize(("frames", "verdict"), [(1, "carry"), (CARRY_FRAMES - 1, "carry"), (CARRY_FRAMES, "refuse")])
def test_both_carry_a_challenger_over_at_most_carry_frames_frames(tmp_path, frames, verdict):
    """A challenger that rarely disagrees would otherwise turn the audit frame over with every batch."""
    service = backend(tmp_path, audit_share=0.5, finetune="off")
    tasks = audit_task_ids(len(FIRST), 0.5)
    for task, (_, _, gold, _) in zip(tasks, FIRST, strict=True):
        annotate(service, task, LABELS[gold])
    service.store.open_gate(1, "run-1", "labelloop-v1", "run-1",
                            [(t, a, b) for t, (a, b, _, _) in zip(tasks, FIRST, strict=True)])
    for _ in range(frames - 1):  # the frames it was judged on before this one
        service.store.add_decision(1, "carry", "labelloop-v1", "run-1", {})
    spec = service.schema(1).single_choice()
    assert service.ladder.evidence(1, spec, service.store.gate(1, "run-1")).verdict == verdict

    gold = [g for _, _, g, _ in FIRST] + [0, 1, 2]
    audit = np.arange(len(gold)) < len(FIRST)
    learner = framed(LadderLearner(pool(gold), 0.1, gate=GateSettings(alpha=0.05, min_gain=0.01, budget=40)), audit)
    learner._gate = _SimulatedGate(StandIn(), 10, np.flatnonzero(audit), np.array([a for a, _, _, _ in FIRST]),
                                   np.array([b for _, b, _, _ in FIRST]), opened_at=0,
                                   champion_model=champion_everywhere(0), frames=frames)
    labelled = np.flatnonzero(audit)
    learner._judge(labelled, np.flatnonzero(~audit), labelled)
    assert learner.events[0].what == verdict
