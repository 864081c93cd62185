"""What every kind shares: the base class :class:`ControlKind`, what predictions look like, and the
protocols of the sources and learners the kinds ask."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from labelloop.errors import AnnotationError, ConfigError
from labelloop.labeling.spec import ControlSpec
from labelloop.relations import Link, Links
from labelloop.spans import Span


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

    regions: list[dict[str, Any]]
    confidence: float | None


class Source(Protocol):
    """Where predictions come from (a trained model, zero-shot, an LLM, an ensemble): see serving.predictors.

    Each method answers for one control and a list of texts; ``None`` means this source has nothing for it.
    """

    def class_probs(self, spec: ControlSpec, texts: list[str]) -> NDArray[Any] | None: ...

    def spans(self, spec: ControlSpec, texts: list[str]) -> list[SpanPrediction] | None: ...

    def drafts(self, spec: ControlSpec, texts: list[str]) -> list[Draft] | None: ...

    def word_tags(self, spec: ControlSpec, texts: list[str]) -> list[SpanPrediction] | None: ...

    def links(self, spec: ControlSpec, texts: list[str], spans: list[list[Span]]) -> list[LinkPrediction] | None: ...


class Learner(Protocol):
    """Fits the backend's fast models; :class:`labelloop.models.Features` is the implementation."""

    def fit_classifier(self, spec: ControlSpec, texts: list[str], targets: NDArray[Any]) -> Any: ...

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

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict[str, Any]:
        """The dataset row for one text and its exported answer (:meth:`export`)."""
        return {"prompt": text, "response": value}

    def labels_in(self, spec: ControlSpec, value: Any) -> list[str]:
        """The labels an exported answer uses, for counting what annotators chose."""
        return ["response"]

    def agreement(self, spec: ControlSpec, texts: list[str], values: list[list[Any]]) -> dict[str, Any]:
        """Agreement measures beyond whole-answer matching, over tasks with two or more exported answers
        (``values``, one list per task, ``texts`` their texts)."""
        return {}

    def regions_for(self, spec: ControlSpec, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Label Studio result regions stating a dataset ``record`` (augmented texts arrive as predictions)."""
        raise ConfigError(f"<{self.tag}> answers can't be written back from a dataset row")

    def answer(self, spec: ControlSpec, values: list[dict[str, Any]]) -> Any | None:
        """The answer that an annotation's result ``values`` (this control's ``value`` dicts) give, or None."""
        raise NotImplementedError

    def answer_in(self, spec: ControlSpec, result: list[dict[str, Any]]) -> Any | None:
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

    def audit_score(self, spec: ControlSpec, model: Any, pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
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
                regions: list[list[dict[str, Any]]] | None = None) -> list[Prediction] | None:
        raise NotImplementedError

    def region(self, spec: ControlSpec, value: dict[str, Any], score: float | None) -> dict[str, Any]:
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


def pairwise_agreement(values: list[list[Any]]) -> float:
    """The chance that two annotations of the same task, drawn without replacement, give the same answer,
    averaged over tasks with two or more (``values``: each task's exported answers)."""
    return float(np.mean([sum(c * (c - 1) for c in Counter(v).values()) / (len(v) * (len(v) - 1)) for v in values]))


def _strings(value: Any, key: str, spec: ControlSpec) -> list[Any]:
    items = value.get(key, [])
    if not isinstance(items, list):
        raise AnnotationError(f"{spec.from_name}: {key!r} must be a list, not {type(items).__name__}")
    return items
