"""Reading an engine's answers: label probabilities from token log-probabilities, votes, entities located in
the text, links between numbered mentions."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence

import numpy as np

from labelloop.spans import Span

log = logging.getLogger(__name__)


def label_logprobs_from_tokens(content: Sequence[dict], labels: Sequence[str]) -> np.ndarray | None:
    """Label log-probabilities from a chat answer's per-token ``top_logprobs``.

    The answer may open with filler ("The review is ..."): the first token that starts a label is where the
    model commits, and its alternatives there give every label's probability. A token that starts several
    labels splits its probability evenly among them. Labels the model never considered get a floor of
    ``log(1e-6)`` so every label keeps a probability. Returns None when no token starts a label.
    """
    lowered = [label.lower() for label in labels]

    def starts(token: str) -> list[int]:
        t = token.strip().lower()
        return [k for k, label in enumerate(lowered) if t and label.startswith(t)] if t else []

    for position in content:
        if not starts(str(position.get("token", ""))):
            continue
        mass = np.zeros(len(labels))
        for alt in position.get("top_logprobs") or [position]:
            hit = starts(str(alt.get("token", "")))
            for k in hit:
                mass[k] += math.exp(float(alt.get("logprob", -math.inf))) / len(hit)
        return np.log(np.maximum(mass, 1e-6))
    return None


def vote_label(answer: str, labels: Sequence[str]) -> int | None:
    """The label an answer names first (whole words, case-insensitive), or None."""
    best: tuple[int, int] | None = None
    for k, label in enumerate(labels):
        m = re.search(r"(?<!\w)" + re.escape(label) + r"(?!\w)", answer, re.IGNORECASE)
        if m and (best is None or (m.start(), -len(label)) < (best[0], -len(labels[best[1]]))):
            best = (m.start(), k)
    return None if best is None else best[1]


def _json_list(answer: str, key: str, alias: str) -> list | None:
    """The list under ``key`` (or ``alias``) of the first JSON object in an answer, or the first JSON list."""
    for start in [m.start() for m in re.finditer(r"[\[{]", answer)]:
        try:
            value, _ = json.JSONDecoder().raw_decode(answer[start:])
        except ValueError:
            continue
        items = value.get(key, value.get(alias)) if isinstance(value, dict) else value
        if isinstance(items, list):
            return items
    return None


def parse_entities(answer: str) -> list[dict] | None:
    """The ``[{"text", "label"}]`` list from a JSON answer (the first JSON object or list in it); None if none."""
    items = _json_list(answer, "entities", "mentions")
    return None if items is None else [i for i in items if isinstance(i, dict)]


def parse_links(answer: str, n_mentions: int, labels: Sequence[str]) -> tuple[list[tuple[int, int, str]], int]:
    """``(from, to, label)`` links (0-based mention indices) from a JSON answer that numbers mentions from 1;
    returns ``(links, dropped)``: a link to a mention that isn't there, or with an unknown label, is dropped."""
    by_name = {label.lower(): label for label in labels}
    links, dropped = [], 0
    for item in _json_list(answer, "links", "relations") or []:
        if not isinstance(item, dict):
            dropped += 1
            continue
        source, target = item.get("from"), item.get("to")
        label = by_name.get(str(item.get("label") or (labels[0] if len(labels) == 1 else "")).strip().lower())
        if (type(source) is not int or type(target) is not int or not 1 <= source <= n_mentions
                or not 1 <= target <= n_mentions or source == target or label is None):
            dropped += 1
            continue
        links.append((source - 1, target - 1, label))
    return list(dict.fromkeys(links)), dropped


def locate_mentions(text: str, mentions: Sequence[dict], labels: Sequence[str]) -> tuple[list[Span], int]:
    """Exact character offsets for ``{"text", "label"}`` mentions; returns ``(spans, dropped)``.

    Each mention is looked up as written (then ignoring case) at word boundaries; every occurrence not already
    covered becomes a span. A mention whose label is unknown, or whose text is not in ``text`` (the model
    made it up or reworded it), is dropped and counted.
    """
    by_name = {label.lower(): label for label in labels}
    taken = np.zeros(len(text), dtype=bool)
    spans: list[Span] = []
    dropped = 0
    for mention in mentions:
        words = str(mention.get("text") or "").strip()
        label = by_name.get(str(mention.get("label") or "").strip().lower())
        if not words or label is None:
            dropped += 1
            continue
        found = False
        for flags in (0, re.IGNORECASE):
            for m in re.finditer(r"(?<!\w)" + re.escape(words) + r"(?!\w)", text, flags):
                found = True
                if not taken[m.start():m.end()].any():
                    taken[m.start():m.end()] = True
                    spans.append(Span(m.start(), m.end(), label))
            if found:
                break
        dropped += not found
    return sorted(spans, key=lambda s: s.start), dropped
