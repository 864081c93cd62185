"""Stored model versions: predicting with any of them, learning curves, and the frozen test split."""

import pytest

from labelloop.data.dataset import save_frozen_test
from labelloop.errors import ConfigError
from labelloop.quality.dedup import content_key
from labelloop.serving.service import ModelService
from labelloop.serving.versions import UNTRAINED_VERSION
from labelloop.settings import LabelLoopSettings
from labelloop.workflows.compare import learning_curve

CONFIG = """<View><Text name="text" value="$text"/><Choices name="topic" toName="text">
<Choice value="sport"/><Choice value="cooking"/></Choices></View>"""
SPORT = ["The striker scored twice in the final", "The goalkeeper saved a penalty", "Our team won the league",
         "The marathon runner set a record"]
COOKING = ["Simmer the tomato sauce for twenty minutes", "Knead the bread dough until smooth",
           "Roast the vegetables with garlic", "Whisk the eggs and sugar until pale"]


def annotate(service, i, text, label):
    service.store.upsert_annotation(1, i, i, {"text": text}, [{"from_name": "topic", "to_name": "text",
                                                               "type": "choices", "value": {"choices": [label]}}],
                                    cancelled=False)


@pytest.fixture
def service(tmp_path):
    svc = ModelService(LabelLoopSettings(home=tmp_path, push_predictions=False))
    svc.store.save_label_config(1, CONFIG)
    return svc


@pytest.mark.model
def test_predict_with_a_stored_version_and_learning_curve(service):
    annotate(service, 1, SPORT[0], "sport")
    annotate(service, 2, COOKING[0], "cooking")
    first = service.fit(1)
    for i, (s, c) in enumerate(zip(SPORT[1:3], COOKING[1:3]), start=3):
        annotate(service, 2 * i, s, "sport")
        annotate(service, 2 * i + 1, c, "cooking")
    second = service.fit(1)
    assert service.model_version(1) == second != first
    task = [{"data": {"text": "The referee stopped the match"}}]
    assert service.predict(task, project=1, model_version=first)[0]["model_version"] == first
    assert service.predict(task, project=1)[0]["model_version"] == second
    assert service.predict(task, project=1, model_version=UNTRAINED_VERSION)[0]["model_version"] == UNTRAINED_VERSION
    with pytest.raises(ConfigError, match="no model version"):
        service.predict(task, project=1, model_version="labelloop-v99")
    probs = service.choice_probabilities(1, "The referee stopped the match", model_version=first)["topic"]
    assert set(probs) == {"sport", "cooking"} and sum(probs.values()) == pytest.approx(1.0)

    test = [{"text": SPORT[3], "label": "sport"}, {"text": COOKING[3], "label": "cooking"}]
    curve = learning_curve(service, 1, test)
    assert [r["model_version"] for r in curve] == [UNTRAINED_VERSION, first, second]
    assert [r["labels"] for r in curve] == [0, 2, 6]
    assert all(0 <= r["accuracy"] <= 1 and r["n_test"] == 2 for r in curve)
    assert learning_curve(service, 1, test) == curve  # cached next to each version


def test_only_projects_with_a_labeling_config_are_listed(service):
    annotate(service, 1, SPORT[0], "sport")
    service.store.upsert_annotation(2, 1, 99, {"text": "x"}, [], cancelled=False)  # a webhook before any /setup
    assert service.store.projects() == [1]


@pytest.mark.model
def test_training_leaves_the_frozen_test_split_out(service):
    for i, text in enumerate(SPORT):
        annotate(service, i, text, "sport")
    for i, text in enumerate(COOKING, start=10):
        annotate(service, i, text, "cooking")
    save_frozen_test(service.settings.home, 1, {content_key(SPORT[0]), content_key(COOKING[0])})
    service.fit(1)
    assert service.current_record(1).n_annotations == 6


@pytest.mark.model
def test_the_learning_curve_weighs_the_gates_disagreements_by_their_share_of_the_audit_frame(service):
    """A gate serves its disagreements first, so they crowd the annotated audit tasks: the curve counts them at
    their share of the frame (here 4 of 40), not at their share of the labels (half)."""
    annotate(service, 1, SPORT[0], "sport")
    annotate(service, 2, COOKING[0], "cooking")
    service.fit(1)
    pushed = [{"task_id": 100 + k, "text": t, "label": "cooking" if t in SPORT else "sport"}  # surely wrong
              for k, t in enumerate(SPORT[1:3] + COOKING[1:3])]
    rest = [{"task_id": 200 + k, "text": t, "label": "sport" if t in SPORT else "cooking"}
            for k, t in enumerate(SPORT[1:] + COOKING[1:])]
    frame = [(r["task_id"], 0, 1) for r in pushed] + [(r["task_id"], 0, 0) for r in rest]
    frame += [(300 + k, 0, 0) for k in range(40 - len(frame))]  # audit tasks nobody annotated yet
    service.store.open_gate(1, "challenger", service.model_version(1), "challenger", frame)
    plain = learning_curve(service, 1, rest)  # no gate disagreement among them: nothing to weigh
    curve = learning_curve(service, 1, pushed + rest)
    assert not any(r["weighted"] for r in plain) and all(r["weighted"] for r in curve)
    for p, c in zip(plain, curve, strict=True):
        assert c["accuracy"] == pytest.approx(0.1 * 0.0 + 0.9 * p["accuracy"])  # the pushed ones are all wrong
        assert c["low"] <= c["accuracy"] <= c["high"]


@pytest.mark.model
def test_an_earlier_audit_frame_scores_only_the_versions_trained_before_its_labels_joined_training(service):
    from labelloop.audit import PastFrame, stored_frames

    annotate(service, 1, SPORT[0], "sport")
    annotate(service, 2, COOKING[0], "cooking")
    first = service.fit(1)
    pushed = [{"task_id": 100 + k, "text": t, "label": "cooking" if t in SPORT else "sport"}
              for k, t in enumerate(SPORT[1:3] + COOKING[1:3])]
    rest = [{"task_id": 200 + k, "text": t, "label": "sport" if t in SPORT else "cooking"}
            for k, t in enumerate(SPORT[1:] + COOKING[1:])]
    frame = [(r["task_id"], 0, 1) for r in pushed] + [(r["task_id"], 0, 0) for r in rest]
    service.store.open_gate(1, "challenger", first, "challenger", frame + [(300 + k, 0, 0) for k in range(26)])
    service.store.update_gate(1, "challenger", state="closed")  # refused: the frame has served
    service.ladder.step(1)
    past = stored_frames(service.settings.home, 1, service.settings.audit_share)[1]
    assert isinstance(past, PastFrame) and past.round == 0 and service.annotations.frame(1).round == 1
    annotate(service, 3, SPORT[1], "sport")  # the frame's labels train the versions after it
    second = service.fit(1)
    old = learning_curve(service, 1, pushed + rest, past)
    assert [r["model_version"] for r in old] == [UNTRAINED_VERSION, first] and all(r["weighted"] for r in old)
    now = learning_curve(service, 1, pushed + rest)  # as if they were the new frame's: every version, unweighted
    assert [r["model_version"] for r in now] == [UNTRAINED_VERSION, first, second]
    assert not any(r["weighted"] for r in now)
