"""Dense word tagging (part of speech): words, the config, the tagger served and trained, export, accuracy."""

import json

import numpy as np
import pytest

from labelloop.augment.pipeline import augment_records
from labelloop.data.dataset import ExportConfig, build_dataset
from labelloop.errors import ConfigError
from labelloop.labeling.schema import parse_label_config
from labelloop.models import WordTagsModel, lexical_features
from labelloop.spans import Span
from labelloop.templates import UPOS, label_config
from labelloop.wordtags import first_tokens, tags_of_words, token_accuracy, words_of

from .conftest import webhook

POS = label_config("pos", ["DET", "NOUN", "VERB", "ADJ", "PUNCT"])

# Sentences of a toy grammar: DET ADJ? NOUN VERB DET NOUN PUNCT.
DETS, ADJS = ["the", "a", "every", "this"], ["small", "red", "quiet", "old"]
NOUNS, VERBS = ["dog", "farmer", "child", "cat", "teacher", "boat"], ["sees", "likes", "finds", "follows", "paints"]


def sentence(rng):
    words = [(rng.choice(DETS).capitalize(), "DET")]
    if rng.random() < 0.5:
        words.append((rng.choice(ADJS), "ADJ"))
    words += [(rng.choice(NOUNS), "NOUN"), (rng.choice(VERBS), "VERB"), (rng.choice(DETS), "DET"),
              (rng.choice(NOUNS), "NOUN"), (".", "PUNCT")]
    text = " ".join(w for w, _ in words[:-1]) + "."
    spans, at = [], 0
    for word, tag in words:
        start = text.index(word, at)
        spans.append((start, start + len(word), tag))
        at = start + len(word)
    return text, spans


def regions(spans):
    return [{"from_name": "pos", "to_name": "text", "type": "labels",
             "value": {"start": s, "end": e, "labels": [tag]}} for s, e, tag in spans]


def test_words_are_our_own_and_punctuation_is_a_word():
    text = "Don't stop, well-known café — 3.5 km!"
    assert [text[a:b] for a, b in words_of(text)] == ["Don't", "stop", ",", "well-known", "café", "—", "3", ".",
                                                       "5", "km", "!"]
    words = words_of("New York is big")
    assert tags_of_words(words, [Span(0, 8, "PROPN"), Span(12, 15, "ADJ")]) == ["PROPN", "PROPN", None, "ADJ"]
    assert token_accuracy([["A", None, "B"]], [["A", "X", "C"]]) == (1, 2)


def test_each_word_finds_its_first_token_even_inside_one():
    offsets = np.array([[0, 0], [0, 3], [3, 5], [6, 9], [0, 0]])  # [CLS] "don" "'t" "run" [SEP]
    word_ids = np.array([-1, 0, 0, 1, -1])
    assert first_tokens(offsets, word_ids, [(0, 5), (6, 9)]).tolist() == [1, 3]
    assert first_tokens(offsets, word_ids, [(4, 5)]).tolist() == [2]  # begins inside the token "'t"
    assert first_tokens(offsets, word_ids, [(20, 22)]).tolist() == [-1]


def test_the_pos_template_is_a_dense_tags_control_and_plain_labels_stay_spans():
    (spec,) = parse_label_config(label_config("pos")).controls
    assert spec.kind == "tags" and spec.labels == UPOS
    ner = parse_label_config(label_config("ner", ["PER"])).controls[0]
    assert ner.kind == "labels"


def test_lexical_features_are_stable_ids_of_the_word_and_its_neighbours():
    a, b = lexical_features(["The", "dog", "barks"]), lexical_features(["The", "dog", "barks"])
    assert a == b and len(a) == 3 and all(0 <= i < (1 << 15) for row in a for i in row)
    assert a[1] != lexical_features(["A", "dog", "barks"])[1]  # the word before counts


def test_the_word_tagger_learns_a_toy_grammar_from_spelling_and_context():
    rng = np.random.default_rng(0)
    data = [sentence(rng) for _ in range(60)]
    words = [[t[a:b] for a, b, _ in s] for t, s in data]
    tags = [[tag for _, _, tag in s] for _, s in data]
    vectors = [np.zeros((len(w), 4), dtype=np.float32) for w in words]  # no meaning: spelling alone
    labels = ["DET", "NOUN", "VERB", "ADJ", "PUNCT"]
    model = WordTagsModel.fit(vectors[:40], words[:40], tags[:40], labels, epochs=60)
    predicted = [[labels[k] for k in model.predict_proba(v, w).argmax(axis=1)] for v, w in zip(vectors[40:], words[40:])]
    correct, n = token_accuracy(tags[40:], predicted)
    assert correct / n > 0.95
    with pytest.raises(Exception, match="every word needs one"):
        WordTagsModel.fit([np.zeros((2, 4))], [["a"]], [["DET"]], labels)


