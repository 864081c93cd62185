"""The one parser of Label Studio labeling configs.

Use :func:`parse_label_config` on the XML that Label Studio sends in ``/setup`` and ``/predict``: it
returns a :class:`TaskSchema` when every control can be served and otherwise raises
:class:`~labelloop.errors.UnsupportedConfigError` with the forms that are supported. Exporting and
augmenting read one control with :func:`find_control`, which skips what they do not need.
What each control kind means (its answer, its result region, its training target) lives in
:mod:`labelloop.labeling.kinds`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from xml.etree import ElementTree

from labelloop.errors import ConfigError, UnsupportedConfigError
from labelloop.labeling.kinds import kind_for_tag, kind_of
from labelloop.labeling.spec import PATH_SEPARATOR, PLAIN_RELATION, RELATIONS, ControlSpec

__all__ = ["MAX_LABELS", "PATH_SEPARATOR", "PLAIN_RELATION", "RELATIONS", "SUPPORTED", "ControlSpec", "TaskSchema",
           "cached_schema", "find_control", "parse_label_config"]

SUPPORTED = """The backend serves these controls, each over a <Text> object:
  <Choices name="sentiment" toName="text"> ... <Choice value="Positive"/> ... </Choices>
  <Choices name="topics" toName="text" choice="multiple"> ... </Choices>
  <Taxonomy name="topic" toName="text"> <Choice value="Sports"><Choice value="Tennis"/></Choice> ... </Taxonomy>
  <Labels name="label" toName="text"> ... <Label value="PER"/> ... </Labels>
  <Labels name="pos" toName="text" dense="true"> ... <Label value="NOUN"/> ... </Labels>   (a tag on every word)
  <Relations> <Relation value="coref"/> ... </Relations>   (links between the regions of a <Labels> control;
                                                            <Relations/> alone: links with no label)
  <Rating name="stars" toName="text" maxRating="5"/>   (1 to 5 stars, learnt as five classes)
  <TextArea name="response" toName="prompt"/>   (drafted by the LLM predictor: LABELLOOP_PREDICTOR=llm)
with <Text name="text" value="$text"/> reading the task's "text" field (any field name works)."""

MAX_LABELS = 2_000
MAX_CONFIG_CHARS = 256_000  # a labeling config is stored per project, and it arrives from the network


@dataclass(frozen=True)
class TaskSchema:
    """All controls of a labeling config, every one of them served."""

    controls: tuple[ControlSpec, ...]

    @property
    def value_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.value_key for c in self.controls))

    def single_choice(self) -> ControlSpec | None:
        """The first single-label classification control (``<Choices>``, ``<Taxonomy>``, ``<Rating>``): the one
        learning curves and the promotion gate measure accuracy on."""
        return next((c for c in self.controls if kind_of(c).single_label(c)), None)


def _element(label_config: str, tag: str, name: str) -> ElementTree.Element:
    """The XML element of one control (the SDK keeps no tree of nested ``<Choice>`` tags)."""
    root = ElementTree.fromstring(label_config)  # already parsed and checked by the SDK above
    return next(e for e in root.iter(tag) if e.get("name") == name)


def _controls(label_config: str, max_labels: int) -> tuple[list[ControlSpec], list[str]]:
    """The controls over ``<Text>`` that the backend knows, and the problems with the rest."""
    if not isinstance(label_config, str) or not label_config.strip():
        raise UnsupportedConfigError("The labeling config is empty.\n" + SUPPORTED)
    from label_studio_sdk.label_interface.interface import LabelInterface

    try:
        interface = LabelInterface(label_config)
    except Exception as e:  # the SDK raises lxml, KeyError and its own errors for bad XML
        raise UnsupportedConfigError(f"The labeling config could not be parsed ({e}).\n{SUPPORTED}") from e

    controls: list[ControlSpec] = []
    problems: list[str] = []
    for control in interface.controls:
        tag = control.tag
        where = f"<{tag} name={control.name!r}>"
        kind = kind_for_tag(tag, control.attr)
        if kind is None:
            problems.append(f"{where} is not supported")
            continue
        if control.attr.get("perRegion") in ("true", True):
            problems.append(f"{where} with perRegion is not supported")
            continue
        if len(control.to_name) != 1:
            problems.append(f"{where} must point at exactly one object (toName)")
            continue
        obj = interface.get_object(control.to_name[0])  # type: ignore[no-untyped-call]
        if obj.tag != "Text":
            problems.append(f"{where} points at <{obj.tag}>, not at <Text>")
            continue
        if obj.attr.get("valueType") == "url":
            problems.append(f"<Text name={obj.name!r} valueType=\"url\"> is not supported: import the text itself")
            continue
        if not obj.value_name:
            problems.append(f"<Text name={obj.name!r}> needs value=\"$field\"")
            continue
        try:
            labels, paths = kind.read_labels(control, functools.partial(_element, label_config, tag, control.name))
        except UnsupportedConfigError as e:
            problems.append(f"{where} {e}")
            continue
        if not labels and kind.needs_labels:
            problems.append(f"{where} has no labels")
            continue
        if len(labels) > max_labels:
            problems.append(f"{where} has {len(labels):,} labels; the backend serves up to {max_labels:,} per control")
            continue
        controls.append(ControlSpec(kind=kind.name, from_name=control.name, to_name=obj.name,
                                    value_key=obj.value_name, labels=labels, multiple=kind.multiple(control.attr),
                                    paths=paths))
    relations = _relations(label_config, controls)
    if isinstance(relations, str):
        problems.append(relations)
    elif relations is not None:
        controls.append(relations)
    return controls, problems


