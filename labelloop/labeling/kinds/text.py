"""``<TextArea>``: a free-text response."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labelloop.errors import AnnotationError
from labelloop.labeling.kinds.base import ControlKind, Prediction, Source, _strings
from labelloop.labeling.spec import ControlSpec


class TextAreaKind(ControlKind):
    """``<TextArea>``: a free-text response, drafted by an LLM for annotators to correct."""

    name = "textarea"
    tag = "TextArea"
    result_type = "textarea"
    trainable = False
    needs_labels = False

    def read_labels(self, control: Any, element: Callable[[], Any]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        return (), ()

    def answer(self, spec: ControlSpec, values: list[dict[str, Any]]) -> str | None:
        texts = [t for v in values for t in _strings(v, "text", spec)]
        if any(not isinstance(t, str) for t in texts):
            raise AnnotationError(f"{spec.from_name}: 'text' must be a list of strings")
        return "\n".join(texts).strip() or None

    def predict(self, spec: ControlSpec, source: Source, texts: list[str], strategy: str, *,
                regions: list[list[dict[str, Any]]] | None = None) -> list[Prediction] | None:
        drafts = source.drafts(spec, texts)
        if drafts is None:
            return None
        return [Prediction([self.region(spec, {"text": [d.text]}, d.confidence)] if d.text else [],
                           d.confidence or 0.0) for d in drafts]