@pytest.mark.model
def test_a_pos_project_is_trained_from_word_tags_served_a_tag_per_word_and_exported(client):
    assert client.post("/setup", json={"project": "5.1", "schema": POS}).status_code == 200
    rng = np.random.default_rng(1)
    data = [sentence(rng) for _ in range(30)]
    # before any annotation the tagger has nothing to say, and says so in the log (no LLM guesses tags)
    untrained = client.post("/predict", json={"project": "5.1", "tasks": [{"id": 1, "data": {"text": data[0][0]}}]})
    assert untrained.status_code == 200 and untrained.json()["results"][0]["result"] == []
    for i, (text, spans) in enumerate(data[:24]):
        assert webhook(client, 300 + i, 300 + i, text, regions(spans), project=5).status_code == 200
    client.app.state.worker.run_pending()
    tasks = [{"id": 900 + i, "data": {"text": t}} for i, (t, _) in enumerate(data[24:])]
    results = client.post("/predict", json={"project": "5.1", "tasks": tasks}).json()["results"]
    right = total = 0
    for (text, spans), res in zip(data[24:], results):
        assert [(r["value"]["start"], r["value"]["end"]) for r in res["result"]] == [(a, b) for a, b, _ in spans]
        assert all(r["type"] == "labels" and r["value"]["text"] == text[r["value"]["start"]:r["value"]["end"]]
                   and 0 < r["score"] <= 1 for r in res["result"])
        assert 0 <= res["score"] <= 1 and res["model_version"] == "labelloop-v1"
        right += sum(r["value"]["labels"][0] == tag for r, (_, _, tag) in zip(res["result"], spans))
        total += len(spans)
    assert right / total > 0.9
    # the saved version loads again from its files (plain arrays, no pickles) and tags the same
    service = client.app.state.service
    folder = service.store.models_dir / "5" / "labelloop-v1"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["controls"][0]["type"] == "word_tags"
    loaded = service.features.load(folder, meta["controls"][0])
    served = service.registry.current(5).model(parse_label_config(POS).controls[0])
    texts = [t for t, _ in data[24:]]
    assert [s for s, _ in loaded.predict_spans(texts)] == [s for s, _ in served.predict_spans(texts)]
    ls_tasks = [{"id": i, "data": {"text": t}, "annotations": [{"id": i, "result": regions(s)}]}
                for i, (t, s) in enumerate(data[:4])]
    train, test, report, _ = build_dataset(ls_tasks, POS, ExportConfig(test_fraction=0.0))
    record = (train + test)[0]
    assert record["tokens"] == [data[0][0][a:b] for a, b, _ in data[0][1]]
    assert record["tags"] == [tag for _, _, tag in data[0][1]]


@pytest.mark.model
def test_the_audit_split_scores_the_tagger_by_token_accuracy(make_client, caplog):
    client = make_client(audit_share=0.5)
    client.post("/setup", json={"project": "6.1", "schema": POS})
    rng = np.random.default_rng(2)
    for i, (text, spans) in enumerate(sentence(rng) for _ in range(40)):
        webhook(client, 400 + i, 400 + i, text, regions(spans), project=6)
    with caplog.at_level("INFO", logger="labelloop.serving.training"):
        client.app.state.worker.run_pending()
    service = client.app.state.service
    meta = json.loads((service.store.models_dir / "6" / "labelloop-v1" / "meta.json").read_text())
    scored = meta["audit"]["pos"]
    assert service.current_record(6).audit == {"pos": scored}  # what the Active learning page shows
    n_audit = len(service.annotations.audit_records(6))
    assert scored["sentences"] == n_audit > 0 and scored["words"] >= 6 * n_audit
    assert scored["interval"][0] <= scored["token_accuracy"] <= scored["interval"][1]
    assert "pos on the audit split: token accuracy" in caplog.text and "sentences" in caplog.text


def test_word_tagged_records_are_refused_by_augmentation():
    with pytest.raises(ConfigError, match="can't be augmented"):
        augment_records([{"text": "A dog", "tokens": ["A", "dog"], "tags": ["DET", "NOUN"]}], [], progress=False)


def test_annotators_agree_word_by_word():
    from labelloop.data.dataset import agreement_stats

    text = "The dog runs ."
    a = regions([(0, 3, "DET"), (4, 7, "NOUN"), (8, 12, "VERB"), (13, 14, "PUNCT")])
    b = regions([(0, 3, "DET"), (4, 7, "NOUN"), (8, 12, "NOUN")])  # one word differs, one left untagged
    stats = agreement_stats([{"id": 1, "data": {"text": text}, "annotations": [{"result": a}, {"result": b}]}],
                            parse_label_config(POS).controls[0])
    assert stats["full_agreement"] == 0.0 and stats["word_agreement"] == 2 / 3


