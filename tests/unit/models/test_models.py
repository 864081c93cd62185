"""One protocol for every model the backend serves: heads on the frozen encoder and fine-tuned runs alike
answer ``predict_proba(texts)`` (classifiers) or ``predict_spans(texts)`` (taggers), and learn with ``fit``."""

import json

import numpy as np
import pytest

from labelloop.encoder import load_encoder, resolve_model_path
from labelloop.errors import ModelError
from labelloop.labeling.schema import ControlSpec
from labelloop.models import Features, HeadClassifier, HeadTagger, TransformerModel
from labelloop.spans import Span

CHOICE = ControlSpec("choices", "sentiment", "text", "text", ("neg", "pos"))
NER = ControlSpec("labels", "ents", "text", "text", ("PER",))
TEXTS = ["A lovely, warm film", "Dull and far too long", "A lovely, warm film", "Anna met Tom in Oslo"]


@pytest.fixture(scope="module")
def features():
    return Features(lambda: load_encoder(""))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny fine-tuned-run folders, as `labelloop train` leaves them."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertForTokenClassification

    root = tmp_path_factory.mktemp("runs")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(""))
    torch.manual_seed(0)
    config = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=128)
    for name, cls, labels, task in (("cls", BertForSequenceClassification, ["pos", "neg"], "classification"),
                                    ("ner", BertForTokenClassification, ["O", "B-PER", "I-PER"], "ner")):
        cls(BertConfig(num_labels=len(labels), **config)).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        (root / name / "labelloop.json").write_text(json.dumps({"task": task, "labels": labels}))
    return root


def classifiers(features, runs):
    head = features.zero_shot(CHOICE)
    return {"zero-shot head": head, "trained head": head.fit(TEXTS[:2], np.array([1, 0])),
            "fine-tuned run": TransformerModel(runs / "cls", CHOICE.labels)}


def taggers(features, runs):
    spans = [[], [], [], [Span(0, 4, "PER"), Span(9, 12, "PER")]]
    return {"trained tagger": features.fit_tagger(NER, TEXTS, spans),
            "fine-tuned run": TransformerModel(runs / "ner", NER.labels)}


@pytest.mark.model
@pytest.mark.parametrize("name", ["zero-shot head", "trained head", "fine-tuned run"])
def test_classifier_contract(features, runs, name):
    model = classifiers(features, runs)[name]
    probs = model.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), len(CHOICE.labels)) and np.isfinite(probs).all()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(probs[0], probs[2])  # the same text, the same answer
    assert model.predict_proba([]).shape[0] == 0


@pytest.mark.model
@pytest.mark.parametrize("name", ["trained tagger", "fine-tuned run"])
def test_tagger_contract(features, runs, name):
    model = taggers(features, runs)[name]
    out = model.predict_spans(TEXTS)
    assert len(out) == len(TEXTS)
    for text, (spans, probs) in zip(TEXTS, out):
        assert probs.ndim == 2 and probs.shape[1] == 1 + 2 * len(NER.labels)
        assert np.allclose(probs.sum(axis=1), 1.0)
        assert all(0 <= s.start < s.end <= len(text) and s.label in NER.labels for s in spans)


@pytest.mark.model
def test_heads_learn_and_round_trip_through_files_runs_do_not_retrain(features, runs, tmp_path):
    head = classifiers(features, runs)["trained head"]
    tagger = taggers(features, runs)["trained tagger"]
    assert isinstance(head, HeadClassifier) and isinstance(tagger, HeadTagger)
    for i, model in enumerate((head, tagger)):
        meta = features.save(model, tmp_path, f"m{i}")
        loaded = features.load(tmp_path, meta)
        if isinstance(model, HeadClassifier):
            assert np.allclose(loaded.predict_proba(TEXTS), model.predict_proba(TEXTS))
        else:
            assert [s for s, _ in loaded.predict_spans(TEXTS)] == [s for s, _ in model.predict_spans(TEXTS)]
    with pytest.raises(ModelError, match="labelloop train"):
        TransformerModel(runs / "cls", CHOICE.labels).fit(TEXTS, np.array([0, 1, 0, 1]))
    with pytest.raises(ModelError, match="predicts"):
        TransformerModel(runs / "cls", ("a", "b", "c"))


def test_word_tags_model_learns_from_vectors_and_refuses_words_without_a_tag():
    import numpy as np
    import pytest

    from labelloop.errors import ModelError
    from labelloop.models import WordTagsModel

    rng = np.random.default_rng(0)
    centers = {"DT": np.eye(4)[0], "NN": np.eye(4)[1], "VB": np.eye(4)[2]}
    tags = [["DT", "NN", "VB"], ["NN", "VB"], ["DT", "NN"]] * 5
    vectors = [np.stack([centers[t] + rng.normal(0, 0.05, 4) for t in s]) for s in tags]
    words = [["w"] * len(s) for s in tags]  # one spelling: the vectors alone tell the tags apart
    model = WordTagsModel.fit(vectors, words, tags, ["DT", "NN", "VB"])
    # the last word of a three-word sentence was always VB in training: its NN vector wins over its position
    probs = model.predict_proba(np.stack([centers["DT"], centers["NN"], centers["NN"]]), ["w", "w", "w"])
    assert probs.shape == (3, 3) and list(probs.argmax(axis=1)) == [0, 1, 1] and model.trained_on == 15
    # a word tagged None is context, not a target; a sentence with no tag at all teaches nothing
    partial = WordTagsModel.fit(vectors, words, [[None, *s[1:]] for s in tags], ["DT", "NN", "VB"])
    assert partial.trained_on == 15
    with pytest.raises(ModelError, match="no tagged word"):
        WordTagsModel.fit(vectors[:1], words[:1], [[None] * len(tags[0])], ["DT", "NN", "VB"])
    with pytest.raises(ModelError, match="every word needs one of each"):
        WordTagsModel.fit([np.zeros((3, 4))], [["a", "b", "c"]], [["DT", "NN"]], ["DT", "NN"])
