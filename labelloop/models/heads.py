"""The heads: linear models on a frozen encoder's vectors (:class:`ChoicesModel`, :class:`SpansModel`,
:class:`WordTagsModel`), retrained in seconds on CPU; what each does is in :mod:`labelloop.models`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from labelloop.arrays import check_shapes, sigmoid, softmax
from labelloop.encoder import Encoder, TokenEncoding
from labelloop.errors import ModelError
from labelloop.spans import Gazetteer, Span, n_tags, spans_to_tags, tags_to_spans, word_ranges
from labelloop.wordtags import Words, shape

# Inverse temperature on cosine similarities: MiniLM cosines of related texts differ by ~0.1-0.3.
ZERO_SHOT_SCALE = 20.0
# For multiple-choice zero-shot, a label applies when its cosine clears this level.
ZERO_SHOT_THRESHOLD = 0.25
ZERO_SHOT_CACHE = 64  # zero-shot heads kept per process (one per distinct control): configs come from the network



class FineTunedClassifier(Protocol):
    """What a head needs of a fine-tuned classifier to start as exactly it: its output layer."""

    labels: tuple[str, ...]
    task: str

    def classifier(self) -> tuple[NDArray[Any], NDArray[Any]]: ...


@dataclass
class ChoicesModel:
    """Linear head over unit sentence vectors: ``logits = x @ weight + bias``."""

    labels: tuple[str, ...]
    multiple: bool
    weight: NDArray[Any]  # (hidden, n_labels)
    bias: NDArray[Any]  # (n_labels,)
    prior_weight: NDArray[Any]  # the zero-shot weights the head is anchored to
    trained_on: int = 0

    @classmethod
    def zero_shot(cls, encoder: Encoder, labels: Sequence[str], *, multiple: bool = False,
                  hints: dict[str, str] | None = None) -> ChoicesModel:
        """A head whose weights are the label names' (or their ``hints``') embeddings."""
        hints = hints or {}
        label_vectors = encoder.embed([hints.get(label) or label for label in labels])
        weight = (ZERO_SHOT_SCALE * label_vectors.T).astype(np.float32)
        bias_value = -ZERO_SHOT_SCALE * ZERO_SHOT_THRESHOLD if multiple else 0.0
        bias = np.full(len(labels), bias_value, dtype=np.float32)
        return cls(tuple(labels), multiple, weight, bias, weight.copy())

    def predict_proba(self, x: NDArray[Any]) -> NDArray[Any]:
        """Probabilities (n_texts, n_labels); independent per label when ``multiple``."""
        logits = x.astype(np.float64) @ self.weight + self.bias
        return sigmoid(logits) if self.multiple else softmax(logits)

    def fit(self, x: NDArray[Any], y: NDArray[Any], *, prior_strength: float = 0.1, max_iter: int = 200) -> ChoicesModel:
        """Train a copy on vectors ``x`` (n, hidden) and targets ``y``.

        ``y`` is class indices (n,) for single choice, or a 0/1 matrix (n, n_labels) for multiple.
        Classes are weighted inversely to their frequency. Weights and biases are pulled towards the
        zero-shot prior with a penalty of ``prior_strength / n`` (a Gaussian prior): one annotation can't
        make every prediction certain, and thousands are free to move far from the label names.
        """
        import torch

        xt = torch.as_tensor(x, dtype=torch.float32)
        w0 = torch.as_tensor(self.prior_weight, dtype=torch.float32)
        weight = w0.clone().requires_grad_(True)
        b0 = torch.as_tensor(self.bias, dtype=torch.float32)
        bias = b0.clone().requires_grad_(True)
        k = len(self.labels)
        if self.multiple:
            yt = torch.as_tensor(y, dtype=torch.float32)
            pos = yt.sum(0).clamp(min=1.0)
            pos_weight = ((len(yt) - pos).clamp(min=1.0) / pos).sqrt()
            loss_fn: torch.nn.Module = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        else:
            yt = torch.as_tensor(y, dtype=torch.long)
            counts = torch.bincount(yt, minlength=k).float()
            class_weight = torch.where(counts > 0, counts.sum() / (k * counts.clamp(min=1.0)), torch.zeros(k))
            loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> Any:
            optimizer.zero_grad()
            penalty = ((weight - w0) ** 2).sum() + ((bias - b0) ** 2).sum()
            loss = loss_fn(xt @ weight + bias, yt) + prior_strength / len(xt) * penalty
            loss.backward()
            return loss

        optimizer.step(closure)  # type: ignore[no-untyped-call]
        return ChoicesModel(
            self.labels,
            self.multiple,
            weight.detach().numpy(),
            bias.detach().numpy(),
            self.prior_weight,
            trained_on=len(x),
        )

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"weight": self.weight, "bias": self.bias, "prior_weight": self.prior_weight}

    @classmethod
    def from_classifier(cls, model: FineTunedClassifier) -> ChoicesModel:
        """The head that reproduces a fine-tuned classifier's output layer, labels in the control's order."""
        weight, bias = model.classifier()
        return cls(model.labels, model.task == "multi-label", weight, bias, weight.copy())

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, NDArray[Any]], *, width: int | None = None) -> ChoicesModel:
        k = len(meta["labels"])
        check_shapes(arrays, {"weight": (width, k), "bias": (k,), "prior_weight": (width, k)})
        return cls(
            tuple(meta["labels"]), bool(meta["multiple"]), arrays["weight"], arrays["bias"],
            arrays["prior_weight"], int(meta.get("trained_on", 0)),
        )


@dataclass
class WordTagsModel:
    """Dense word tagging (part of speech): every word gets one of ``labels``, no "outside" tag.

    A linear softmax over two kinds of evidence for each word: its first token's vector from the frozen
    encoder (meaning in context), and hashed spelling features of the word and its neighbours (the word
    itself, its suffixes, its shape, the words around it: the cues a perceptron tagger learns from). Trained
    with Adam on the whole batch; saved as plain arrays. ``words`` splits new text as the annotators split theirs.
    """

    labels: tuple[str, ...]
    weight: NDArray[Any]  # (hidden, n_labels)
    bias: NDArray[Any]  # (n_labels,)
    lexical: NDArray[Any]  # (LEXICAL_BUCKETS, n_labels): one row of logits per hashed spelling feature
    trained_on: int = 0
    words: Words = field(default_factory=Words)

    def predict_proba(self, vectors: NDArray[Any], words: Sequence[str]) -> NDArray[Any]:
        """(n_words, n_labels) from a sentence's (n_words, hidden) word vectors and its words."""
        logits = np.asarray(vectors, dtype=np.float64) @ self.weight + self.bias
        for k, ids in enumerate(lexical_features(words)):
            logits[k] += self.lexical[ids].sum(axis=0)
        return softmax(logits)

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"weight": self.weight, "bias": self.bias, "lexical": self.lexical}

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> WordTagsModel:
        k = len(meta["labels"])
        check_shapes(arrays, {"weight": (None, k), "bias": (k,), "lexical": (LEXICAL_BUCKETS, k)})
        return cls(tuple(meta["labels"]), arrays["weight"], arrays["bias"], arrays["lexical"],
                   int(meta.get("trained_on", 0)), Words.from_dict(meta.get("words")))

    @classmethod
    def fit(cls, vectors: Sequence[NDArray[Any]], words: Sequence[Sequence[str]], tags: Sequence[Sequence[str | None]],
            labels: Sequence[str], *, epochs: int = 150, lr: float = 0.05, splitter: Words | None = None
            ) -> WordTagsModel:
        """Train on sentences: ``vectors[i]`` (n_words, hidden), ``words[i]`` and ``tags[i]`` one label per
        word, where ``None`` marks a word nobody tagged (it is context, not a target)."""
        import torch

        labels = tuple(labels)
        index = {label: k for k, label in enumerate(labels)}
        hidden = next((len(v[0]) for v in vectors if len(v)), 0)
        feats, rows, ys = [], [], []
        for v, w, t in zip(vectors, words, tags, strict=True):
            if not (len(v) == len(w) == len(t)):
                raise ModelError(f"{len(v)} word vectors, {len(w)} words and {len(t)} tags: every word needs one of each")
            ids = lexical_features(w)
            for k, tag in enumerate(t):
                if tag in index:
                    feats.append(v[k])
                    rows.append(ids[k])
                    ys.append(index[tag])
        if not ys:
            raise ModelError("no tagged word to learn from: annotate at least one sentence's words")
        x = torch.as_tensor(np.asarray(feats, dtype=np.float32))
        y = torch.as_tensor(ys, dtype=torch.long)
        flat = torch.as_tensor([i for r in rows for i in r], dtype=torch.long)
        offsets = torch.as_tensor(np.cumsum([0] + [len(r) for r in rows[:-1]]), dtype=torch.long)
        layer = torch.nn.Linear(hidden, len(labels))
        table = torch.nn.EmbeddingBag(LEXICAL_BUCKETS, len(labels), mode="sum")
        torch.nn.init.zeros_(table.weight)
        optimizer = torch.optim.Adam([*layer.parameters(), *table.parameters()], lr=lr)
        for _ in range(epochs):
            optimizer.zero_grad()
            logits = layer(x) + table(flat, offsets)
            loss = torch.nn.functional.cross_entropy(logits, y) + 1e-4 * table.weight.pow(2).sum() / len(y) ** 0.5
            loss.backward()
            optimizer.step()
        return cls(labels, layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy(),
                   table.weight.detach().numpy().copy(), trained_on=len(tags), words=splitter or Words())


