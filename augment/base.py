"""The augmenter interface and the span-safe machinery every augmenter shares."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from abc import ABC, abstractmethod

from labelloop.quality.dedup import normalize

WORD = re.compile(r"\w")
# Handles, hashtags, URLs and numbers: never rewritten (they are facts, not phrasing).
PROTECT = re.compile(r"https?://\S+|www\.\S+|[@#]\w+|\d+(?:[.,:/-]\d+)*")


def record_id(record: dict) -> str:
    """Where a variant came from: the task id when the export kept it, else a hash of the record."""
    if record.get("task_id") is not None:
        return f"task {record['task_id']}"
    return "sha1 " + hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


class Augmenter(ABC):
    """Rewrites text. Subclasses implement :meth:`rewrite` for a stretch of text without entities."""

    name: str = "augmenter"
    # Whether protected tokens are cut out before rewrite(); an augmenter that needs whole sentences
    # (back-translation) masks them itself instead.
    split_protected: bool = True

    def params(self) -> dict:
        """The settings that produced a variant, for its provenance."""
        return {}

    @abstractmethod
    def rewrite(self, text: str, rng: random.Random) -> str:
        """A variant of ``text`` (which contains no entity); may return ``text`` unchanged."""

    def rewrite_many(self, texts: list[str], rng: random.Random) -> list[str]:
        """Batched :meth:`rewrite`; engines that batch (translation) override it."""
        return [self.rewrite(t, rng) for t in texts]

    def augment(self, records: list[dict], *, n: int = 1, seed: int = 0) -> list[dict]:
        """Up to ``n`` variants per record (unchanged rewrites are dropped), each with ``provenance``.

        Records are ``{"text", "label" | "labels" | "spans", ...}``. The originals are not modified.
        """
        out = []
        jobs = []  # (record, variant index, segments)
        for record in records:
            segments = _segments(record)
            if self.split_protected:
                segments = [piece for text, is_entity in segments for piece in
                            ([(text, True)] if is_entity else _protect(text))]
            for k in range(n):
                jobs.append((record, k, segments))
        pieces = [text for _, _, segs in jobs for text, is_entity in segs if is_entity is False and WORD.search(text)]
        rng = random.Random(seed)
        rewritten = iter(self.rewrite_many(pieces, rng))
        for record, k, segs in jobs:
            new_segs = [(next(rewritten) if is_entity is False and WORD.search(text) else text, is_entity)
                        for text, is_entity in segs]
            variant = _rebuild(record, segs, new_segs)
            if normalize(variant["text"]) == normalize(record["text"]):
                continue
            variant["provenance"] = {"source": record_id(record), "method": self.name, "params": self.params(),
                                     "seed": seed, "variant": k}
            out.append(variant)
        return out


def _segments(record: dict) -> list[tuple[str, bool]]:
    """The text cut into (piece, is_entity), entity pieces exactly at the spans (None marks protected tokens)."""
    text = record["text"]
    spans = sorted(record.get("spans") or [], key=lambda s: s["start"])
    segs, pos = [], 0
    for s in spans:
        if s["start"] < pos:
            raise ValueError(f"overlapping spans in record {record_id(record)}")
        segs.append((text[pos : s["start"]], False))
        segs.append((text[s["start"] : s["end"]], True))
        pos = s["end"]
    segs.append((text[pos:], False))
    return segs


def _protect(text: str) -> list[tuple[str, bool]]:
    """Split a piece so protected tokens stand alone, marked immutable like entities."""
    pieces, pos = [], 0
    for m in PROTECT.finditer(text):
        pieces += [(text[pos : m.start()], False), (m.group(0), None)]
        pos = m.end()
    return [*pieces, (text[pos:], False)]  # type: ignore[list-item]


def _keep_edges(old: str, new: str) -> str:
    """Keep the whitespace that separated a piece from its neighbouring entities."""
    lead = old[: len(old) - len(old.lstrip())]
    trail = old[len(old.rstrip()) :]
    core = new.strip()
    return lead + core + trail if core else old


def _rebuild(record: dict, old: list[tuple[str, bool]], new: list[tuple[str, bool]]) -> dict:
    variant = copy.deepcopy({k: v for k, v in record.items() if k != "provenance"})
    text, spans = "", []
    old_spans = iter(sorted(record.get("spans") or [], key=lambda s: s["start"]))
    for (old_text, is_entity), (new_text, _) in zip(old, new, strict=False):
        if is_entity is None:
            text += old_text
        elif is_entity:
            span = dict(next(old_spans))
            span["start"], span["end"] = len(text), len(text) + len(old_text)
            spans.append(span)
            text += old_text
        else:
            text += _keep_edges(old_text, new_text)
    variant["text"] = text
    if "spans" in record:
        variant["spans"] = spans
    return variant
