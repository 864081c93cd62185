"""Classification kinds: a model outputs probabilities over ``spec.labels`` (``<Choices>``, ``<Taxonomy>``,
``<Rating>``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from labelloop.al.uncertainty import confidence
from labelloop.errors import AnnotationError, ConfigError, UnsupportedConfigError
from labelloop.labeling.kinds.base import ControlKind, Learner, Prediction, Source, _strings, pairwise_agreement
from labelloop.labeling.spec import PATH_SEPARATOR, ControlSpec


class ClassificationKind(ControlKind):
    """A kind whose model outputs probabilities over ``spec.labels`` (one row per text)."""

    def classes(self, spec: ControlSpec, answer: Any) -> list[int]:
        """Indices into ``spec.labels`` that an answer chose."""
        raise NotImplementedError

    def value(self, spec: ControlSpec, chosen: list[int]) -> dict[str, Any]:
        raise NotImplementedError

    def example(self, spec: ControlSpec, answer: Any) -> str:
        return spec.labels[self.classes(spec, answer)[0]]

    def targets(self, spec: ControlSpec, answers: list[Any]) -> NDArray[Any]:
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

    def record(self, spec: ControlSpec, text: str, value: Any) -> dict[str, Any]:
        return {"text": text, "labels": list(value)} if spec.multiple else {"text": text, "label": value}

    def labels_in(self, spec: ControlSpec, value: Any) -> list[str]:
        return list(value) if spec.multiple else [value]

    def agreement(self, spec: ControlSpec, texts: list[str], values: list[list[Any]]) -> dict[str, Any]:
        """Fleiss' kappa for single-label classification, with the number of raters varying per task."""
        if spec.multiple:
            return {}
        pair = pairwise_agreement(values)
        totals = Counter(x for v in values for x in v)
        p_j = np.array(list(totals.values()), dtype=float) / sum(totals.values())
        p_e = float((p_j**2).sum())
        return {"fleiss_kappa": float((pair - p_e) / (1 - p_e)) if p_e < 1 else 1.0}

    def regions_for(self, spec: ControlSpec, record: dict[str, Any]) -> list[dict[str, Any]]:
        chosen = record["labels"] if spec.multiple else [record["label"]]
        unknown = [c for c in chosen if c not in spec.labels]
        if unknown:
            raise ConfigError(f"{spec.from_name}: {unknown} are not labels of this control ({list(spec.labels)})")
        return [self.region(spec, self.value(spec, [spec.labels.index(c) for c in chosen]), None)]

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict[str, Any]]] | None = None) -> list[Prediction] | None:
        probs = source.class_probs(spec, texts)
        if probs is None:
            return None
        return self.from_probs(spec, probs, strategy)

    def from_probs(self, spec: ControlSpec, probs: NDArray[Any], strategy: str) -> list[Prediction]:
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

    def answer(self, spec: ControlSpec, values: list[dict[str, Any]]) -> list[str] | None:
        chosen = [c for v in values for c in _strings(v, "choices", spec)]
        if any(not isinstance(c, str) for c in chosen):
            raise AnnotationError(f"{spec.from_name}: every choice must be a string")
        known = [c for c in dict.fromkeys(chosen) if c in spec.labels]
        return known or None

    def classes(self, spec: ControlSpec, answer: list[str]) -> list[int]:
        return [spec.labels.index(c) for c in answer]

    def value(self, spec: ControlSpec, chosen: list[int]) -> dict[str, Any]:
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

    def answer(self, spec: ControlSpec, values: list[dict[str, Any]]) -> list[tuple[str, ...]] | None:
        paths = []
        for path in (p for v in values for p in _strings(v, "taxonomy", spec)):
            if not isinstance(path, list) or not all(isinstance(x, str) for x in path):
                raise AnnotationError(f"{spec.from_name}: a taxonomy path must be a list of strings")
            if tuple(path) in spec.paths:
                paths.append(tuple(path))
        return list(dict.fromkeys(paths)) or None

    def classes(self, spec: ControlSpec, answer: list[tuple[str, ...]]) -> list[int]:
        return [spec.paths.index(p) for p in answer[:1]]

    def value(self, spec: ControlSpec, chosen: list[int]) -> dict[str, Any]:
        return {"taxonomy": [list(spec.paths[k]) for k in chosen]}

    def export(self, spec: ControlSpec, answer: list[tuple[str, ...]]) -> str:
        return PATH_SEPARATOR.join(answer[0])



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

    def answer(self, spec: ControlSpec, values: list[dict[str, Any]]) -> list[str] | None:
        ratings = [v.get("rating") for v in values if "rating" in v]
        if any(type(r) is not int for r in ratings):
            raise AnnotationError(f"{spec.from_name}: 'rating' must be a whole number")
        known = [str(r) for r in dict.fromkeys(ratings) if str(r) in spec.labels]  # 0: the stars were cleared
        return known[-1:] or None

    def classes(self, spec: ControlSpec, answer: list[str]) -> list[int]:
        return [spec.labels.index(answer[0])]

    def value(self, spec: ControlSpec, chosen: list[int]) -> dict[str, Any]:
        return {"rating": int(spec.labels[chosen[0]])}

    def export(self, spec: ControlSpec, answer: list[str]) -> str:
        return answer[0]
