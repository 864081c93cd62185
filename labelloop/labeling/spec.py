"""What the backend knows of one control of a labeling config (:class:`ControlSpec`), apart from the parser
(:mod:`labelloop.labeling.schema`) and the kinds (:mod:`labelloop.labeling.kinds`), which both use it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# Shown between the levels of a taxonomy path ("Sports / Tennis"): the class name a model learns.
PATH_SEPARATOR = " / "
PLAIN_RELATION = ""  # the label of a link drawn with no label, under a <Relations> with no <Relation> inside
# The from_name of a <Relations> control (Label Studio gives it no name; "@" can't begin an XML name).
RELATIONS = "@relations"


@dataclass(frozen=True)
class ControlSpec:
    """One control the backend predicts for, in Label Studio's own terms.

    ``labels`` are the classes a model for the control outputs: the choice values, the span labels, or
    for a taxonomy every node's path joined with ``" / "`` (``paths`` holds the same paths as tuples).
    ``<Relations>`` is the control :data:`RELATIONS` whose ``to_name`` is the ``<Labels>`` control whose
    regions it links, ``labels`` the relation values and ``paths`` that control's span labels as 1-tuples.
    """

    kind: str
    from_name: str
    to_name: str
    value_key: str
    labels: tuple[str, ...]
    multiple: bool = False
    paths: tuple[tuple[str, ...], ...] = ()

    @property
    def signature(self) -> str:
        """Stable id of what a model for this control must output; changes when labels change."""
        raw = "|".join([self.kind, self.from_name, self.to_name, str(self.multiple), *self.labels])
        return hashlib.sha1(raw.encode()).hexdigest()[:12]
