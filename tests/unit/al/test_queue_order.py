"""How the backend orders Label Studio's queue: coverage before any label, diversity after."""

import numpy as np
import pytest

from labelloop.serving.service import ModelService
from labelloop.settings import LabelLoopSettings

CONFIG = """<View><Text name="text" value="$text"/><Choices name="topic" toName="text">
<Choice value="A"/><Choice value="B"/></Choices></View>"""
TOPICS = {
    "sport": ["The striker scored twice in the final", "The goalkeeper saved a penalty in extra time",
              "Our team won the league after a tense season", "The marathon runner set a new course record"],
    "cooking": ["Simmer the tomato sauce for twenty minutes", "Knead the bread dough until it is smooth",
                "Roast the vegetables with olive oil and garlic", "Whisk the eggs and sugar until pale"],
    "finance": ["The central bank raised interest rates again", "Shares fell sharply after the earnings report",
                "Bond yields rose as inflation picked up", "The company announced a quarterly dividend"],
}
TEXTS = [(topic, f"{t} ({k}).") for topic, texts in TOPICS.items() for t in texts for k in range(2)]
IDS = list(range(1, len(TEXTS) + 1))


@pytest.fixture
def service(tmp_path):
    def make(**kwargs):
        svc = ModelService(LabelLoopSettings(home=tmp_path, queue_batch=3, **kwargs))
        svc.store.save_label_config(1, CONFIG)
        return svc

    return make


def first_topics(scores, n=3):
    return [TEXTS[i][0] for i in np.argsort(scores, kind="stable")[:n]]


@pytest.mark.model
def test_cold_start_puts_a_covering_batch_first(service):
    data = [{"text": t} for _, t in TEXTS]
    # Confidences that would put three sport texts first.
    conf = np.array([0.1 if topic == "sport" else 0.5 for topic, _ in TEXTS]) + np.linspace(0, 0.01, len(TEXTS))
    scores = service().queue_order(1, IDS, data, conf, cold=True)
    assert sorted(first_topics(scores)) == ["cooking", "finance", "sport"]
    assert np.all((scores >= 0) & (scores <= 1))


@pytest.mark.model
def test_after_labels_the_order_is_confidence_unless_diversity_is_on(service):
    # The first task is labelled: the queue orders the open ones.
    data = [{"text": t} for _, t in TEXTS][1:]
    conf = (np.array([0.1 if topic == "sport" else 0.5 for topic, _ in TEXTS]) + np.linspace(0, 0.01, len(TEXTS)))[1:]
    plain = service(diversity="none").queue_order(1, IDS[1:], data, conf, cold=False)
    np.testing.assert_array_equal(plain, conf)
    diverse = service(diversity="cluster").queue_order(1, IDS[1:], data, conf, cold=False)
    first = np.argsort(diverse, kind="stable")[:3]
    assert len({TEXTS[i + 1][0] for i in first}) >= 2
    # The least confident task still leads the queue.
    assert first[0] == np.argmin(conf)


def test_queue_batch_zero_keeps_pure_confidence(service):
    data = [{"text": t} for _, t in TEXTS]
    conf = np.linspace(0.1, 0.9, len(TEXTS))
    svc = service()
    svc.settings.queue_batch = 0
    np.testing.assert_array_equal(svc.queue_order(1, IDS, data, conf, cold=True), conf)
