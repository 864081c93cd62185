"""Span offsets survive the trip text -> words -> BIO tags -> spans exactly."""

import re

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labelloop.spans import Span, n_tags, spans_to_tags, tags_to_spans, word_ranges

LABELS = ("PER", "LOC", "ORG")
WORD = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd")), min_size=1, max_size=8)


def words_of(text):
    """Whitespace words as (offsets, word_ids), the shape the encoder hands over."""
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    return np.array(offsets, dtype=np.int64).reshape(-1, 2), np.arange(len(offsets))


def one_hot(tags, k):
    probs = np.zeros((len(tags), k))
    probs[np.arange(len(tags)), tags] = 1.0
    return probs


@st.composite
def annotated_text(draw):
    words = draw(st.lists(WORD, min_size=1, max_size=25))
    seps = draw(st.lists(st.sampled_from([" ", "  ", "\n", " \t "]), min_size=len(words), max_size=len(words)))
    text = "".join(w + s for w, s in zip(words, seps))
    ranges, _ = word_ranges(*words_of(text))
    spans, w = [], 0
    while w < len(ranges):
        if draw(st.booleans()):
            length = draw(st.integers(1, min(3, len(ranges) - w)))
            spans.append(Span(int(ranges[w, 0]), int(ranges[w + length - 1, 1]), draw(st.sampled_from(LABELS))))
            w += length
        else:
            w += 1
    return text, spans


@settings(max_examples=200, deadline=None)
@given(annotated_text())
def test_word_aligned_spans_round_trip_exactly(sample):
    text, spans = sample
    ranges, _ = word_ranges(*words_of(text))
    tags = spans_to_tags(ranges, spans, LABELS)
    decoded = tags_to_spans(ranges, one_hot(tags, n_tags(len(LABELS))), LABELS)
    assert [(s.start, s.end, s.label) for s in decoded] == [(s.start, s.end, s.label) for s in spans]
    for s in decoded:
        assert text[s.start : s.end] == text[s.start : s.end].strip()
        assert 0 <= s.start < s.end <= len(text)


def test_adjacent_entities_of_one_type_stay_two():
    text = "Paris London"
    ranges, _ = word_ranges(*words_of(text))
    spans = [Span(0, 5, "LOC"), Span(6, 12, "LOC")]
    decoded = tags_to_spans(ranges, one_hot(spans_to_tags(ranges, spans, LABELS), 7), LABELS)
    assert [(text[s.start : s.end], s.label) for s in decoded] == [("Paris", "LOC"), ("London", "LOC")]


def test_stray_inside_tag_opens_a_span_and_scores_are_means():
    ranges = np.array([[0, 3], [4, 7], [8, 11]])
    probs = np.full((3, 7), 0.0)
    probs[0, 0] = 1.0
    probs[1, 4] = 0.8  # I-LOC after O
    probs[1, 0] = 0.2
    probs[2, 4] = 0.6  # I-LOC continues
    probs[2, 0] = 0.4
    (span,) = tags_to_spans(ranges, probs, LABELS)
    assert (span.start, span.end, span.label) == (4, 11, "LOC")
    assert span.score == np.mean([0.8, 0.6])


def test_partial_overlap_marks_the_whole_word_and_unknown_labels_are_ignored():
    ranges = np.array([[0, 6], [7, 12]])
    tags = spans_to_tags(ranges, [Span(2, 5, "ORG"), Span(7, 12, "MISC")], LABELS)
    assert tags.tolist() == [5, 0]


def test_word_ranges_merge_subword_tokens():
    offsets = np.array([[0, 4], [4, 7], [8, 10]])
    ranges, first = word_ranges(offsets, np.array([0, 0, 1]))
    assert ranges.tolist() == [[0, 7], [8, 10]]
    assert first.tolist() == [0, 2]
