"""Dense word tagging (part of speech): every word carries one tag, with no "outside".

Words are LabelLoop's own, the same in serving, training and export whatever the encoder: runs of letters and
digits (with inner apostrophes and hyphens: "don't", "well-known") and every other non-space character on its
own ("." and "," are words, as part-of-speech tag sets expect). In Label Studio a word's tag is a one-word
``labels`` region; a region that covers several words tags each of them, and a word no region covers is
untagged (not trained on, not scored).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from labelloop.spans import Span

WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")


def words_of(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every word of ``text``, in order."""
    return [m.span() for m in WORD.finditer(text)]


def tags_of_words(words: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[str | None]:
    """Each word's tag: the label of the first annotated region it overlaps (None when none does)."""
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    out: list[str | None] = []
    for start, end in words:
        out.append(next((s.label for s in ordered if s.start < end and start < s.end), None))
    return out


def first_tokens(offsets: np.ndarray, word_ids: np.ndarray, words: Sequence[tuple[int, int]]) -> np.ndarray:
    """For each word, the index of the first encoder token that starts inside it (-1: no token does, e.g. a
    character the tokenizer drops)."""
    real = np.flatnonzero((word_ids >= 0) & (offsets[:, 1] > offsets[:, 0]))
    starts = offsets[real, 0]
    out = np.full(len(words), -1, dtype=np.int64)
    for k, (start, end) in enumerate(words):
        i = int(np.searchsorted(starts, start, side="left"))
        if i < len(real) and starts[i] < end:
            out[k] = real[i]
        elif i > 0 and offsets[real[i - 1], 1] > start:  # the word begins inside a token ("n't" in "don't")
            out[k] = real[i - 1]
    return out


def token_accuracy(gold: Sequence[Sequence[str | None]], predicted: Sequence[Sequence[str]]) -> tuple[int, int]:
    """``(correct, n)`` over the words that carry a gold tag."""
    correct = n = 0
    for g_row, p_row in zip(gold, predicted):
        for g, p in zip(g_row, p_row):
            if g is not None:
                n += 1
                correct += g == p
    return correct, n
