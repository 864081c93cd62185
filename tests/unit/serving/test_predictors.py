"""Every prediction source answers the same questions the same way: the model (zero-shot or trained), the
LLM and their ensemble, each naming its model_version."""

import numpy as np
import pytest

from labelloop.encoder import load_encoder
from labelloop.labeling.kinds import KINDS
from labelloop.labeling.schema import ControlSpec
from labelloop.llm import LLMLabeler, LocalLLM
from labelloop.models import Features
from labelloop.serving.predictors import EnsemblePredictor, LLMPredictor, ModelPredictor, choose
from labelloop.serving.versions import UNTRAINED_VERSION, Bundle
from labelloop.spans import Span

CHOICE = ControlSpec("choices", "topic", "text", "text", ("sport", "cooking"))
NER = ControlSpec("labels", "ents", "text", "text", ("PER",))
TEXTS = ["The striker scored twice", "Whisk the eggs", "Anna met Tom"]


@pytest.fixture(scope="module")
def features():
    return Features(lambda: load_encoder(""))


@pytest.fixture
def sources(features, tiny_llm_path):
    tagger = features.fit_tagger(NER, TEXTS, [[], [], [Span(0, 4, "PER"), Span(9, 12, "PER")]])
    trained = Bundle("labelloop-v3", {"ents": tagger}, {"ents": NER.signature, "topic": CHOICE.signature})
    llm = LLMPredictor(LLMLabeler(LocalLLM(tiny_llm_path)), "llm-tiny",
                       annotated=lambda spec: [("Kick the ball", ["sport"])] if spec is CHOICE else [],
                       embed=features.embed)
    model = ModelPredictor(trained, features, "margin", drafter=lambda: llm)
    return {"model": model, "llm": llm, "ensemble": EnsemblePredictor(model, llm)}


@pytest.mark.model
@pytest.mark.parametrize("name", ["model", "llm", "ensemble"])
def test_predictor_contract(sources, name):
    source = sources[name]
    assert source.version == {"model": "labelloop-v3", "llm": "llm-tiny", "ensemble": "labelloop-v3+llm-tiny"}[name]
    probs = source.class_probs(CHOICE, TEXTS)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0)
    found = source.spans(NER, TEXTS)
    assert len(found) == 3
    for text, p in zip(TEXTS, found):
        assert p.confidence is None or 0.0 <= p.confidence <= 1.0
        assert all(0 <= s.start < s.end <= len(text) for s in p.spans)
    (draft,) = source.drafts(ControlSpec("textarea", "r", "text", "text", ()), ["Say hello"])
    assert isinstance(draft.text, str)
    for kind in ("choices", "labels"):  # and every kind turns its answers into Label Studio results
        spec = CHOICE if kind == "choices" else NER
        preds = KINDS[kind].predict(spec, source, TEXTS, "margin")
        assert len(preds) == 3 and all(r["from_name"] == spec.from_name for p in preds for r in p.regions)


@pytest.mark.model
def test_ensemble_is_the_mean_and_cold_start_switches_at_the_threshold(sources):
    model, llm, both = sources["model"], sources["llm"], sources["ensemble"]
    assert np.allclose(both.class_probs(CHOICE, TEXTS),
                       (model.class_probs(CHOICE, TEXTS) + llm.class_probs(CHOICE, TEXTS)) / 2)
    assert choose("cold-start", lambda: model, lambda: llm, annotated=lambda: 3, cold_start_labels=5) is llm
    assert choose("cold-start", lambda: model, lambda: llm, annotated=lambda: 5, cold_start_labels=5) is model
    untrained = ModelPredictor(Bundle(UNTRAINED_VERSION), model.features, "margin")
    assert choose("cold-start", lambda: untrained, lambda: llm, annotated=lambda: 99, cold_start_labels=5) is llm
    assert untrained.spans(NER, TEXTS) is None  # no tagger yet: no span result rather than a guess
