"""Label Studio's control kinds: one class each, and the :data:`KINDS` registry.

A kind knows everything about its control and nothing about serving:

- its **tag** in a labeling config (``matches``) and the classes it offers (``read_labels``),
- its **answer** in an annotation (``answer``: the chosen labels, the taxonomy paths, the spans, the rating or
  the text; a malformed value raises :class:`~labelloop.errors.AnnotationError`),
- its **training target** and how a model for it is fitted (``fit``, through a :class:`Learner`),
- its **result region** (``predict``: asks a :class:`Source` for probabilities, spans or drafts and
  formats Label Studio results with a confidence per task; ``regions_for`` writes a dataset row back),
- its **dataset row**, the labels a row carries and how annotators' agreement is measured on it
  (``record``, ``labels_in``, ``agreement``), and whether it is single-label classification
  (``single_label``: what learning curves, the gate, weak labels and label-error search measure).

Adding a control kind is one class here, registered in :data:`KINDS`.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from labelloop.errors import AnnotationError, ConfigError, UnsupportedConfigError
from labelloop.labeling.spec import PATH_SEPARATOR, ControlSpec
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
    needs_labels: ClassVar[bool] = True  # a config whose control offers no class is refused

    def matches(self, tag: str, attrs: Mapping[str, Any]) -> bool:
        """Whether a control over ``<Text>`` with this XML ``tag`` and attributes is of this kind."""
        return tag == self.tag

    def read_labels(self, control: Any, element: Callable[[], Any]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        """The classes of the SDK's ``control`` and, for a tree, their paths (``element()`` gives its XML
        element). Raises :class:`UnsupportedConfigError` when the control's attributes can't be served."""
        return tuple(control.labels), ()

    def multiple(self, attrs: Mapping[str, Any]) -> bool:
        """Whether the control takes several of its classes at once."""
        return False

    def single_label(self, spec: ControlSpec) -> bool:
        """Whether an answer is exactly one of ``spec.labels``: single-label classification, the task that
        learning curves, the promotion gate, weak labels and label-error search measure accuracy on."""
        return False

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict:
        """The dataset row for one text and its exported answer (:meth:`export`)."""
        return {"prompt": text, "response": value}

    def labels_in(self, spec: ControlSpec, value: Any) -> list[str]:
        """The labels an exported answer uses, for counting what annotators chose."""
        return ["response"]

    def agreement(self, spec: ControlSpec, texts: list[str], values: list[list[Any]]) -> dict:
        """Agreement measures beyond whole-answer matching, over tasks with two or more exported answers
        (``values``, one list per task, ``texts`` their texts)."""
        return {}

    def regions_for(self, spec: ControlSpec, record: dict) -> list[dict]:
        """Label Studio result regions stating a dataset ``record`` (augmented texts arrive as predictions)."""
        raise ConfigError(f"<{self.tag}> answers can't be written back from a dataset row")

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

    def single_label(self, spec: ControlSpec) -> bool:
        return not spec.multiple

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict:
        return {"text": text, "labels": list(value)} if spec.multiple else {"text": text, "label": value}

    def labels_in(self, spec: ControlSpec, value: Any) -> list[str]:
        return list(value) if spec.multiple else [value]

    def agreement(self, spec: ControlSpec, texts: list[str], values: list[list[Any]]) -> dict:
        """Fleiss' kappa for single-label classification, with the number of raters varying per task."""
        if spec.multiple:
            return {}
        pair = np.mean([sum(c * (c - 1) for c in Counter(v).values()) / (len(v) * (len(v) - 1)) for v in values])
        totals = Counter(x for v in values for x in v)
        p_j = np.array(list(totals.values()), dtype=float) / sum(totals.values())
        p_e = float((p_j**2).sum())
        return {"fleiss_kappa": float((pair - p_e) / (1 - p_e)) if p_e < 1 else 1.0}

    def regions_for(self, spec: ControlSpec, record: dict) -> list[dict]:
        chosen = record["labels"] if spec.multiple else [record["label"]]
        unknown = [c for c in chosen if c not in spec.labels]
        if unknown:
            raise ConfigError(f"{spec.from_name}: {unknown} are not labels of this control ({list(spec.labels)})")
        return [self.region(spec, self.value(spec, [spec.labels.index(c) for c in chosen]), None)]

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

    def multiple(self, attrs: Mapping[str, Any]) -> bool:
        return attrs.get("choice") == "multiple"


