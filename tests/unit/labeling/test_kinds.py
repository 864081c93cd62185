"""The labeling vocabulary: every kind parses its answers, refuses malformed ones and builds its regions;
Taxonomy end to end; spans that respect combining marks and zero-width characters."""

import unicodedata

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelloop.errors import AnnotationError, UnsupportedConfigError
from labelloop.labeling.kinds import KINDS, answer_of, export_value, kind_for_tag, kind_of, snap_spans
from labelloop.labeling.schema import parse_label_config
from labelloop.spans import Span

TEXT = '<Text name="text" value="$text"/>'
TAXONOMY = f"""<View>{TEXT}<Taxonomy name="topic" toName="text">
<Choice value="Sports"><Choice value="Tennis"/><Choice value="Football"/></Choice>
<Choice value="Food"><Choice value="Baking"/></Choice></Taxonomy></View>"""
CONFIGS = {
    "choices": f'<View>{TEXT}<Choices name="c" toName="text"><Choice value="A"/><Choice value="B"/></Choices></View>',
    "taxonomy": TAXONOMY,
    "labels": f'<View>{TEXT}<Labels name="c" toName="text"><Label value="PER"/></Labels></View>',
    "tags": f'<View>{TEXT}<Labels name="c" toName="text" dense="true"><Label value="NOUN"/></Labels></View>',
    "relations": f'<View>{TEXT}<Relations><Relation value="coref"/></Relations>'
                 '<Labels name="m" toName="text"><Label value="PER"/></Labels></View>',
    "textarea": f'<View>{TEXT}<TextArea name="c" toName="text"/></View>',
    "rating": f'<View>{TEXT}<Rating name="c" toName="text" maxRating="4"/></View>',
}
GOOD = {
    "choices": [{"from_name": "c", "value": {"choices": ["B"]}}],
    "taxonomy": [{"from_name": "topic", "value": {"taxonomy": [["Sports", "Tennis"]]}}],
    "labels": [{"from_name": "c", "value": {"start": 0, "end": 4, "labels": ["PER"]}}],
    "tags": [{"from_name": "c", "value": {"start": 0, "end": 4, "labels": ["NOUN"]}}],
    "relations": [{"id": "a", "from_name": "m", "value": {"start": 0, "end": 4, "labels": ["PER"]}},
                  {"id": "b", "from_name": "m", "value": {"start": 9, "end": 12, "labels": ["PER"]}},
                  {"type": "relation", "from_id": "b", "to_id": "a", "direction": "right", "labels": ["coref"]}],
    "textarea": [{"from_name": "c", "value": {"text": ["a reply"]}}],
    "rating": [{"from_name": "c", "value": {"rating": 3}}],
}
BAD = {
    "choices": [{"from_name": "c", "value": {"choices": "B"}}, {"from_name": "c", "value": ["B"]}],
    "taxonomy": [{"from_name": "topic", "value": {"taxonomy": ["Sports"]}}],
    "labels": [{"from_name": "c", "value": {"start": "0", "end": 4, "labels": ["PER"]}},
               {"from_name": "c", "value": {"start": 5, "end": 4, "labels": ["PER"]}},
               {"from_name": "c", "value": {"start": 0, "end": 4, "labels": "PER"}}],
    "tags": [{"from_name": "c", "value": {"start": 2, "end": 2, "labels": ["NOUN"]}},
             {"from_name": "c", "value": {"start": 0, "end": 4, "labels": []}}],
    "relations": [{"type": "relation", "from_id": "x", "to_id": "y", "direction": "right"},
                  {"id": "a", "from_name": "m", "value": {"start": 4, "end": 0, "labels": ["PER"]}}],
    "textarea": [{"from_name": "c", "value": {"text": [3]}}],
    "rating": [{"from_name": "c", "value": {"rating": "3"}}, {"from_name": "c", "value": {"rating": True}},
               {"from_name": "c", "value": {"rating": 2.5}}],
}


def test_every_kind_has_a_config_and_recognises_its_own_tag():
    assert set(KINDS) == set(CONFIGS)
    assert kind_for_tag("Labels", {"dense": "true"}).name == "tags" and kind_for_tag("Labels", {}).name == "labels"
    assert kind_for_tag("Relations", {}) is None  # read beside the <Labels> it links, not as a control over <Text>
    assert kind_for_tag("Number", {}) is None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_contract_answer_export_and_malformed_values(kind):
    spec = parse_label_config(CONFIGS[kind]).controls[-1]
    assert kind_of(spec).name == kind
    answer = answer_of(spec, GOOD[kind])
    assert answer is not None
    hash(export_value(spec, answer))  # datasets and agreement compare these
    for bad in BAD[kind]:
        with pytest.raises(AnnotationError):
            answer_of(spec, [bad])
    with pytest.raises(AnnotationError):
        answer_of(spec, {"not": "a list"})
    assert answer_of(spec, [{"from_name": "other", "value": {"choices": ["x"]}}]) in (None, [])


def test_taxonomy_classes_are_every_node_path():
    (spec,) = parse_label_config(TAXONOMY).controls
    assert spec.labels == ("Sports", "Sports / Tennis", "Sports / Football", "Food", "Food / Baking")
    assert spec.paths[1] == ("Sports", "Tennis")
    assert export_value(spec, answer_of(spec, GOOD["taxonomy"])) == "Sports / Tennis"
    probs = np.array([[0.1, 0.6, 0.1, 0.1, 0.1]])
    (pred,) = kind_of(spec).from_probs(spec, probs, "margin")
    (region,) = pred.regions
    assert region["type"] == "taxonomy" and region["value"] == {"taxonomy": [["Sports", "Tennis"]]}
    assert region["score"] == pytest.approx(0.6) and pred.confidence == pytest.approx(0.5)


