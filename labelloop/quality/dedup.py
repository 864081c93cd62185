"""Exact and near-duplicate texts, for imports and for leak-free splits.

Exact duplicates share :func:`content_key` (case, Unicode form and whitespace ignored). Near duplicates
have a Jaccard similarity of their shingles (word bigrams, punctuation ignored, or character 4-grams for texts under six words) of at
least ``threshold``; :class:`NearDuplicateIndex` finds candidates with MinHash and LSH bands and then
checks the exact similarity, so it reports no false positives.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib

import numpy as np
from numpy.typing import NDArray

_PRIME = (1 << 32) + 15


def normalize(text: str) -> str:
    """Text as compared for duplicates: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def content_key(text: str) -> str:
    """A stable id of the normalized text."""
    return hashlib.sha1(normalize(text).encode("utf-8")).hexdigest()


def shingles(text: str) -> set[str]:
    norm = normalize(text)
    words = re.findall(r"\w+", norm)
    if len(words) >= 6:
        return {" ".join(words[i : i + 2]) for i in range(len(words) - 1)}
    return {norm[i : i + 4] for i in range(max(1, len(norm) - 3))}


def shingle_hashes(text: str) -> NDArray[np.uint32]:
    """The text's shingles as sorted, distinct 32-bit hashes (what the MinHash signature is computed from)."""
    return np.unique(np.fromiter((zlib.crc32(s.encode("utf-8")) for s in shingles(text)), dtype=np.uint32))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class NearDuplicateIndex:
    """Texts added so far, searchable for near duplicates."""

    def __init__(self, threshold: float = 0.7, *, num_perm: int = 64, bands: int = 16, seed: int = 1) -> None:
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        self.threshold = threshold
        self.bands, self.rows = bands, num_perm // bands
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, 1 << 31, num_perm, dtype=np.int64)
        self._b = rng.integers(0, 1 << 31, num_perm, dtype=np.int64)
        self._buckets: list[dict[bytes, list[object]]] = [{} for _ in range(bands)]
        self._shingles: dict[object, set[str]] = {}

    def minhash(self, hashes: NDArray[np.uint32]) -> NDArray[np.int64]:
        """The MinHash signature of a text's :func:`shingle_hashes`."""
        x = np.asarray(hashes, dtype=np.int64)
        return ((np.outer(x, self._a) + self._b) % _PRIME).min(axis=0)

    def _signature(self, sh: set[str]) -> NDArray[np.int64]:
        return self.minhash(np.fromiter((zlib.crc32(s.encode("utf-8")) for s in sh), dtype=np.uint32, count=len(sh)))

    def _bands(self, sig: NDArray[np.int64]) -> list[bytes]:
        return [sig[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def find(self, text: str) -> list[tuple[object, float]]:
        """``(item_id, similarity)`` of added texts at least ``threshold`` similar, most similar first."""
        sh = shingles(text)
        candidates = {i for band, key in zip(self._buckets, self._bands(self._signature(sh)), strict=True) for i in band.get(key, ())}
        found = [(i, jaccard(sh, self._shingles[i])) for i in candidates]
        return sorted([f for f in found if f[1] >= self.threshold], key=lambda f: -f[1])

    def add(self, item_id: object, text: str) -> None:
        sh = shingles(text)
        self._shingles[item_id] = sh
        for band, key in zip(self._buckets, self._bands(self._signature(sh)), strict=True):
            band.setdefault(key, []).append(item_id)


def duplicate_groups(texts: list[str], *, threshold: float = 0.7) -> np.ndarray:
    """Group id of each text (n,): exact and near duplicates, transitively, share one id."""
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_of_key: dict[str, int] = {}
    index = NearDuplicateIndex(threshold)
    for i, text in enumerate(texts):
        key = content_key(text)
        if key in first_of_key:
            parent[root(i)] = root(first_of_key[key])
            continue
        first_of_key[key] = i
        for j, _ in index.find(text):
            parent[root(i)] = root(int(j))  # type: ignore[call-overload]
        index.add(i, text)
    return np.array([root(i) for i in range(len(texts))], dtype=np.int64)
