"""What the backend serves from a Label Studio labeling config.

Use :func:`parse_label_config` on the XML that Label Studio sends in ``/setup`` and ``/predict``.
It returns a :class:`TaskSchema` when every control can be served, and otherwise raises
:class:`~labelloop.errors.UnsupportedConfigError` with the forms that are supported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from labelloop.errors import UnsupportedConfigError

SUPPORTED = """The backend serves these controls, each over a <Text> object:
  <Choices name="sentiment" toName="text"> ... <Choice value="Positive"/> ... </Choices>
  <Choices name="topics" toName="text" choice="multiple"> ... </Choices>
  <Labels name="label" toName="text"> ... <Label value="PER"/> ... </Labels>
  <TextArea name="response" toName="prompt"/>   (drafted by the LLM predictor: LABELLOOP_PREDICTOR=llm)
with <Text name="text" value="$text"/> reading the task's "text" field (any field name works)."""

ControlKind = Literal["choices", "labels", "textarea"]
KINDS = {"Choices": "choices", "Labels": "labels", "TextArea": "textarea"}


@dataclass(frozen=True)
class ControlSpec:
    """One control the backend predicts for, in Label Studio's own terms."""

    kind: ControlKind
    from_name: str
    to_name: str
    value_key: str
    labels: tuple[str, ...]
    multiple: bool = False

    @property
    def trainable(self) -> bool:
        """Whether the backend's own models learn this control (a TextArea is only ever drafted by the LLM)."""
        return self.kind != "textarea"

    @property
    def signature(self) -> str:
        """Stable id of what a model for this control must output; changes when labels change."""
        raw = "|".join([self.kind, self.from_name, self.to_name, str(self.multiple), *self.labels])
        return hashlib.sha1(raw.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TaskSchema:
    """All controls of a labeling config, every one of them served."""

    controls: tuple[ControlSpec, ...]

    @property
    def value_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.value_key for c in self.controls))


def parse_label_config(label_config: str) -> TaskSchema:
    """Parse a labeling config into the controls the backend will predict.

    Raises
    ------
    UnsupportedConfigError
        The XML is invalid, or a control is not ``<Choices>``/``<Labels>``/``<TextArea>`` over ``<Text>``.
    """
    if not isinstance(label_config, str) or not label_config.strip():
        raise UnsupportedConfigError("The labeling config is empty.\n" + SUPPORTED)
    from label_studio_sdk.label_interface import LabelInterface

    try:
        interface = LabelInterface(label_config)
    except Exception as e:  # the SDK raises lxml, KeyError and its own errors for bad XML
        raise UnsupportedConfigError(f"The labeling config could not be parsed ({e}).\n{SUPPORTED}") from e

    controls: list[ControlSpec] = []
    problems: list[str] = []
    for control in interface.controls:
        tag = control.tag
        if tag not in KINDS:
            problems.append(f"<{tag} name={control.name!r}> is not supported")
            continue
        if control.attr.get("perRegion") in ("true", True):
            problems.append(f"<{tag} name={control.name!r} perRegion> is not supported")
            continue
        if len(control.to_name) != 1:
            problems.append(f"<{tag} name={control.name!r}> must point at exactly one object (toName)")
            continue
        obj = interface.get_object(control.to_name[0])
        if obj.tag != "Text":
            problems.append(f"<{tag} name={control.name!r}> points at <{obj.tag}>, not at <Text>")
            continue
        if obj.attr.get("valueType") == "url":
            problems.append(f"<Text name={obj.name!r} valueType=\"url\"> is not supported: import the text itself")
            continue
        if not obj.value_name:
            problems.append(f"<Text name={obj.name!r}> needs value=\"$field\"")
            continue
        labels = tuple(control.labels) if tag != "TextArea" else ()
        if not labels and tag != "TextArea":
            problems.append(f"<{tag} name={control.name!r}> has no labels")
            continue
        controls.append(
            ControlSpec(
                kind=KINDS[tag],
                from_name=control.name,
                to_name=obj.name,
                value_key=obj.value_name,
                labels=labels,
                multiple=tag == "Choices" and control.attr.get("choice") == "multiple",
            )
        )
    if problems:
        raise UnsupportedConfigError("This labeling config can't be served: " + "; ".join(problems) + ".\n" + SUPPORTED)
    if not controls:
        raise UnsupportedConfigError("The labeling config has no control to predict.\n" + SUPPORTED)
    return TaskSchema(controls=tuple(controls))
