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

Adding a control kind is one class in this package, registered in :data:`KINDS`.

The package: :mod:`~labelloop.labeling.kinds.base` (:class:`ControlKind`, predictions, the source and learner
protocols), :mod:`~labelloop.labeling.kinds.classify`, :mod:`~labelloop.labeling.kinds.tagging`,
:mod:`~labelloop.labeling.kinds.links` and :mod:`~labelloop.labeling.kinds.text`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelloop.errors import AnnotationError
from labelloop.labeling.kinds.base import ControlKind, Draft, Learner, LinkPrediction, Prediction, Source, SpanPrediction
from labelloop.labeling.kinds.classify import ChoicesKind, ClassificationKind, RatingKind, TaxonomyKind
from labelloop.labeling.kinds.links import RelationsKind
from labelloop.labeling.kinds.tagging import LabelsKind, WordTagsKind, snap_spans
from labelloop.labeling.kinds.text import TextAreaKind
from labelloop.labeling.spec import ControlSpec

__all__ = ["KINDS", "ChoicesKind", "ClassificationKind", "ControlKind", "Draft", "LabelsKind", "Learner",
           "LinkPrediction", "Prediction", "RatingKind", "RelationsKind", "Source", "SpanPrediction", "TaxonomyKind",
           "TextAreaKind", "WordTagsKind", "answer_of", "export_value", "kind_for_tag", "kind_of", "snap_spans"]

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
