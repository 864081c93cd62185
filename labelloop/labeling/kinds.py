"""Label Studio's control kinds: one class each, and the :data:`KINDS` registry.

A kind knows three things about its control and nothing about serving:

- its **answer** in an annotation (``answer``: the chosen labels, the taxonomy paths, the spans or the
  text; a malformed value raises :class:`~labelloop.errors.AnnotationError`),
- its **training target** and how a model for it is fitted (``fit``, through a :class:`Learner`),
- its **result region** (``predict``: asks a :class:`Source` for probabilities, spans or drafts and
  formats Label Studio results with a confidence per task).

Adding a control kind is one class here plus its tag in :data:`labelloop.labeling.schema.TAGS`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from labelloop.errors import AnnotationError, ConfigError
from labelloop.labeling.schema import PATH_SEPARATOR, ControlSpec
from labelloop.relations import Link, Links
from labelloop.spans import Span
from labelloop.uncertainty import confidence


@dataclass(frozen=True)
class SpanPrediction:
    """Spans found in one text and the model's confidence for the whole text (None: unknown)."""

    spans: list[Span]
    confidence: float | None


@dataclass(frozen=True)
class LinkPrediction:
    """Links found between the spans of one text, and the model's confidence for the whole text."""

    links: list[Link]
    confidence: float | None


@dataclass(frozen=True)
class Draft:
    """A drafted response and its confidence."""

    text: str
    confidence: float | None


@dataclass(frozen=True)
class Prediction:
    """What one control predicts for one task: Label Studio result regions and a confidence."""

    regions: list[dict]
    confidence: float | None


class Source(Protocol):
    """Where predictions come from (a trained model, zero-shot, an LLM, an ensemble): see serving.predictors.

    Each method answers for one control and a list of texts; ``None`` means this source has nothing for it.
    """

    def class_probs(self, spec: ControlSpec, texts: list[str]) -> np.ndarray | None: ...

    def spans(self, spec: ControlSpec, texts: list[str]) -> list[SpanPrediction] | None: ...

    def drafts(self, spec: ControlSpec, texts: list[str]) -> list[Draft] | None: ...

    def word_tags(self, spec: ControlSpec, texts: list[str]) -> list[SpanPrediction] | None: ...

    def links(self, spec: ControlSpec, texts: list[str], spans: list[list[Span]]) -> list[LinkPrediction] | None: ...


class Learner(Protocol):
    """Fits the backend's fast models; :class:`labelloop.models.Features` is the implementation."""

    def fit_classifier(self, spec: ControlSpec, texts: list[str], targets: np.ndarray) -> Any: ...

    def fit_tagger(self, spec: ControlSpec, texts: list[str], spans: list[list[Span]]) -> Any: ...

    def fit_word_tagger(self, spec: ControlSpec, texts: list[str], spans: list[list[Span]]) -> Any: ...

    def fit_linker(self, spec: ControlSpec, texts: list[str], answers: list[Links]) -> Any: ...