# Sentences as a Penn Treebank annotator splits them: "does|n't", "U.S." and "1.5" whole, "$" apart.
TREEBANK = [
    [("It", "PRON"), ("does", "VERB"), ("n't", "PART"), ("cost", "VERB"), ("$", "SYM"), ("1.5", "NUM"),
     ("million", "NUM"), ("in", "ADP"), ("the", "DET"), ("U.S.", "PROPN"), ("today", "NOUN"), (".", "PUNCT")],
    [("Mr.", "PROPN"), ("Smith", "PROPN"), ("ca", "VERB"), ("n't", "PART"), ("pay", "VERB"), ("2.5", "NUM"),
     ("billion", "NUM"), (",", "PUNCT"), ("U.S.", "PROPN"), ("officials", "NOUN"), ("said", "VERB"), (".", "PUNCT")],
    [("She", "PRON"), ("is", "VERB"), ("n't", "PART"), ("in", "ADP"), ("the", "DET"), ("U.K.", "PROPN"),
     ("with", "ADP"), ("Mr.", "PROPN"), ("Jones", "PROPN"), (".", "PUNCT")],
]


def written(tokens):
    """The text an annotator sees, and their regions over it."""
    text = ""
    for word, _ in tokens:
        glue = not text or word in {".", ",", "n't"} or text.endswith("$")
        text += word if glue else " " + word
    spans, at = [], 0
    for word, tag in tokens:
        start = text.index(word, at)
        spans.append(Span(start, start + len(word), tag))
        at = start + len(word)
    return text, spans


def test_the_annotators_word_boundaries_are_learned_and_carry_over_to_new_text():
    from labelloop.wordtags import Words

    texts, spans = zip(*(written(t) for t in TREEBANK))
    words = Words.learn(texts, spans)
    new = "He won't pay 3.7 tons to Mr. Li of the U.K. today."
    assert [new[a:b] for a, b in words.ranges(new)] == ["He", "wo", "n't", "pay", "3.7", "tons", "to", "Mr.", "Li",
                                                        "of", "the", "U.K.", "today", "."]
    assert Words.from_dict(json.loads(json.dumps(words.to_dict()))) == words  # what a saved model keeps
    assert [new[a:b] for a, b in Words().ranges(new)][:3] == ["He", "won't", "pay"]  # nothing learned: our words


def test_dense_tagging_is_recognised_from_the_annotations_and_entity_spans_are_not():
    from labelloop.wordtags import is_dense

    texts, spans = zip(*(written(t) for t in TREEBANK))
    assert is_dense(texts, spans)
    mentions = [[s for s in row if s.label == "PROPN"] for row in spans]  # a few names per sentence
    assert not is_dense(texts, mentions)
    assert not is_dense(texts[:1], [spans[0][:2]])  # too few words to tell


@pytest.mark.model
def test_a_pos_project_made_in_the_label_studio_editor_is_tagged_word_by_word_on_its_annotators_words(client):
    """``<Labels>`` with a tag set and no LabelLoop attribute, as Label Studio's editor writes it."""
    config = ('<View><Labels name="pos" toName="text">' + "".join(
        f'<Label value="{t}"/>' for t in ["PRON", "VERB", "PART", "SYM", "NUM", "ADP", "DET", "PROPN", "NOUN",
                                          "PUNCT"]) + '</Labels><Text name="text" value="$text"/></View>')
    assert client.post("/setup", json={"project": "8.1", "schema": config}).status_code == 200
    (spec,) = parse_label_config(config).controls
    assert spec.kind == "labels"  # nothing in the config says "dense": the annotations will
    for i in range(12):
        text, spans = written(TREEBANK[i % 3])
        result = regions([(s.start, s.end, s.label) for s in spans])
        assert webhook(client, 800 + i, 800 + i, text, result, project=8).status_code == 200
    client.app.state.worker.run_pending()
    new = "She isn't in the U.S. with Mr. Smith."
    res = client.post("/predict", json={"project": "8.1", "tasks": [{"id": 1, "data": {"text": new}}]}).json()
    got = [(r["value"]["text"], r["value"]["labels"][0]) for r in res["results"][0]["result"]]
    assert [w for w, _ in got] == ["She", "is", "n't", "in", "the", "U.S.", "with", "Mr.", "Smith", "."]
    assert dict(got)["n't"] == "PART" and dict(got)["U.S."] == "PROPN" and dict(got)["."] == "PUNCT"
    service = client.app.state.service
    meta = json.loads((service.store.models_dir / "8" / "labelloop-v1" / "meta.json").read_text())
    assert meta["controls"][0]["type"] == "word_tags" and "n't" in meta["controls"][0]["words"]["suffixes"]