LEXICAL_BUCKETS = 1 << 15


def _shape(word: str) -> str:
    """The shape of the word's first 12 characters, cut to 5 (a spelling feature): ``"Xxxx"`` -> ``"Xx"``."""
    return shape(word[:12])[:5]


def lexical_features(words: Sequence[str]) -> list[list[int]]:
    """Hashed ids (crc32, stable across processes) of each word's spelling features and its neighbours'."""
    import zlib

    low = [w.lower() for w in words]
    out = []
    for i, word in enumerate(words):
        w = low[i]
        prev, after = (low[i - 1] if i else "<s>"), (low[i + 1] if i + 1 < len(words) else "</s>")
        names = [f"w={w}", f"s1={w[-1:]}", f"s2={w[-2:]}", f"s3={w[-3:]}", f"p1={w[:1]}", f"shape={_shape(word)}",
                 f"prev={prev}", f"next={after}", f"prev_s3={prev[-3:]}", f"next_s3={after[-3:]}",
                 f"w+prev={w} {prev}", "first" if i == 0 else "inside"]
        out.append([zlib.crc32(n.encode()) % LEXICAL_BUCKETS for n in names])
    return out


@dataclass
class SpansModel:
    """A linear BIO tagger on token vectors of each word's first token, plus a gazetteer."""

    labels: tuple[str, ...]
    weight: NDArray[Any]  # (hidden, n_tags)
    bias: NDArray[Any]  # (n_tags,)
    gazetteer: Gazetteer
    trained_on: int = 0

    def word_probs(self, enc: TokenEncoding) -> tuple[NDArray[Any], NDArray[Any]]:
        """``(ranges, probs)``: each word's character range and tag probabilities."""
        ranges, first = word_ranges(enc.offsets, enc.word_ids)
        if len(first) == 0:
            return ranges, np.zeros((0, n_tags(len(self.labels))))
        logits = enc.vectors[first].astype(np.float64) @ self.weight + self.bias
        return ranges, softmax(logits)

    def predict_spans(self, text: str, ranges: NDArray[Any], probs: NDArray[Any]) -> list[Span]:
        """Tagger spans, plus gazetteer matches that no tagger span overlaps."""
        spans = tags_to_spans(ranges, probs, self.labels)
        for g in self.gazetteer.find(text):
            if g.label in self.labels and not any(s.start < g.end and g.start < s.end for s in spans):
                spans.append(g)
        return sorted(spans, key=lambda s: (s.start, s.end))

    @classmethod
    def fit(
        cls,
        encodings: Sequence[TokenEncoding],
        texts: Sequence[str],
        spans: Sequence[Sequence[Span]],
        labels: Sequence[str],
        *,
        epochs: int = 150,
        lr: float = 0.05,
    ) -> SpansModel:
        """Train on annotated spans; ``O`` is down-weighted by class frequency."""
        import torch

        feats, tags = [], []
        for enc, task_spans in zip(encodings, spans, strict=True):
            ranges, first = word_ranges(enc.offsets, enc.word_ids)
            if len(first):
                feats.append(enc.vectors[first])
                tags.append(spans_to_tags(ranges, task_spans, labels))
        t = n_tags(len(labels))
        hidden = encodings[0].vectors.shape[1] if encodings else 0
        weight = np.zeros((hidden, t), dtype=np.float32)
        bias = np.zeros(t, dtype=np.float32)
        if feats:
            x = torch.as_tensor(np.concatenate(feats), dtype=torch.float32)
            y = torch.as_tensor(np.concatenate(tags), dtype=torch.long)
            counts = torch.bincount(y, minlength=t).float()
            class_weight = torch.where(counts > 0, (counts.sum() / counts.clamp(min=1.0)).sqrt(), torch.zeros(t))
            layer = torch.nn.Linear(hidden, t)
            optimizer = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=1e-4)
            loss_fn = torch.nn.CrossEntropyLoss(weight=class_weight)
            for _ in range(epochs):
                optimizer.zero_grad()
                loss_fn(layer(x), y).backward()
                optimizer.step()
            weight = layer.weight.detach().numpy().T.copy()
            bias = layer.bias.detach().numpy().copy()
        return cls(tuple(labels), weight, bias, Gazetteer.from_spans(texts, spans), trained_on=len(encodings))

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> SpansModel:
        t = n_tags(len(meta["labels"]))
        check_shapes(arrays, {"weight": (None, t), "bias": (t,)})
        return cls(
            tuple(meta["labels"]), arrays["weight"], arrays["bias"], Gazetteer(meta.get("gazetteer", {})),
            int(meta.get("trained_on", 0)),
        )