def test_too_many_labels_is_refused_with_the_limit():
    many = "".join(f'<Choice value="L{i}"/>' for i in range(30))
    with pytest.raises(UnsupportedConfigError, match="up to 20"):
        parse_label_config(f'<View>{TEXT}<Choices name="c" toName="text">{many}</Choices></View>', max_labels=20)
    # Ten controls of 15 labels each pass one by one, and are refused together: the work grows with the total.
    few = "".join(f'<Choice value="L{i}"/>' for i in range(15))
    ten = "".join(f'<Choices name="c{k}" toName="text">{few}</Choices>' for k in range(10))
    with pytest.raises(UnsupportedConfigError, match="150 labels in all"):
        parse_label_config(f"<View>{TEXT}{ten}</View>", max_labels=20)
    with pytest.raises(UnsupportedConfigError, match="characters"):
        parse_label_config(f'<View>{TEXT}<Choices name="c" toName="text">{few}</Choices>{" " * 256_001}</View>')


def test_the_zero_shot_cache_is_bounded():
    from labelloop.labeling.schema import ControlSpec
    from labelloop.models import ZERO_SHOT_CACHE, Features

    class Encoder:
        name = "stub"

        def embed(self, texts):
            return np.ones((len(texts), 4), np.float32)

    features = Features(lambda: Encoder())
    for k in range(ZERO_SHOT_CACHE + 20):
        features.zero_shot(ControlSpec(kind="choices", from_name=f"c{k}", to_name="text", value_key="text",
                                       labels=("a", "b")))
    assert len(features._zero_shot) == ZERO_SHOT_CACHE


WORDS = st.text(alphabet=st.sampled_from("abcXYZ"), min_size=1, max_size=5)
MARKS = st.text(alphabet=st.sampled_from("\u0301\u0308\u0327"), max_size=2)
GAPS = st.sampled_from([" ", "\u200b", " \u200b", "\ufeff"])


@given(st.lists(st.tuples(WORDS, MARKS), min_size=1, max_size=6), st.lists(GAPS, min_size=6, max_size=6),
       st.data())
def test_snapped_spans_keep_marks_with_their_letters_and_never_edge_on_zero_width(words, gaps, data):
    text, starts = "", []
    for (word, marks), gap in zip(words, gaps):
        starts.append((len(text), len(text) + len(word)))
        text += word + marks + gap
    i = data.draw(st.integers(0, len(starts) - 1))
    start, end = starts[i]
    (span,) = snap_spans(text, [Span(start, end, "X")]) or [None]
    assert span is not None
    assert not unicodedata.category(text[span.end]).startswith("M") if span.end < len(text) else True
    assert text[span.start] not in "\u200b\ufeff" and text[span.end - 1] not in "\u200b\ufeff"
    assert text[span.start:span.end] == words[i][0] + words[i][1]


def test_rating_is_a_kind_of_its_own_from_config_to_dataset_row_and_back():
    """<Rating> lives in one class: parsing, answers, the dataset row, label counts, agreement, the regions a
    dataset row becomes, and the single-label control that curves and the gate measure."""
    from labelloop.data.dataset import _record, agreement_stats
    from labelloop.labeling.kinds import RatingKind
    from labelloop.quality.insights import progress

    schema = parse_label_config(CONFIGS["rating"])
    (spec,) = schema.controls
    assert (spec.kind, spec.labels, schema.single_choice()) == ("rating", ("1", "2", "3", "4"), spec)
    assert parse_label_config(f'<View>{TEXT}<Rating name="r" toName="text"/></View>').controls[0].labels[-1] == "5"
    for bad in ('maxRating="0"', 'maxRating="stars"', 'maxRating="1000"'):
        with pytest.raises(UnsupportedConfigError, match="maxRating"):
            parse_label_config(f'<View>{TEXT}<Rating name="r" toName="text" {bad}/></View>')
    kind = kind_of(spec)
    assert answer_of(spec, [{"from_name": "c", "value": {"rating": 0}}]) is None  # cleared stars: no answer
    assert answer_of(spec, [{"from_name": "c", "value": {"rating": 9}}]) is None  # beyond maxRating
    assert _record("Good value.", export_value(spec, answer_of(spec, GOOD["rating"])), spec) == {
        "text": "Good value.", "label": "3"}
    assert kind.regions_for(spec, {"text": "Good value.", "label": "3"}) == [
        {"from_name": "c", "to_name": "text", "type": "rating", "value": {"rating": 3}}]
    (pred,) = kind.from_probs(spec, np.array([[0.1, 0.1, 0.2, 0.6]]), "margin")
    assert pred.regions[0]["value"] == {"rating": 4} and isinstance(RatingKind(), type(kind))

    def annotation(stars, who):
        return {"result": [{"from_name": "c", "to_name": "text", "type": "rating", "value": {"rating": stars}}],
                "completed_by": who, "created_at": "2026-12-01T10:00:00"}

    tasks = [{"id": 1, "data": {"text": "a"}, "annotations": [annotation(3, 1), annotation(3, 2)]},
             {"id": 2, "data": {"text": "b"}, "annotations": [annotation(1, 1), annotation(4, 2)]}]
    stats = agreement_stats(tasks, spec)
    assert stats["full_agreement"] == 0.5 and "fleiss_kappa" in stats
    assert progress(tasks, spec)["labels"] == {"3": 2, "1": 1, "4": 1}
