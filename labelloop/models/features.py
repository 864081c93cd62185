"""The backend's fast learners on one frozen encoder (:class:`Features`), and saving and loading every served
model as ``.npz`` + JSON through one table of saved types (no pickles, no type switches)."""

from __future__ import annotations

import functools
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelloop.encoder import Encoder, TokenEncoding
from labelloop.errors import ModelError
from labelloop.labeling.spec import ControlSpec
from labelloop.models.adapters import HeadClassifier, HeadTagger, Saved, TunedHead, WordTagger, fit_word_tags
from labelloop.models.heads import ZERO_SHOT_CACHE, ChoicesModel, SpansModel
from labelloop.models.transformer import TransformerModel
from labelloop.relations import Linker, Links, fit_links
from labelloop.spans import Span


class Features:
    """The backend's fast learners on one frozen encoder: zero-shot heads, head and tagger training, and
    saving and loading them as ``.npz`` + JSON (no pickles).

    ``encoder`` is a function that loads it (once, on first use: a server answers before it is loaded).
    ``embed`` replaces the encoder's own sentence embedding, e.g. with one that caches vectors on disk;
    ``hidden_size`` gives the encoder's width without loading it; ``cache(name, embed)`` wraps a fine-tuned
    model's feature function in a disk cache.
    """

    def __init__(self, encoder: Callable[[], Encoder], *, embed: Callable[[list[str]], NDArray[Any]] | None = None,
                 hidden_size: Callable[[], int] | None = None,
                 cache: Callable[[str, Callable[[list[str]], NDArray[Any]]], Callable[[list[str]], NDArray[Any]]]
                 | None = None) -> None:
        self._load = encoder
        self._embed = embed
        self._hidden_size = hidden_size
        self._cache = cache  # (name, embed) -> the same embed through a disk cache, for fine-tuned features
        self._zero_shot: dict[tuple[str, bool], HeadClassifier] = {}

    @functools.cached_property
    def encoder(self) -> Encoder:
        return self._load()

    def embed(self, texts: list[str]) -> NDArray[Any]:
        return self._embed(texts) if self._embed else self.encoder.embed(texts)

    def encode(self, texts: list[str]) -> list[TokenEncoding]:
        return self.encoder.encode(texts)

    @property
    def hidden_size(self) -> int:
        return self._hidden_size() if self._hidden_size else self.encoder.hidden_size

    def zero_shot(self, spec: ControlSpec) -> HeadClassifier:
        """The untrained head for a classification control: cosine to each label's name."""
        key = (spec.signature, spec.multiple)
        model = self._zero_shot.pop(key, None)
        if model is None:
            model = HeadClassifier(ChoicesModel.zero_shot(self.encoder, spec.labels, multiple=spec.multiple),
                                   self.embed)
        self._zero_shot[key] = model  # most recently used last; the oldest go beyond ZERO_SHOT_CACHE
        while len(self._zero_shot) > ZERO_SHOT_CACHE:
            self._zero_shot.pop(next(iter(self._zero_shot)))
        return model

    def fit_classifier(self, spec: ControlSpec, texts: list[str], targets: NDArray[Any]) -> HeadClassifier:
        return self.zero_shot(spec).fit(texts, targets)

    def fit_tagger(self, spec: ControlSpec, texts: list[str], spans: list[list[Span]]) -> HeadTagger:
        return HeadTagger(SpansModel.fit(self.encode(texts), texts, spans, spec.labels), self.encode)

    def fit_word_tagger(self, spec: ControlSpec, texts: list[str], spans: list[list[Span]]) -> WordTagger:
        return WordTagger(fit_word_tags(self.encode, texts, spans, spec.labels), self.encode)

    def fit_linker(self, spec: ControlSpec, texts: list[str], answers: list[Links]) -> Linker:
        """A mention-pair linker for a ``<Relations>`` control (``spec.paths`` holds the linked span labels)."""
        return Linker(fit_links(self.encode, texts, answers, spec.labels, [p[0] for p in spec.paths]), self.encode)

    def tuned(self, model: TransformerModel) -> TunedHead:
        """The head on a fine-tuned classifier's features, starting as exactly its classifier."""
        embed: Callable[[list[str]], NDArray[Any]] = model.features
        if self._cache is not None:
            embed = self._cache(f"tuned:{model.path}", embed)
        return TunedHead(model, ChoicesModel.from_classifier(model), embed)

    def save(self, model: Saved, folder: Path, stem: str) -> dict[str, Any]:
        """Write ``<stem>.npz`` into ``folder`` (where the model has arrays) and return the JSON metadata that
        goes with it; a :class:`TransformerModel` stays in its run folder and the metadata points at it."""
        return model.saved(folder, stem)

    def load(self, folder: Path, meta: dict[str, Any]) -> Saved:
        """The model :meth:`save` wrote; :class:`ModelError` for an unknown type or a missing, truncated or
        mis-shaped file."""
        kind = SAVED.get(str(meta.get("type")))
        if kind is None:
            raise ModelError(f"{folder}: a saved model of unknown type {meta.get('type')!r} (known: {sorted(SAVED)})")
        try:
            arrays: dict[str, NDArray[Any]] = {}
            if "file" in meta:
                with np.load(folder / meta["file"], allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files}
            weight = arrays.get("weight")
            if weight is not None:
                width = getattr(kind, "width", None)  # a model whose input is not the encoder's vectors says so
                hidden = width(self, meta) if width else self.hidden_size
                if hidden is not None and weight.shape[:1] != (hidden,):
                    raise ModelError(f"{folder}: weights are for a {weight.shape[0]}-wide encoder, this one is {hidden}")
            restored: Saved = kind.restore(self, meta, arrays)
            return restored
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ModelError(f"{folder}: {type(e).__name__}: {e}") from e


# Every served model type, by the name its metadata saves it under.
SAVED: dict[str, Any] = {kind.saved_as: kind for kind in (HeadClassifier, HeadTagger, WordTagger, TunedHead,
                                                          TransformerModel, Linker)}
