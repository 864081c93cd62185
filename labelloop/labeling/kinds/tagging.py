"""Span kinds over text: entity spans (``<Labels>``) and a tag on every word (``<Labels dense="true">``), and
spans that respect the text's characters."""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Mapping
from typing import Any, ClassVar

from labelloop.errors import AnnotationError
from labelloop.labeling.kinds.base import ControlKind, Learner, Prediction, Source
from labelloop.labeling.spec import ControlSpec
from labelloop.spans import Span


class LabelsKind(ControlKind):
    """``<Labels>`` over text: entity spans with exact character offsets, or, where the annotations tag nearly
    every word (part of speech as Label Studio's editor makes it), a tag for every word (:meth:`dense`)."""

    name = "labels"
    tag = "Labels"
    result_type = "labels"
    finetune_tasks: ClassVar[tuple[str, ...]] = ("ner",)

    def answer(self, spec: ControlSpec, values: list[dict[str, Any]]) -> list[Span]:
        spans = []
        for v in values:
            start, end, labels = v.get("start"), v.get("end"), v.get("labels")
            if not (type(start) is int and type(end) is int and 0 <= start < end):
                raise AnnotationError(f"{spec.from_name}: a span needs integer start < end, got {start!r}, {end!r}")
            if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
                raise AnnotationError(f"{spec.from_name}: a span needs 'labels', a non-empty list of strings")
            spans.append(Span(start, end, labels[0]))
        return spans  # no spans is an answer too: the text has no entity

    def matches(self, tag: str, attrs: Mapping[str, Any]) -> bool:
        return tag == self.tag and not _dense(attrs)

    def export(self, spec: ControlSpec, answer: list[Span]) -> tuple[Any, ...]:
        return tuple(sorted((s.start, s.end, s.label) for s in answer))

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict[str, Any]:
        return {"text": text, "spans": [{"start": s, "end": e, "label": label} for s, e, label in value]}

    def labels_in(self, spec: ControlSpec, value: Any) -> list[str]:
        return [label for _, _, label in value]

    def regions_for(self, spec: ControlSpec, record: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.span_region(spec, k, record["text"], Span(s["start"], s["end"], s["label"]), scored=False)
                for k, s in enumerate(record.get("spans", []))]

    def dense(self, spec: ControlSpec, texts: list[str], answers: list[Any]) -> bool:
        """Whether the annotators tag every word rather than a few mentions (:func:`labelloop.wordtags.is_dense`)."""
        from labelloop.wordtags import is_dense

        return is_dense(texts, answers)

    def fit(self, spec: ControlSpec, texts: list[str], answers: list[Any], learner: Learner) -> Any:
        spans = [[s for s in a if s.end <= len(t)] for t, a in zip(texts, answers, strict=True)]
        if self.dense(spec, texts, spans):
            return learner.fit_word_tagger(spec, texts, spans)
        return learner.fit_tagger(spec, texts, spans)

    def audit_score(self, spec: ControlSpec, model: Any, pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
        """For word tagging, token accuracy on the regions annotators drew (a word split or joined unlike theirs
        counts as wrong), with its 95% interval; None for entity spans."""
        from labelloop.audit import wilson_interval
        from labelloop.wordtags import region_accuracy

        if not pairs or not self.dense(spec, [t for t, _ in pairs], [a for _, a in pairs]):
            return None
        predicted = [spans for spans, _ in model.predict_spans([t for t, _ in pairs])]
        correct, n = region_accuracy([a for _, a in pairs], predicted)
        if not n:
            return None
        return {"token_accuracy": correct / n, "words": n, "sentences": len(pairs),
                "interval": list(wilson_interval(correct, n))}

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict[str, Any]]] | None = None) -> list[Prediction] | None:
        found = source.spans(spec, texts)
        if found is None:
            return None
        return [Prediction([self.span_region(spec, k, text, span) for k, span in enumerate(snap_spans(text, p.spans))],
                           p.confidence) for text, p in zip(texts, found, strict=True)]

    def span_region(self, spec: ControlSpec, k: int, text: str, span: Span, *, scored: bool = True) -> dict[str, Any]:
        """The region of ``span``, the ``k``-th of the text (with the span's score unless not ``scored``)."""
        region = self.region(spec, {"start": span.start, "end": span.end, "text": text[span.start:span.end],
                                    "labels": [span.label]}, span.score if scored else None)
        return {"id": f"{spec.from_name}-{k}", **region}


class WordTagsKind(LabelsKind):
    """``<Labels dense="true">``: every word carries one tag (part of speech), as one-word ``labels`` regions.

    Annotations read like ``<Labels>`` spans; the tagger learns the annotators' words and each word's tag from
    the regions (:mod:`labelloop.wordtags`) and predicts a region for every word, from the first annotation on.
    """

    name = "tags"
    finetune_tasks: ClassVar[tuple[str, ...]] = ()

    def matches(self, tag: str, attrs: Mapping[str, Any]) -> bool:
        return tag == self.tag and _dense(attrs)

    def dense(self, spec: ControlSpec, texts: list[str], answers: list[Any]) -> bool:
        return True

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict[str, Any]:
        from labelloop.wordtags import tags_of_words, words_of

        words = words_of(text)
        return {"text": text, "tokens": [text[a:b] for a, b in words],
                "tags": tags_of_words(words, [Span(s, e, label) for s, e, label in value])}

    def agreement(self, spec: ControlSpec, texts: list[str], values: list[list[Any]]) -> dict[str, Any]:
        """The share of words two annotators tag alike (a sentence tagged whole alike is rare)."""
        from labelloop.wordtags import tags_of_words, words_of

        same = both = 0
        for text, answers in zip(texts, values, strict=True):
            words = words_of(text)
            tagged = [tags_of_words(words, [Span(*s) for s in v]) for v in answers]
            for first, second in itertools.combinations(tagged, 2):
                pairs = [(x, y) for x, y in zip(first, second, strict=True) if x is not None and y is not None]
                same, both = same + sum(x == y for x, y in pairs), both + len(pairs)
        return {"word_agreement": same / both if both else None}

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict[str, Any]]] | None = None) -> list[Prediction] | None:
        found = source.word_tags(spec, texts)
        if found is None:
            return None
        return [Prediction([self.span_region(spec, k, text, span) for k, span in enumerate(p.spans)], p.confidence)
                for text, p in zip(texts, found, strict=True)]



def _dense(attrs: Mapping[str, Any]) -> bool:
    """``<Labels dense="true">``: a tag for every word."""
    return str(attrs.get("dense", "")).lower() == "true"



_ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}


def snap_spans(text: str, spans: list[Span]) -> list[Span]:
    """Spans whose edges respect the text: a trailing combining mark stays with its letter, and zero-width
    characters at the edges are left out. Spans that become empty are dropped."""
    out = []
    for s in spans:
        start, end = s.start, min(s.end, len(text))
        while end < len(text) and unicodedata.category(text[end]).startswith("M"):
            end += 1
        while start < end and text[start] in _ZERO_WIDTH:
            start += 1
        while end > start and text[end - 1] in _ZERO_WIDTH:
            end -= 1
        if end > start:
            out.append(Span(start, end, s.label, s.score))
    return out