class ControlKind:
    """Base of every kind. ``name`` is the kind in :class:`ControlSpec`, ``tag`` Label Studio's XML tag."""

    name: ClassVar[str]
    tag: ClassVar[str]
    result_type: ClassVar[str]
    trainable: ClassVar[bool] = True
    finetune_tasks: ClassVar[tuple[str, ...]] = ()  # fine-tuning tasks whose models can serve this kind

    def answer(self, spec: ControlSpec, values: list[dict]) -> Any | None:
        """The answer that an annotation's result ``values`` (this control's ``value`` dicts) give, or None."""
        raise NotImplementedError

    def answer_in(self, spec: ControlSpec, result: list[dict]) -> Any | None:
        """The answer in a whole (checked) annotation ``result``: :meth:`answer` of this control's values."""
        values = []
        for item in result:
            if item.get("from_name") != spec.from_name:
                continue
            value = item.get("value")
            if not isinstance(value, dict):
                raise AnnotationError(f"{spec.from_name}: 'value' must be an object, not {type(value).__name__}")
            values.append(value)
        return self.answer(spec, values)

    def audit_score(self, spec: ControlSpec, model: Any, pairs: list[tuple[str, Any]]) -> dict | None:
        """What ``model`` scores on annotated audit ``(text, answer)`` pairs, for kinds measured by more
        than accuracy on one label (None: the kind has no such score, or there is nothing to score)."""
        return None

    def self_trains(self, spec: ControlSpec) -> bool:
        """Whether the backend adds confident pseudo-labels of unannotated tasks when it trains this control
        (where it measured better: single-choice classification)."""
        return False

    def fit(self, spec: ControlSpec, texts: list[str], answers: list[Any], learner: Learner) -> Any:
        raise ConfigError(f"<{self.tag}> controls are not trained by the backend")

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict]] | None = None) -> list[Prediction] | None:
        raise NotImplementedError

    def region(self, spec: ControlSpec, value: dict, score: float | None) -> dict:
        out: dict[str, Any] = {"from_name": spec.from_name, "to_name": spec.to_name, "type": self.result_type,
                               "value": value}
        if score is not None:
            out["score"] = float(score)
        return out

    def example(self, spec: ControlSpec, answer: Any) -> Any:
        """The answer as a few-shot prompt shows it (a label name, the spans, the response)."""
        return answer

    def export(self, spec: ControlSpec, answer: Any) -> Any:
        """A hashable form of ``answer`` (what datasets store and annotators are compared on)."""
        return answer

    def serves_task(self, spec: ControlSpec, task: str) -> bool:
        """Whether a fine-tuned model of ``task`` ("classification", "multi-label", "ner") can serve ``spec``."""
        return task in self.finetune_tasks


def _strings(value: Any, key: str, spec: ControlSpec) -> list:
    items = value.get(key, [])
    if not isinstance(items, list):
        raise AnnotationError(f"{spec.from_name}: {key!r} must be a list, not {type(items).__name__}")
    return items


class ClassificationKind(ControlKind):
    """A kind whose model outputs probabilities over ``spec.labels`` (one row per text)."""

    def classes(self, spec: ControlSpec, answer: Any) -> list[int]:
        """Indices into ``spec.labels`` that an answer chose."""
        raise NotImplementedError

    def value(self, spec: ControlSpec, chosen: list[int]) -> dict:
        raise NotImplementedError

    def example(self, spec: ControlSpec, answer: Any) -> str:
        return spec.labels[self.classes(spec, answer)[0]]

    def targets(self, spec: ControlSpec, answers: list[Any]) -> np.ndarray:
        """Class indices (n,), or a 0/1 matrix (n, n_labels) for multiple choice."""
        picked = [self.classes(spec, a) for a in answers]
        if spec.multiple:
            y = np.zeros((len(picked), len(spec.labels)), dtype=np.float32)
            for i, ks in enumerate(picked):
                y[i, ks] = 1.0
            return y
        return np.asarray([ks[0] for ks in picked], dtype=np.int64)

    def fit(self, spec: ControlSpec, texts: list[str], answers: list[Any], learner: Learner) -> Any:
        return learner.fit_classifier(spec, texts, self.targets(spec, answers))

    def self_trains(self, spec: ControlSpec) -> bool:
        return not spec.multiple

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict]] | None = None) -> list[Prediction] | None:
        probs = source.class_probs(spec, texts)
        if probs is None:
            return None
        return self.from_probs(spec, probs, strategy)

    def from_probs(self, spec: ControlSpec, probs: np.ndarray, strategy: str) -> list[Prediction]:
        """One region per row of ``probs`` (n_texts, n_labels); the region's score is the chosen labels' mean
        probability, the task's confidence comes from ``strategy``."""
        conf = confidence(probs, strategy, multi_label=spec.multiple)
        out = []
        for p, c in zip(probs, conf, strict=True):
            chosen = ([k for k in range(len(p)) if p[k] >= 0.5] or [int(p.argmax())]) if spec.multiple \
                else [int(p.argmax())]
            out.append(Prediction([self.region(spec, self.value(spec, chosen), float(np.mean(p[chosen])))], float(c)))
        return out


