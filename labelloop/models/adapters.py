"""The heads behind the text protocol that serving sees (:class:`TextClassifier`, :class:`TextTagger`), and the
head that keeps a fine-tuned encoder learning (:class:`TunedHead`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from labelloop.arrays import save_arrays
from labelloop.encoder import TokenEncoding
from labelloop.models.heads import ChoicesModel, SpansModel, WordTagsModel
from labelloop.models.transformer import TransformerModel
from labelloop.spans import Span
from labelloop.wordtags import Words


class TextClassifier(Protocol):
    """What serving asks of a classifier: class probabilities per text, and a retrained copy."""

    labels: tuple[str, ...]
    trained_on: int

    def predict_proba(self, texts: list[str]) -> NDArray[Any]: ...

    def fit(self, texts: list[str], targets: NDArray[Any]) -> TextClassifier: ...


class TextTagger(Protocol):
    """What serving asks of a tagger: per text its spans and its words' tag probabilities, and a retrained copy."""

    labels: tuple[str, ...]
    trained_on: int

    def predict_spans(self, texts: list[str]) -> list[tuple[list[Span], NDArray[Any]]]: ...

    def fit(self, texts: list[str], spans: list[list[Span]]) -> TextTagger: ...


class Saved(Protocol):
    """A served model that saves itself (``saved``: writes ``<stem>.npz`` where it has arrays, returns its JSON
    metadata, ``type`` = ``saved_as``) and is read back by ``restore`` (see :meth:`Features.load`)."""

    saved_as: ClassVar[str]

    def saved(self, folder: Path, stem: str) -> dict[str, Any]: ...

    @classmethod
    def restore(cls, features: Any, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> Any: ...


class HeadClassifier:
    """A :class:`ChoicesModel` behind the text protocol: ``predict_proba(texts)``, ``fit(texts, targets)``."""

    def __init__(self, head: ChoicesModel, embed: Callable[[list[str]], NDArray[Any]]) -> None:
        self.head = head
        self.embed = embed
        self.labels = head.labels
        self.trained_on = head.trained_on

    def predict_proba(self, texts: list[str]) -> NDArray[Any]:
        """(n_texts, n_labels); each distinct text is embedded once."""
        unique = {text: k for k, text in enumerate(dict.fromkeys(texts))}
        return self.head.predict_proba(self.embed(list(unique)))[[unique[t] for t in texts]]

    def fit(self, texts: list[str], targets: NDArray[Any]) -> HeadClassifier:
        return HeadClassifier(self.head.fit(self.embed(texts), np.asarray(targets)), self.embed)

    saved_as: ClassVar[str] = "choices"

    def saved(self, folder: Path, stem: str) -> dict[str, Any]:
        return save_arrays(folder, stem, self.head, type=self.saved_as, multiple=self.head.multiple)

    @classmethod
    def restore(cls, features: Any, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> HeadClassifier:
        return cls(ChoicesModel.from_arrays(meta, arrays), features.embed)


class _Tagger:
    """A tagging model and the encoder function that gives it token vectors."""

    def __init__(self, model: Any, encode: Callable[[list[str]], list[TokenEncoding]]) -> None:
        self.model = model
        self.encode = encode
        self.labels: tuple[str, ...] = model.labels
        self.trained_on: int = model.trained_on


class HeadTagger(_Tagger):
    """A :class:`SpansModel` behind the text protocol: ``predict_spans(texts)``, ``fit(texts, spans)``."""

    model: SpansModel

    def predict_spans(self, texts: list[str]) -> list[tuple[list[Span], NDArray[Any]]]:
        """Per text: its spans and its words' tag probabilities (n_words, n_tags)."""
        out = []
        for text, enc in zip(texts, self.encode(texts), strict=True):
            ranges, probs = self.model.word_probs(enc)
            out.append((self.model.predict_spans(text, ranges, probs), probs))
        return out

    def fit(self, texts: list[str], spans: list[list[Span]]) -> HeadTagger:
        return HeadTagger(SpansModel.fit(self.encode(texts), texts, spans, self.labels), self.encode)

    saved_as: ClassVar[str] = "labels"

    def saved(self, folder: Path, stem: str) -> dict[str, Any]:
        return save_arrays(folder, stem, self.model, type=self.saved_as, gazetteer=self.model.gazetteer.counts)

    @classmethod
    def restore(cls, features: Any, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> HeadTagger:
        return cls(SpansModel.from_arrays(meta, arrays), features.encode)


class WordTagger(_Tagger):
    """A :class:`WordTagsModel` behind the text protocol: ``predict_spans(texts)`` gives one region per word
    (:mod:`labelloop.wordtags`), ``fit(texts, spans)`` learns from annotated regions."""

    model: WordTagsModel

    def predict_spans(self, texts: list[str]) -> list[tuple[list[Span], NDArray[Any]]]:
        """Per text: a span per word with its tag and probability, and the words' tag probabilities."""
        out = []
        for ranges, words, vectors in word_vectors(self.encode, texts, [self.model.words.ranges(t) for t in texts]):
            probs = self.model.predict_proba(vectors, words) if words else np.zeros((0, len(self.labels)))
            best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
            out.append(([Span(a, b, self.labels[k], float(p[k])) for (a, b), k, p in zip(ranges, best, probs, strict=True)], probs))
        return out

    def fit(self, texts: list[str], spans: list[list[Span]]) -> WordTagger:
        return WordTagger(fit_word_tags(self.encode, texts, spans, self.labels), self.encode)

    saved_as: ClassVar[str] = "word_tags"

    def saved(self, folder: Path, stem: str) -> dict[str, Any]:
        return save_arrays(folder, stem, self.model, type=self.saved_as, words=self.model.words.to_dict())

    @classmethod
    def restore(cls, features: Any, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> WordTagger:
        return cls(WordTagsModel.from_arrays(meta, arrays), features.encode)


def word_vectors(encode: Callable[[list[str]], list[TokenEncoding]], texts: list[str],
                 words: list[list[tuple[int, int]]]) -> list[tuple[list[tuple[int, int]], list[str], NDArray[Any]]]:
    """Per text: its words' ranges (as given), the words, and each word's first-token vector (zeros for a word
    the tokenizer dropped)."""
    from labelloop.wordtags import first_tokens

    out = []
    for text, enc, ranges in zip(texts, encode(texts), words, strict=True):
        first = first_tokens(enc.offsets, enc.word_ids, ranges)
        vectors = np.zeros((len(ranges), enc.vectors.shape[1]), dtype=np.float32)
        vectors[first >= 0] = enc.vectors[first[first >= 0]]
        out.append((ranges, [text[a:b] for a, b in ranges], vectors))
    return out


def fit_word_tags(encode: Callable[[list[str]], list[TokenEncoding]], texts: list[str], spans: list[list[Span]],
                  labels: Sequence[str]) -> WordTagsModel:
    """A :class:`WordTagsModel` from texts and their annotated tag regions: it learns the annotators' word
    boundaries (:class:`~labelloop.wordtags.Words`) and trains on their regions as words (words no region
    covers are context only)."""
    from labelloop.wordtags import annotated_words

    splitter = Words.learn(texts, spans)
    annotated = [annotated_words(t, s, splitter) for t, s in zip(texts, spans, strict=True)]
    encoded = word_vectors(encode, texts, [r for r, _ in annotated])
    return WordTagsModel.fit([v for _, _, v in encoded], [w for _, w, _ in encoded], [t for _, t in annotated],
                             labels, splitter=splitter)


class TunedHead:
    """A linear head on a fine-tuned classifier's own features (the input of its output layer).

    It starts as exactly the fine-tuned classifier and is retrained in seconds on every annotation, anchored
    to the fine-tuned output layer like the zero-shot head is anchored to the label names: the encoder that
    was fine-tuned in the background keeps learning from each new label through its head.
    """

    def __init__(self, base: TransformerModel, head: ChoicesModel, embed: Callable[[list[str]], NDArray[Any]]) -> None:
        self.base = base
        self.head = head
        self.embed = embed
        self.labels = head.labels
        self.trained_on = head.trained_on
        self.path = base.path

    def predict_proba(self, texts: list[str]) -> NDArray[Any]:
        """(n_texts, n_labels), through the fine-tuned encoder's features."""
        return self.head.predict_proba(self.embed(texts))

    def fit(self, texts: list[str], targets: NDArray[Any]) -> TunedHead:
        prior = ChoicesModel.from_classifier(self.base)
        return self.with_head(prior.fit(self.embed(texts), np.asarray(targets)))

    def with_head(self, head: ChoicesModel) -> TunedHead:
        return TunedHead(self.base, head, self.embed)

    saved_as: ClassVar[str] = "tuned"

    @staticmethod
    def width(features: Any, meta: dict[str, Any]) -> int | None:
        """None: its width is the fine-tuned model's, checked against it on restore."""
        return None

    def saved(self, folder: Path, stem: str) -> dict[str, Any]:
        return save_arrays(folder, stem, self.head, type=self.saved_as, path=self.base.path,
                           multiple=self.head.multiple)

    @classmethod
    def restore(cls, features: Any, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> TunedHead:
        tuned = features.tuned(TransformerModel(meta["path"], meta["labels"]))
        tuned_head: TunedHead = tuned.with_head(ChoicesModel.from_arrays(meta, arrays, width=tuned.head.weight.shape[0]))
        return tuned_head