def _relations(label_config: str, controls: list[ControlSpec]) -> ControlSpec | str | None:
    """The ``<Relations>`` control (None: there is none), or what is wrong with it."""
    from xml.etree import ElementTree

    found = list(ElementTree.fromstring(label_config).iter("Relations"))
    if not found:
        return None
    # No <Relation> inside: plain links, with no label (Label Studio draws those in any project).
    values = tuple(dict.fromkeys(str(r.get("value")) for r in found[0].iter("Relation") if r.get("value"))) or (
        PLAIN_RELATION,)
    spans = next((c for c in controls if c.kind == "labels"), None)
    if spans is None:
        return "<Relations> links regions of a <Labels> control over <Text>, and this config has none"
    return ControlSpec(kind="relations", from_name=RELATIONS, to_name=spans.from_name, value_key=spans.value_key,
                       labels=values, paths=tuple((label,) for label in spans.labels))


def parse_label_config(label_config: str, *, max_labels: int = MAX_LABELS) -> TaskSchema:
    """Parse a labeling config into the controls the backend will predict.

    Raises
    ------
    UnsupportedConfigError
        The XML is invalid, a control over ``<Text>`` is of no kind in :data:`~labelloop.labeling.kinds.KINDS`, or it has more than
        ``max_labels`` labels (in one control, or in all of them), or the config is over
        :data:`MAX_CONFIG_CHARS` characters.
    """
    if len(label_config) > MAX_CONFIG_CHARS:
        raise UnsupportedConfigError(f"The labeling config is {len(label_config):,} characters; the backend serves "
                                     f"configs up to {MAX_CONFIG_CHARS:,}.\n" + SUPPORTED)
    controls, problems = _controls(label_config, max_labels)
    total = sum(len(c.labels) for c in controls)
    if total > max_labels:  # every label costs work on every prediction: bound the config, not just a control
        problems.append(f"its controls have {total:,} labels in all; the backend serves up to {max_labels:,} "
                        "(LABELLOOP_MAX_LABELS)")
    if problems:
        raise UnsupportedConfigError("This labeling config can't be served: " + "; ".join(problems) + ".\n" + SUPPORTED)
    if not controls:
        raise UnsupportedConfigError("The labeling config has no control to predict.\n" + SUPPORTED)
    return TaskSchema(controls=tuple(controls))


@functools.lru_cache(maxsize=64)
def cached_schema(label_config: str, max_labels: int = MAX_LABELS) -> TaskSchema:
    """:func:`parse_label_config`, parsed once per distinct config (Label Studio resends it constantly)."""
    return parse_label_config(label_config, max_labels=max_labels)


def find_control(label_config: str, name: str | None = None) -> ControlSpec:
    """The control named ``name``, or the first one the backend knows, ignoring controls it doesn't."""
    controls, _ = _controls(label_config, MAX_LABELS)
    # Relations first: their records carry the spans they link too.
    for c in sorted(controls, key=lambda c: c.kind != "relations"):
        if name is None or c.from_name == name:
            return c
    names = [c.from_name for c in controls]
    raise ConfigError(f"no exportable control {name!r}; this project has {names or 'none'} "
                      "(Choices, Taxonomy, Labels, Relations, Rating or TextArea over a Text)")