class ChoicesKind(ClassificationKind):
    """``<Choices>``: one label, or several with ``choice="multiple"``."""

    name = "choices"
    tag = "Choices"
    result_type = "choices"

    def answer(self, spec: ControlSpec, values: list[dict]) -> list[str] | None:
        chosen = [c for v in values for c in _strings(v, "choices", spec)]
        if any(not isinstance(c, str) for c in chosen):
            raise AnnotationError(f"{spec.from_name}: every choice must be a string")
        known = [c for c in dict.fromkeys(chosen) if c in spec.labels]
        return known or None

    def classes(self, spec: ControlSpec, answer: list[str]) -> list[int]:
        return [spec.labels.index(c) for c in answer]

    def value(self, spec: ControlSpec, chosen: list[int]) -> dict:
        return {"choices": [spec.labels[k] for k in chosen]}

    def export(self, spec: ControlSpec, answer: list[str]) -> Any:
        chosen = tuple(sorted(answer))
        return chosen if spec.multiple else chosen[0]

    def serves_task(self, spec: ControlSpec, task: str) -> bool:
        return task == ("multi-label" if spec.multiple else "classification")


class TaxonomyKind(ClassificationKind):
    """``<Taxonomy>``: a path through a tree of choices. The model picks one node's path.

    Every node is a class named by its path (``"Sports / Tennis"``), so zero-shot compares the text with
    the whole path and a head learns from annotated paths like any single-choice control.
    """

    name = "taxonomy"
    tag = "Taxonomy"
    result_type = "taxonomy"
    finetune_tasks = ("classification",)

    def answer(self, spec: ControlSpec, values: list[dict]) -> list[tuple[str, ...]] | None:
        paths = []
        for path in (p for v in values for p in _strings(v, "taxonomy", spec)):
            if not isinstance(path, list) or not all(isinstance(x, str) for x in path):
                raise AnnotationError(f"{spec.from_name}: a taxonomy path must be a list of strings")
            if tuple(path) in spec.paths:
                paths.append(tuple(path))
        return list(dict.fromkeys(paths)) or None

    def classes(self, spec: ControlSpec, answer: list[tuple[str, ...]]) -> list[int]:
        return [spec.paths.index(p) for p in answer[:1]]

    def value(self, spec: ControlSpec, chosen: list[int]) -> dict:
        return {"taxonomy": [list(spec.paths[k]) for k in chosen]}

    def export(self, spec: ControlSpec, answer: list[tuple[str, ...]]) -> str:
        return PATH_SEPARATOR.join(answer[0])


class LabelsKind(ControlKind):
    """``<Labels>`` over text: entity spans with exact character offsets, or, where the annotations tag nearly
    every word (part of speech as Label Studio's editor makes it), a tag for every word (:meth:`dense`)."""

    name = "labels"
    tag = "Labels"
    result_type = "labels"
    finetune_tasks: ClassVar[tuple[str, ...]] = ("ner",)

    def answer(self, spec: ControlSpec, values: list[dict]) -> list[Span]:
        spans = []
        for v in values:
            start, end, labels = v.get("start"), v.get("end"), v.get("labels")
            if not (type(start) is int and type(end) is int and 0 <= start < end):
                raise AnnotationError(f"{spec.from_name}: a span needs integer start < end, got {start!r}, {end!r}")
            if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
                raise AnnotationError(f"{spec.from_name}: a span needs 'labels', a non-empty list of strings")
            spans.append(Span(start, end, labels[0]))
        return spans  # no spans is an answer too: the text has no entity

    def export(self, spec: ControlSpec, answer: list[Span]) -> tuple:
        return tuple(sorted((s.start, s.end, s.label) for s in answer))

    def dense(self, spec: ControlSpec, texts: list[str], answers: list[Any]) -> bool:
        """Whether the annotators tag every word rather than a few mentions (:func:`labelloop.wordtags.is_dense`)."""
        from labelloop.wordtags import is_dense

        return is_dense(texts, answers)

    def fit(self, spec: ControlSpec, texts: list[str], answers: list[Any], learner: Learner) -> Any:
        spans = [[s for s in a if s.end <= len(t)] for t, a in zip(texts, answers, strict=True)]
        if self.dense(spec, texts, spans):
            return learner.fit_word_tagger(spec, texts, spans)
        return learner.fit_tagger(spec, texts, spans)

    def audit_score(self, spec: ControlSpec, model: Any, pairs: list[tuple[str, Any]]) -> dict | None:
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
                regions: list[list[dict]] | None = None) -> list[Prediction] | None:
        found = source.spans(spec, texts)
        if found is None:
            return None
        return [Prediction([self.span_region(spec, k, text, span) for k, span in enumerate(snap_spans(text, p.spans))],
                           p.confidence) for text, p in zip(texts, found, strict=True)]

    def span_region(self, spec: ControlSpec, k: int, text: str, span: Span) -> dict:
        region = self.region(spec, {"start": span.start, "end": span.end, "text": text[span.start:span.end],
                                    "labels": [span.label]}, span.score)
        return {"id": f"{spec.from_name}-{k}", **region}


