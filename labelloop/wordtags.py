"""Dense word tagging (part of speech): every word carries one tag, with no "outside".

LabelLoop's default words are runs of letters and digits (with inner apostrophes and hyphens: "don't",
"well-known") and every other non-space character on its own ("." and "," are words, as part-of-speech tag sets
expect). A project's annotators may draw other boundaries (Penn Treebank splits "does|n't", keeps "U.S." and
"1.5" whole): :class:`Words` learns those from their regions, and the tagger then predicts on the annotators' own
words. In Label Studio a word's tag is a one-word ``labels`` region; a word no region covers is untagged (not
trained on, not scored).

A ``<Labels>`` project is tagged this way when its control says ``dense="true"``, or when its annotations tag
nearly every word (:func:`is_dense`), which is how a part-of-speech project made in Label Studio's editor looks.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from labelloop.spans import Span

WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")


def words_of(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every word of ``text``, in order."""
    return [m.span() for m in WORD.finditer(text)]


DENSE_COVERAGE = 0.8  # the share of words annotators tagged above which a <Labels> project tags every word
_MAX_MERGE = 6  # default words at most that one annotator word may join ("U.S." is four)
_HYPHENS = "-‐–"


def is_dense(texts: Sequence[str], spans: Sequence[Sequence[Span]], *, min_words: int = 10) -> bool:
    """Whether annotated regions tag nearly every word of their texts (part of speech) rather than a few
    mentions (named entities): at least :data:`DENSE_COVERAGE` of the words with a letter or digit, over the
    texts that have a region, and at least ``min_words`` such words in all."""
    covered = total = 0
    for text, regions in zip(texts, spans, strict=True):
        if not regions:
            continue
        inside = _coverage(text, regions)
        for start, end in words_of(text):
            if any(ch.isalnum() for ch in text[start:end]):
                total += 1
                covered += bool(inside[start:end].any())
    return total >= min_words and covered >= DENSE_COVERAGE * total


def _coverage(text: str, regions: Sequence[Span] | Sequence[tuple[int, int]]) -> np.ndarray:
    """Per character of ``text``, whether a region covers it."""
    inside = np.zeros(len(text) + 1, dtype=np.int32)
    for r in regions:
        start, end = (r.start, r.end) if isinstance(r, Span) else r
        start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
        if start < end:
            inside[start] += 1
            inside[end] -= 1
    return np.cumsum(inside[:-1]) > 0


def shape(word: str) -> str:
    """``"U.S."`` -> ``"X.X."``, ``"1,000"`` -> ``"d,d"``: kinds of characters, repeats folded."""
    out: list[str] = []
    for ch in word:
        c = "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


