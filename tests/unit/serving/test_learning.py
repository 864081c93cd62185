"""When a project trains: the one place that queues trainings (webhooks, the timer, finished fine-tunes)."""

import threading

import pytest

from labelloop.serving.learning import Learning
from labelloop.serving.store import Store


@pytest.fixture
def learning(tmp_path):
    def make(retrain_every):
        return Learning(Store(tmp_path / "home"), trainer=None, ladder=None, wake=threading.Event(),
                        retrain_every=retrain_every)

    return make


@pytest.mark.parametrize("retrain_every, action, new, trains", [
    (3, "ANNOTATION_CREATED", 2, False),
    (3, "ANNOTATION_CREATED", 3, True),
    (3, "ANNOTATIONS_CREATED", 7, True),
    (3, "ANNOTATION_DELETED", 0, True),
    (0, "ANNOTATION_CREATED", 50, False),  # retraining after annotations is off
    (0, "ANNOTATION_DELETED", 0, False),
    (0, "START_TRAINING", 0, True),  # a lead's Train always trains
    (3, "PROJECT_UPDATED", 0, False),
])
def test_a_webhook_queues_a_training_only_when_its_rule_says_so(learning, retrain_every, action, new, trains):
    loop = learning(retrain_every)
    assert loop.after_event(4, action, new_annotations=new) is trains
    assert loop.store.pending_jobs() == int(trains) and loop.wake.is_set() is trains


def test_the_timer_queues_each_project_with_annotations_not_trained_on(learning):
    loop = learning(0)
    loop.store.upsert_annotation(5, 1, 1, {"text": "a"}, [], cancelled=False)
    loop.on_timer()
    assert loop.store.pending_jobs() == 1 and loop.wake.is_set()