class WordTagsKind(LabelsKind):
    """``<Labels dense="true">``: every word carries one tag (part of speech), as one-word ``labels`` regions.

    Annotations read like ``<Labels>`` spans; the tagger learns the annotators' words and each word's tag from
    the regions (:mod:`labelloop.wordtags`) and predicts a region for every word, from the first annotation on.
    """

    name = "tags"
    finetune_tasks: ClassVar[tuple[str, ...]] = ()

    def dense(self, spec: ControlSpec, texts: list[str], answers: list[Any]) -> bool:
        return True

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict]] | None = None) -> list[Prediction] | None:
        found = source.word_tags(spec, texts)
        if found is None:
            return None
        return [Prediction([self.span_region(spec, k, text, span) for k, span in enumerate(p.spans)], p.confidence)
                for text, p in zip(texts, found, strict=True)]


class RelationsKind(ControlKind):
    """``<Relations>``: labeled links between the regions of a ``<Labels>`` control (coreference and others).

    The answer is :class:`~labelloop.relations.Links`; predictions link the spans that the ``<Labels>``
    control predicted just before, by their region ids.
    """

    name = "relations"
    tag = "Relations"
    result_type = "relation"

    def answer(self, spec: ControlSpec, values: list[dict]) -> Any | None:
        raise NotImplementedError  # a relation has no value of its own: see answer_in

    def answer_in(self, spec: ControlSpec, result: list[dict]) -> Links | None:
        """The spans and links of an annotation; None when it has no region of the linked control (spans
        without a relation are an answer: nothing links them)."""
        regions: dict[str, Span] = {}
        for item in result:
            if item.get("from_name") == spec.to_name and item.get("type", "labels") == "labels" and "id" in item:
                value = item.get("value")
                if not isinstance(value, dict):
                    raise AnnotationError(f"{spec.to_name}: 'value' must be an object, not {type(value).__name__}")
                (span,) = LabelsKind().answer(spec, [value])
                regions[str(item["id"])] = span
        spans = sorted(set(regions.values()), key=lambda s: (s.start, s.end, s.label))
        if not spans:
            if any(item.get("type") == "relation" for item in result):
                raise AnnotationError(f"a relation links regions, and the annotation has no {spec.to_name!r} region")
            return None
        index = {s: k for k, s in enumerate(spans)}
        links = []
        for item in result:
            if item.get("type") != "relation":
                continue
            source, target = str(item.get("from_id")), str(item.get("to_id"))
            if source not in regions or target not in regions:
                raise AnnotationError(f"a relation links region {source!r} to {target!r}, and the annotation has no "
                                      f"{spec.to_name!r} region with that id")
            labels = item.get("labels") or ([spec.labels[0]] if len(spec.labels) == 1 else [])
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise AnnotationError("a relation's 'labels' must be a list of strings")
            label = next((x for x in labels if x in spec.labels), None)
            if label is None:
                continue  # a relation with no label of this config: not an answer to learn from
            i, j = index[regions[source]], index[regions[target]]
            links.append((j, i, label) if item.get("direction") == "left" else (i, j, label))
        return Links(tuple(spans), tuple(sorted(set(links))))

    def export(self, spec: ControlSpec, answer: Links) -> tuple:
        return tuple((s.start, s.end, s.label) for s in answer.spans), answer.links

    def example(self, spec: ControlSpec, answer: Links) -> Any:
        return answer

    def fit(self, spec: ControlSpec, texts: list[str], answers: list[Any], learner: Learner) -> Any:
        kept = [(t, a) for t, a in zip(texts, answers, strict=True) if all(s.end <= len(t) for s in a.spans)]
        return learner.fit_linker(spec, [t for t, _ in kept], [a for _, a in kept])

    def audit_score(self, spec: ControlSpec, model: Any, pairs: list[tuple[str, Any]]) -> dict | None:
        """Link F1 (and MUC and B³ of the chains) on the gold mentions of the annotated audit tasks."""
        from labelloop.relations import coreference_scores, link_f1

        if not pairs:
            return None
        found = model.predict_links([t for t, _ in pairs], [list(a.spans) for _, a in pairs])
        predicted = [[(x.source, x.target, x.label) for x in links] for links, _ in found]
        gold = [a for _, a in pairs]
        return {**link_f1(gold, predicted), **coreference_scores(gold, predicted), "tasks": len(pairs)}

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict]] | None = None) -> list[Prediction] | None:
        linked = [[r for r in task if r.get("from_name") == spec.to_name and "id" in r and r.get("type") == "labels"]
                  for task in (regions or [[] for _ in texts])]
        spans = [[Span(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in task]
                 for task in linked]
        found = source.links(spec, texts, spans)
        if found is None:
            return None
        out = []
        for task, p in zip(linked, found, strict=True):
            made = [{"from_id": task[x.source]["id"], "to_id": task[x.target]["id"], "type": "relation",
                     "direction": "right", **({"labels": [x.label]} if x.label else {}), "score": float(x.score)}
                    for x in p.links]
            out.append(Prediction(made, p.confidence))
        return out


class TextAreaKind(ControlKind):
    """``<TextArea>``: a free-text response, drafted by an LLM for annotators to correct."""

    name = "textarea"
    tag = "TextArea"
    result_type = "textarea"
    trainable = False

    def answer(self, spec: ControlSpec, values: list[dict]) -> str | None:
        texts = [t for v in values for t in _strings(v, "text", spec)]
        if any(not isinstance(t, str) for t in texts):
            raise AnnotationError(f"{spec.from_name}: 'text' must be a list of strings")
        return "\n".join(texts).strip() or None

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict]] | None = None) -> list[Prediction] | None:
        drafts = source.drafts(spec, texts)
        if drafts is None:
            return None
        return [Prediction([self.region(spec, {"text": [d.text]}, d.confidence)] if d.text else [],
                           d.confidence or 0.0) for d in drafts]


KINDS: dict[str, ControlKind] = {k.name: k for k in (ChoicesKind(), TaxonomyKind(), LabelsKind(), WordTagsKind(),
                                                     RelationsKind(), TextAreaKind())}


def kind_of(spec: ControlSpec) -> ControlKind:
    return KINDS[spec.kind]


def answer_of(spec: ControlSpec, result: Any) -> Any | None:
    """The answer an annotation's whole ``result`` list gives for ``spec`` (None: it did not answer it).

    Raises :class:`AnnotationError` when the result or this control's values have the wrong shape.
    """
    if not isinstance(result, list):
        raise AnnotationError(f"an annotation's result must be a list, not {type(result).__name__}")
    if not all(isinstance(item, dict) for item in result):
        raise AnnotationError("every item of an annotation's result must be an object")
    return kind_of(spec).answer_in(spec, result)


def export_value(spec: ControlSpec, answer: Any) -> Any:
    """A hashable value of an answer, for comparing annotators and writing datasets."""
    return kind_of(spec).export(spec, answer)


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
