"""The LLM as the backend's predictor (alone, cold start, ensemble) and TextArea drafts, on a tiny random Llama."""

import numpy as np
import pytest

from labelloop.errors import UnsupportedConfigError
from labelloop.serving.service import ModelService
from labelloop.serving.versions import UNTRAINED_VERSION
from labelloop.settings import LabelLoopSettings

CHOICES = """<View><Text name="text" value="$text"/><Choices name="topic" toName="text">
<Choice value="sport"/><Choice value="cooking"/></Choices></View>"""
NER = """<View><Labels name="ents" toName="text"><Label value="PER"/><Label value="LOC"/></Labels>
<Text name="text" value="$text"/></View>"""
DRAFT = """<View><Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/></View>"""


def make(tmp_path, path, **settings):
    svc = ModelService(LabelLoopSettings(home=tmp_path, push_predictions=False, llm_model=path, llm_base_url=None,
                                         **settings))
    for pid, config in ((1, CHOICES), (2, NER), (3, DRAFT)):
        svc.store.save_label_config(pid, config)
    return svc


def annotate(svc, i, text, label):
    svc.store.upsert_annotation(1, i, i, {"text": text}, [{"from_name": "topic", "to_name": "text", "type": "choices",
                                                           "value": {"choices": [label]}}], cancelled=False)


def test_llm_predicts_every_kind_of_control_with_a_score(tmp_path, tiny_llm_path):
    svc = make(tmp_path, tiny_llm_path, predictor="llm")
    version = "llm-" + tiny_llm_path.rstrip("/").rsplit("/", 1)[-1]
    assert svc.setup(1, CHOICES) == version == svc.model_version(1)
    assert svc.llm._engine is None  # naming the version loads no LLM (Label Studio gives /setup 3 s)
    (pred,) = svc.predict([{"data": {"text": "The striker scored"}}], project=1)
    (choice,) = pred["result"]
    assert pred["model_version"] == version and 0 <= pred["score"] <= 1 and 0.5 <= choice["score"] <= 1
    (pred,) = svc.predict([{"data": {"text": "Anna went to Rome"}}], project=2)
    assert all(r["type"] == "labels" and r["value"]["text"] == "Anna went to Rome"[r["value"]["start"]:r["value"]["end"]]
               for r in pred["result"]) and pred["score"] is not None
    (pred,) = svc.predict([{"data": {"prompt": "Say hello"}}], project=3)
    assert pred["score"] > 0
    assert all(r["type"] == "textarea" and r["value"]["text"][0] for r in pred["result"])
    assert svc.llm_usage()["requests"] >= 3


@pytest.mark.model
def test_few_shot_examples_come_from_annotations_but_never_the_text_itself(tmp_path, tiny_llm_path):
    svc = make(tmp_path, tiny_llm_path, predictor="llm")
    annotate(svc, 1, "The goalkeeper saved a penalty", "sport")
    annotate(svc, 2, "Whisk the eggs until pale", "cooking")
    control = svc.schema(1).controls[0]
    (shots,) = svc.llm.predictor(1).examples(control, ["The goalkeeper saved a penalty"])
    assert shots == [("Whisk the eggs until pale", "cooking")]


def test_textarea_without_the_llm_is_refused_with_the_fix(tmp_path, tiny_llm_path):
    svc = make(tmp_path, tiny_llm_path)  # predictor "model"
    with pytest.raises(UnsupportedConfigError, match="LABELLOOP_PREDICTOR=llm"):
        svc.setup(3, DRAFT)


@pytest.mark.model
def test_cold_start_hands_over_to_the_model_and_ensemble_averages(tmp_path, tiny_llm_path):
    svc = make(tmp_path, tiny_llm_path, predictor="cold-start", cold_start_labels=2)
    assert svc.model_version(1).startswith("llm-")
    annotate(svc, 1, "The goalkeeper saved a penalty", "sport")
    annotate(svc, 2, "Whisk the eggs until pale", "cooking")
    trained = svc.fit(1)
    assert svc.model_version(1) == trained != UNTRAINED_VERSION

    both = make(tmp_path / "ensemble", tiny_llm_path, predictor="ensemble")
    text = "The striker scored twice"
    llm_p = both.llm.labeler(1).classify([text], ["sport", "cooking"])[0]
    model_p = both.choice_probabilities(1, text)["topic"]
    (pred,) = both.predict([{"data": {"text": text}}], project=1)
    mean = (llm_p + np.array(list(model_p.values()))) / 2
    assert pred["model_version"] == f"{UNTRAINED_VERSION}+{both.llm.version}"
    assert pred["result"][0]["score"] == pytest.approx(mean.max())
