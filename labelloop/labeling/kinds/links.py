"""``<Relations>``: labeled links between the regions of a ``<Labels>`` control."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from labelloop.errors import AnnotationError
from labelloop.labeling.kinds.base import ControlKind, Learner, Prediction, Source
from labelloop.labeling.kinds.tagging import LabelsKind
from labelloop.labeling.spec import ControlSpec
from labelloop.relations import Links
from labelloop.spans import Span


class RelationsKind(ControlKind):
    """``<Relations>``: labeled links between the regions of a ``<Labels>`` control (coreference and others).

    The answer is :class:`~labelloop.relations.Links`; predictions link the spans that the ``<Labels>``
    control predicted just before, by their region ids.
    """

    name = "relations"
    tag = "Relations"
    result_type = "relation"

    def answer(self, spec: ControlSpec, values: list[dict[str, Any]]) -> Any | None:
        raise NotImplementedError  # a relation has no value of its own: see answer_in

    def answer_in(self, spec: ControlSpec, result: list[dict[str, Any]]) -> Links | None:
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

    def export(self, spec: ControlSpec, answer: Links) -> tuple[Any, ...]:
        return tuple((s.start, s.end, s.label) for s in answer.spans), answer.links

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict[str, Any]:
        spans, links = value
        return {"text": text, "spans": [{"start": s, "end": e, "label": label} for s, e, label in spans],
                "relations": [{"from": i, "to": j, "label": label} for i, j, label in links]}

    def labels_in(self, spec: ControlSpec, value: Any) -> list[str]:
        return [label for _, _, label in value[1]]

    def agreement(self, spec: ControlSpec, texts: list[str], values: list[list[Any]]) -> dict[str, Any]:
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

    def audit_score(self, spec: ControlSpec, model: Any, pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
        """Link F1 (and MUC and B³ of the chains) on the gold mentions of the annotated audit tasks."""
        from labelloop.relation_scores import coreference_scores, link_f1

        if not pairs:
            return None
        found = model.predict_links([t for t, _ in pairs], [list(a.spans) for _, a in pairs])
        predicted = [[(x.source, x.target, x.label) for x in links] for links, _ in found]
        gold = [a for _, a in pairs]
        return {**link_f1(gold, predicted), **coreference_scores(gold, predicted), "tasks": len(pairs)}

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict[str, Any]]] | None = None) -> list[Prediction] | None:
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