@dataclass(frozen=True)
class Words:
    """How a project splits text into words: the default words, with the boundaries its annotators drew.

    ``suffixes`` are split off the end of a word (``"n't"``, ``"'s"``); ``hyphens`` splits a word at its inner
    hyphens; ``merges`` decides, for characters written without a space between default words (``"U.S."``,
    ``"1.5"``, ``"Mr."``), whether they are one word: by the string itself where annotators wrote it,
    else by its shape (``"~d.d"``), with ``" $"`` added at the end of a text.
    """

    suffixes: tuple[str, ...] = ()
    hyphens: bool = False
    merges: dict[str, bool] = field(default_factory=dict)

    def ranges(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` of every word of ``text``, in order."""
        pieces = self._pieces(text)
        joined = [pieces[m][1] == pieces[m + 1][0] for m in range(len(pieces) - 1)]  # no space between
        out: list[tuple[int, int]] = []
        i = 0
        while i < len(pieces):
            last = i
            while last + 1 < min(len(pieces), i + _MAX_MERGE) and joined[last]:
                last += 1
            j = next((k for k in range(last, i, -1) if self._merged(text, pieces[i][0], pieces[k][1])), i)
            out.append((pieces[i][0], pieces[j][1]))
            i = j + 1
        return out

    def _pieces(self, text: str) -> list[tuple[int, int]]:
        """The default words, split at hyphens and learned suffixes (before any merge)."""
        out = []
        for start, end in words_of(text):
            parts = [(start, end)]
            if self.hyphens and end - start > 2:
                cuts = [start + m.start() for m in re.finditer(f"[{_HYPHENS}]", text[start:end])]
                edges = sorted({start, end, *cuts, *(c + 1 for c in cuts)})
                parts = list(zip(edges, edges[1:], strict=False))
            for a, b in parts:
                word = text[a:b].lower()
                suffix = next((x for x in self.suffixes if word.endswith(x) and len(word) > len(x)), None)
                out.extend([(a, b - len(suffix)), (b - len(suffix), b)] if suffix else [(a, b)])
        return out

    def _merged(self, text: str, start: int, end: int) -> bool:
        """At the end of a text its own rules first, then those of the middle of a text."""
        keys = _merge_keys(text, start, end)
        for key in (*keys, *(k.removesuffix(" $") for k in keys)):
            if key in self.merges:
                return self.merges[key]
        return False

    def to_dict(self) -> dict:
        return {"suffixes": list(self.suffixes), "hyphens": self.hyphens, "merges": dict(self.merges)}

    @classmethod
    def from_dict(cls, d: dict | None) -> Words:
        d = d or {}
        return cls(tuple(str(x) for x in d.get("suffixes", ())), bool(d.get("hyphens", False)),
                   {str(k): bool(v) for k, v in dict(d.get("merges", {})).items()})

    @classmethod
    def learn(cls, texts: Sequence[str], spans: Sequence[Sequence[Span]]) -> Words:
        """The boundaries annotators drew, as rules that carry over to new text: a rule holds where more of the
        annotated cases followed it than not (a shape needs two cases; the written string one)."""
        hyphen: Counter[bool] = Counter()
        suffix_split: Counter[str] = Counter()
        endings: Counter[str] = Counter()
        annotated = [(t, sorted((s.start, s.end) for s in r)) for t, r in zip(texts, spans, strict=True) if r]
        for text, regions in annotated:
            cuts = sorted({x for r in regions for x in r})
            inside = _coverage(text, regions)
            for start, end in words_of(text):
                if not inside[start:end].all():
                    continue  # words not wholly annotated say nothing about boundaries
                word = text[start:end]
                inner = cuts[bisect.bisect_right(cuts, start):bisect.bisect_left(cuts, end)]
                if any(h in word[1:-1] for h in _HYPHENS):
                    hyphen[any(word[c - start] in _HYPHENS or word[c - start - 1] in _HYPHENS for c in inner)] += 1
                rest = [c for c in inner if word[c - start] not in _HYPHENS and word[c - start - 1] not in _HYPHENS]
                if rest and end - rest[-1] <= 4:
                    suffix_split[word[rest[-1] - start:].lower()] += 1
                for n in range(2, 5):
                    if len(word) > n:
                        endings[word[-n:].lower()] += 1
        suffixes = tuple(sorted((x for x, n in suffix_split.items() if n > endings[x] - n), key=len, reverse=True))
        split = cls(suffixes, hyphen[True] > hyphen[False])
        merged: Counter[str] = Counter()
        apart: Counter[str] = Counter()
        for text, regions in annotated:
            exact = set(regions)
            cuts = sorted({x for r in regions for x in r})
            pieces = split._pieces(text)
            for i in range(len(pieces)):
                for k in range(i + 1, min(len(pieces), i + _MAX_MERGE)):
                    if pieces[k - 1][1] != pieces[k][0]:
                        break
                    start, end = pieces[i][0], pieces[k][1]
                    if (start, end) in exact:
                        merged.update(_merge_keys(text, start, end))
                    elif bisect.bisect_right(cuts, start) < bisect.bisect_left(cuts, end):  # a boundary inside
                        apart.update(_merge_keys(text, start, end))
        merges: dict[str, bool] = {}
        for key in sorted(k for k in merged.keys() | apart.keys() if k.startswith("~")):
            if merged[key] >= 2 and merged[key] > apart[key]:
                merges[key] = True
            elif apart[key] >= 2 and apart[key] >= merged[key]:
                merges[key] = False
        for key in sorted(k for k in merged.keys() | apart.keys() if k.startswith("=")):
            says = merged[key] > apart[key]  # a written string is kept where it differs from its shape's rule
            if says != merges.get(_shape_key(key), False):
                merges[key] = says
        return cls(suffixes, split.hyphens, merges)


def _merge_keys(text: str, start: int, end: int) -> tuple[str, str]:
    final = " $" if not text[end:].strip() else ""  # a run of words holds no space: " $" can't be in it
    return "=" + text[start:end] + final, "~" + shape(text[start:end]) + final


def _shape_key(written: str) -> str:
    run, _, final = written[1:].partition(" ")
    return "~" + shape(run) + (" " + final if final else "")


def annotated_words(text: str, spans: Sequence[Span], words: Words) -> tuple[list[tuple[int, int]], list[str | None]]:
    """The words of an annotated text and their tags: the annotators' regions as they drew them (a region
    overlapping an earlier one is left out), and between them the project's words, untagged."""
    taken: list[tuple[int, int, str | None]] = []
    for s in sorted(spans, key=lambda s: (s.start, s.end)):
        if s.start < s.end <= len(text) and (not taken or taken[-1][1] <= s.start):
            taken.append((s.start, s.end, s.label))
    out = list(taken)
    inside = _coverage(text, [(a, b) for a, b, _ in taken])
    for start, end in words.ranges(text):
        if not inside[start:end].any():
            out.append((start, end, None))
    out.sort()
    return [(a, b) for a, b, _ in out], [t for _, _, t in out]


def region_accuracy(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> tuple[int, int]:
    """``(correct, n)`` over the annotated regions: a region is right when the first predicted word that
    overlaps it carries its tag (so a word split or joined unlike the annotators' costs its tag)."""
    correct = n = 0
    for g_row, p_row in zip(gold, predicted, strict=True):
        ordered = sorted(p_row, key=lambda s: (s.start, s.end))  # predicted words do not overlap
        ends = [p.end for p in ordered]
        for g in g_row:
            n += 1
            k = bisect.bisect_right(ends, g.start)  # the first predicted word ending after the region starts
            correct += k < len(ordered) and ordered[k].start < g.end and ordered[k].label == g.label
    return correct, n


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
    for g_row, p_row in zip(gold, predicted, strict=False):
        for g, p in zip(g_row, p_row, strict=False):
            if g is not None:
                n += 1
                correct += g == p
    return correct, n