class TaxonomyKind(ClassificationKind):
    """``<Taxonomy>``: a path through a tree of choices. The model picks one node's path.

    Every node is a class named by its path (``"Sports / Tennis"``), so zero-shot compares the text with
    the whole path and a head learns from annotated paths like any single-choice control.
    """

    name = "taxonomy"
    tag = "Taxonomy"
    result_type = "taxonomy"
    finetune_tasks = ("classification",)

    def read_labels(self, control: Any, element: Callable[[], Any]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        """Every node as the path of ``<Choice>`` values from the root, depth first."""
        paths: list[tuple[str, ...]] = []

        def walk(node: Any, prefix: tuple[str, ...]) -> None:
            for child in node:
                if getattr(child, "tag", None) != "Choice":
                    continue
                value = child.get("value") or child.get("alias")
                if value:
                    paths.append((*prefix, value))
                    walk(child, (*prefix, value))

        walk(element(), ())
        return tuple(PATH_SEPARATOR.join(p) for p in paths), tuple(paths)

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

    def matches(self, tag: str, attrs: Mapping[str, Any]) -> bool:
        return tag == self.tag and not _dense(attrs)

    def export(self, spec: ControlSpec, answer: list[Span]) -> tuple:
        return tuple(sorted((s.start, s.end, s.label) for s in answer))

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict:
        return {"text": text, "spans": [{"start": s, "end": e, "label": label} for s, e, label in value]}

    def labels_in(self, spec: ControlSpec, value: Any) -> list[str]:
        return [label for _, _, label in value]

    def regions_for(self, spec: ControlSpec, record: dict) -> list[dict]:
        text = record["text"]
        return [{"id": f"{spec.from_name}-{k}", **self.region(spec, {"start": s["start"], "end": s["end"],
                                                                     "text": text[s["start"]:s["end"]],
                                                                     "labels": [s["label"]]}, None)}
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

    def matches(self, tag: str, attrs: Mapping[str, Any]) -> bool:
        return tag == self.tag and _dense(attrs)

    def dense(self, spec: ControlSpec, texts: list[str], answers: list[Any]) -> bool:
        return True

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict:
        from labelloop.wordtags import tags_of_words, words_of

        words = words_of(text)
        return {"text": text, "tokens": [text[a:b] for a, b in words],
                "tags": tags_of_words(words, [Span(s, e, label) for s, e, label in value])}

    def agreement(self, spec: ControlSpec, texts: list[str], values: list[list[Any]]) -> dict:
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

    def matches(self, tag: str, attrs: Mapping[str, Any]) -> bool:
        return False  # not a control over <Text>: read from the config beside the <Labels> it links

    def export(self, spec: ControlSpec, answer: Links) -> tuple:
        return tuple((s.start, s.end, s.label) for s in answer.spans), answer.links

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict:
        spans, links = value
        return {"text": text, "spans": [{"start": s, "end": e, "label": label} for s, e, label in spans],
                "relations": [{"from": i, "to": j, "label": label} for i, j, label in links]}

    def labels_in(self, spec: ControlSpec, value: Any) -> list[str]:
        return [label for _, _, label in value[1]]

    def agreement(self, spec: ControlSpec, texts: list[str], values: list[list[Any]]) -> dict:
        """The F1 of one annotator's links against another's, over mentions matched by their offsets."""
        scores = []
        for answers in values:
            links = [{(v[0][i][:2], v[0][j][:2], label) for i, j, label in v[1]} for v in answers]
            for a, b in itertools.combinations(links, 2):
                scores.append(2 * len(a & b) / (len(a) + len(b)) if a or b else 1.0)
        return {"link_f1": float(np.mean(scores))}

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
    needs_labels = False

    def read_labels(self, control: Any, element: Callable[[], Any]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        return (), ()

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


class RatingKind(ClassificationKind):
    """``<Rating>`` over text: one of 1 to ``maxRating`` stars (5 unless set), learnt as that many classes
    named ``"1"`` to ``"5"``; a dataset row is ``{"text", "label": "4"}``."""

    name = "rating"
    tag = "Rating"
    result_type = "rating"
    finetune_tasks = ("classification",)
    MOST: ClassVar[int] = 100

    def read_labels(self, control: Any, element: Callable[[], Any]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        raw = control.attr.get("maxRating", 5)
        try:
            top = int(raw)
        except (TypeError, ValueError):
            top = 0
        if not 1 <= top <= self.MOST:
            raise UnsupportedConfigError(f"needs maxRating, a whole number from 1 to {self.MOST} (got {raw!r})")
        return tuple(str(k) for k in range(1, top + 1)), ()

    def answer(self, spec: ControlSpec, values: list[dict]) -> list[str] | None:
        ratings = [v.get("rating") for v in values if "rating" in v]
        if any(type(r) is not int for r in ratings):
            raise AnnotationError(f"{spec.from_name}: 'rating' must be a whole number")
        known = [str(r) for r in dict.fromkeys(ratings) if str(r) in spec.labels]  # 0: the stars were cleared
        return known[-1:] or None

    def classes(self, spec: ControlSpec, answer: list[str]) -> list[int]:
        return [spec.labels.index(answer[0])]

    def value(self, spec: ControlSpec, chosen: list[int]) -> dict:
        return {"rating": int(spec.labels[chosen[0]])}

    def export(self, spec: ControlSpec, answer: list[str]) -> str:
        return answer[0]


def _dense(attrs: Mapping[str, Any]) -> bool:
    """``<Labels dense="true">``: a tag for every word."""
    return str(attrs.get("dense", "")).lower() == "true"


KINDS: dict[str, ControlKind] = {k.name: k for k in (ChoicesKind(), TaxonomyKind(), LabelsKind(), WordTagsKind(),
                                                     RelationsKind(), TextAreaKind(), RatingKind())}


def kind_for_tag(tag: str, attrs: Mapping[str, Any]) -> ControlKind | None:
    """The kind of a control over ``<Text>`` with this XML tag and attributes (None: no kind serves it)."""
    return next((k for k in KINDS.values() if k.matches(tag, attrs)), None)


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
