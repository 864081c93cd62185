"""Entity spans: between character offsets, words and BIO tags.

Tags are integers: 0 is ``O``; label ``i`` (0-based) has ``B = 1 + 2i`` and ``I = 2 + 2i``.
Words come from the tokenizer's pre-tokenizer (punctuation is its own word), so a predicted
span always starts and ends on word edges and ``text[start:end]`` is exactly its text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Span:
    """An entity mention: ``text[start:end]`` labelled ``label`` with confidence ``score``."""

    start: int
    end: int
    label: str
    score: float = 1.0


def n_tags(n_labels: int) -> int:
    return 1 + 2 * n_labels


def word_ranges(offsets: np.ndarray, word_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Character range of each word and the index of its first token.

    Returns ``(ranges, first_token)`` of shapes (n_words, 2) and (n_words,).
    """
    n_words = int(word_ids.max()) + 1 if len(word_ids) else 0
    ranges = np.zeros((n_words, 2), dtype=np.int64)
    first = np.full(n_words, -1, dtype=np.int64)
    for tok, w in enumerate(word_ids):
        if w < 0:
            continue
        if first[w] < 0:
            first[w] = tok
            ranges[w] = offsets[tok]
        else:
            ranges[w, 1] = max(ranges[w, 1], offsets[tok][1])
    keep = first >= 0
    return ranges[keep], first[keep]


def spans_to_tags(ranges: np.ndarray, spans: Sequence[Span], labels: Sequence[str]) -> np.ndarray:
    """BIO tag of each word given annotated spans; a word belongs to a span it overlaps.

    Spans with a label outside ``labels`` are ignored. Where spans overlap, the earlier one wins.
    """
    index = {label: i for i, label in enumerate(labels)}
    tags = np.zeros(len(ranges), dtype=np.int64)
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if span.label not in index:
            continue
        inside = np.flatnonzero((ranges[:, 0] < span.end) & (ranges[:, 1] > span.start))
        free = [w for w in inside if tags[w] == 0]
        for k, w in enumerate(free):
            tags[w] = (1 if k == 0 else 2) + 2 * index[span.label]
    return tags


def tags_to_spans(ranges: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> list[Span]:
    """Decode word tag probabilities (n_words, n_tags) into spans.

    ``B`` always opens a new span, so two adjacent entities of one type stay two. An ``I``
    that does not continue a span of its type opens one. A span's score is the mean
    probability of its words' tags.
    """
    tags = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    spans: list[Span] = []
    current: list[int] = []  # [label_index, first_word, last_word]
    word_scores: list[float] = []

    def close() -> None:
        if current:
            label, first, last = current
            spans.append(Span(int(ranges[first, 0]), int(ranges[last, 1]), labels[label], float(np.mean(word_scores))))
            current.clear()
            word_scores.clear()

    for w, tag in enumerate(tags):
        if tag == 0:
            close()
            continue
        label, is_inside = (tag - 1) // 2, (tag - 1) % 2 == 1
        if is_inside and current and current[0] == label:
            current[2] = w
        else:
            close()
            current.extend([label, w, w])
        word_scores.append(float(probs[w, tag]))
    close()
    return spans


def _mention_key(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass
class Gazetteer:
    """Mentions annotators labelled, with how often each got each label; finds them again in other texts.

    Matching ignores case, respects word boundaries, lets any run of white space stand between the words of a
    mention, and prefers the longest mention ("New York Times" over "New York"). A found span's score is the
    share of its mention's annotations that carry its label.
    """

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = sorted((m for m in self.counts if len(m) >= 2), key=len, reverse=True)
        alternatives = "|".join(r"\s+".join(map(re.escape, m.split())) for m in names)
        self._pattern = re.compile(r"(?<!\w)(?:" + alternatives + r")(?!\w)", re.IGNORECASE) if names else None

    @classmethod
    def from_spans(cls, texts: Sequence[str], spans: Sequence[Sequence[Span]], *, min_count: int = 1) -> Gazetteer:
        """From annotated ``(text, spans)`` pairs; a mention needs ``min_count`` annotations to enter."""
        counts: dict[str, Counter] = {}
        for text, task_spans in zip(texts, spans, strict=True):
            for span in task_spans:
                key = _mention_key(text[span.start : span.end])
                if key:
                    counts.setdefault(key, Counter())[span.label] += 1
        return cls({k: dict(v) for k, v in counts.items() if sum(v.values()) >= min_count})

    from_annotations = from_spans

    @property
    def entries(self) -> dict[str, str]:
        """Each mention with its most frequent label."""
        return {m: max(votes.items(), key=lambda kv: kv[1])[0] for m, votes in self.counts.items()}

    def __len__(self) -> int:
        return len(self.counts)

    def find(self, text: str) -> list[Span]:
        """Every known mention in ``text``, as spans in text order."""
        if self._pattern is None:
            return []
        spans = []
        for match in self._pattern.finditer(text):
            votes = self.counts.get(_mention_key(match.group(0)))
            if votes:
                label, n = max(votes.items(), key=lambda kv: kv[1])
                spans.append(Span(match.start(), match.end(), label, n / sum(votes.values())))
        return spans


def merge_spans(first: Sequence[Span], second: Sequence[Span]) -> list[Span]:
    """Spans of ``first``, plus those of ``second`` that overlap none of them, in text order."""
    kept = list(first)
    for span in second:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: (s.start, s.end))
