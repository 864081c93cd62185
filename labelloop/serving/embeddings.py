"""Sentence vectors cached on disk, keyed by encoder, window and text: texts are re-scored after every
training, and each is embedded once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelloop.encoder import Encoder
from labelloop.serving.store import Store


class EmbeddingCache:
    """``embed(texts)`` like :meth:`Encoder.embed`, through the store's vector table."""

    def __init__(self, store: Store, encoder: Callable[[], Encoder | _Embedder], *, name: str,
                 max_length: int) -> None:
        self.store = store
        self._encoder = encoder  # loaded on the first text never seen before
        self._prefix = f"{name}|{max_length}|"

    @classmethod
    def of(cls, store: Store, embed: Callable[[list[str]], NDArray[Any]], *, name: str, max_length: int) -> EmbeddingCache:
        """A cache in front of any ``embed(texts)`` function (a fine-tuned model's features, say)."""
        return cls(store, lambda: _Embedder(embed), name=name, max_length=max_length)

    def embed(self, texts: list[str]) -> NDArray[Any]:
        """Unit vectors (n_texts, hidden), in order; only texts never seen are encoded."""
        if not texts:
            return self._encoder().embed([])
        keys = [hashlib.sha1((self._prefix + t).encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
        found = self.store.cached_vectors(list(set(keys)))
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            first = dict(zip(keys, texts, strict=True))
            fresh = dict(zip(missing, self._encoder().embed([first[k] for k in missing]), strict=True))
            self.store.cache_vectors(fresh)
            found.update(fresh)
        return np.stack([found[k] for k in keys])


class _Embedder:
    def __init__(self, embed: Callable[[list[str]], NDArray[Any]]) -> None:
        self.embed = embed
