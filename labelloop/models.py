"""The models the backend serves: fast heads on a frozen encoder, retrained in seconds on CPU.

- :class:`ChoicesModel` maps a sentence vector to probabilities over a ``<Choices>`` control's labels.
  Untrained, it is zero-shot: cosine similarity to each label's name (or ``hint``). Trained, it is a
  linear head anchored to those zero-shot weights, so a handful of labels moves it gently and many
  labels move it far.
- :class:`SpansModel` tags words for a ``<Labels>`` control: a linear BIO tagger on token vectors
  with class weights (so it does not collapse to all-``O``), plus a gazetteer of annotated mentions.
- :class:`WordTagsModel` gives every word one tag (part of speech, ``<Labels dense="true">``): a softmax
  over each word's vector and hashed spelling features of the word and its neighbours.

Serving sees every model through one text protocol: classifiers answer ``predict_proba(texts)`` and
taggers ``predict_spans(texts)``, and both learn with ``fit(texts, targets)``. :class:`HeadClassifier`,
:class:`HeadTagger` and :class:`WordTagger` put the heads behind it; :class:`TransformerModel`, a fine-tuned
run, speaks it natively. Once a fine-tuned encoder serves, :class:`TunedHead` keeps the loop learning on top of it: a head
on the fine-tuned model's own features, starting from its classifier and retrained after each annotation.
:class:`SetFitClassifier` (contrastive fine-tuning of the encoder plus a head) speaks the same protocol.
:class:`Features` builds, saves and loads the heads (plain ``.npz`` + JSON files, no pickles).
"""

from __future__ import annotations

import functools
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labelloop.arrays import check_shapes, sigmoid, softmax
from labelloop.encoder import Encoder, TokenEncoding
from labelloop.errors import ModelError
from labelloop.relations import Linker, LinksModel, fit_links, pair_width
from labelloop.spans import Gazetteer, Span, n_tags, spans_to_tags, tags_to_spans, word_ranges
from labelloop.wordtags import Words, shape

# Inverse temperature on cosine similarities: MiniLM cosines of related texts differ by ~0.1-0.3.
ZERO_SHOT_SCALE = 20.0
# For multiple-choice zero-shot, a label applies when its cosine clears this level.
ZERO_SHOT_THRESHOLD = 0.25
ZERO_SHOT_CACHE = 64  # zero-shot heads kept per process (one per distinct control): configs come from the network


@dataclass
class ChoicesModel:
    """Linear head over unit sentence vectors: ``logits = x @ weight + bias``."""

    labels: tuple[str, ...]
    multiple: bool
    weight: np.ndarray  # (hidden, n_labels)
    bias: np.ndarray  # (n_labels,)
    prior_weight: np.ndarray  # the zero-shot weights the head is anchored to
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

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (n_texts, n_labels); independent per label when ``multiple``."""
        logits = x.astype(np.float64) @ self.weight + self.bias
        return sigmoid(logits) if self.multiple else softmax(logits)

    def fit(self, x: np.ndarray, y: np.ndarray, *, prior_strength: float = 0.1, max_iter: int = 200) -> ChoicesModel:
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

        def closure():
            optimizer.zero_grad()
            penalty = ((weight - w0) ** 2).sum() + ((bias - b0) ** 2).sum()
            loss = loss_fn(xt @ weight + bias, yt) + prior_strength / len(xt) * penalty
            loss.backward()
            return loss

        optimizer.step(closure)
        return ChoicesModel(
            self.labels,
            self.multiple,
            weight.detach().numpy(),
            bias.detach().numpy(),
            self.prior_weight,
            trained_on=len(x),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias, "prior_weight": self.prior_weight}

    @classmethod
    def from_classifier(cls, model: TransformerModel) -> ChoicesModel:
        """The head that reproduces a fine-tuned classifier's output layer, labels in the control's order."""
        weight, bias = model.classifier()
        return cls(model.labels, model.task == "multi-label", weight, bias, weight.copy())

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray], *, width: int | None = None) -> ChoicesModel:
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
    weight: np.ndarray  # (hidden, n_labels)
    bias: np.ndarray  # (n_labels,)
    lexical: np.ndarray  # (LEXICAL_BUCKETS, n_labels): one row of logits per hashed spelling feature
    trained_on: int = 0
    words: Words = field(default_factory=Words)

    def predict_proba(self, vectors: np.ndarray, words: Sequence[str]) -> np.ndarray:
        """(n_words, n_labels) from a sentence's (n_words, hidden) word vectors and its words."""
        logits = np.asarray(vectors, dtype=np.float64) @ self.weight + self.bias
        for k, ids in enumerate(lexical_features(words)):
            logits[k] += self.lexical[ids].sum(axis=0)
        return softmax(logits)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias, "lexical": self.lexical}

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray]) -> WordTagsModel:
        k = len(meta["labels"])
        check_shapes(arrays, {"weight": (None, k), "bias": (k,), "lexical": (LEXICAL_BUCKETS, k)})
        return cls(tuple(meta["labels"]), arrays["weight"], arrays["bias"], arrays["lexical"],
                   int(meta.get("trained_on", 0)), Words.from_dict(meta.get("words")))

    @classmethod
    def fit(cls, vectors: Sequence[np.ndarray], words: Sequence[Sequence[str]], tags: Sequence[Sequence[str | None]],
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
    weight: np.ndarray  # (hidden, n_tags)
    bias: np.ndarray  # (n_tags,)
    gazetteer: Gazetteer
    trained_on: int = 0

    def word_probs(self, enc: TokenEncoding) -> tuple[np.ndarray, np.ndarray]:
        """``(ranges, probs)``: each word's character range and tag probabilities."""
        ranges, first = word_ranges(enc.offsets, enc.word_ids)
        if len(first) == 0:
            return ranges, np.zeros((0, n_tags(len(self.labels))))
        logits = enc.vectors[first].astype(np.float64) @ self.weight + self.bias
        return ranges, softmax(logits)

    def predict_spans(self, text: str, ranges: np.ndarray, probs: np.ndarray) -> list[Span]:
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

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray]) -> SpansModel:
        t = n_tags(len(meta["labels"]))
        check_shapes(arrays, {"weight": (None, t), "bias": (t,)})
        return cls(
            tuple(meta["labels"]), arrays["weight"], arrays["bias"], Gazetteer(meta.get("gazetteer", {})),
            int(meta.get("trained_on", 0)),
        )


class HeadClassifier:
    """A :class:`ChoicesModel` behind the text protocol: ``predict_proba(texts)``, ``fit(texts, targets)``."""

    def __init__(self, head: ChoicesModel, embed: Callable[[list[str]], np.ndarray]) -> None:
        self.head = head
        self.embed = embed
        self.labels = head.labels
        self.trained_on = head.trained_on

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n_texts, n_labels); each distinct text is embedded once."""
        unique = {text: k for k, text in enumerate(dict.fromkeys(texts))}
        return self.head.predict_proba(self.embed(list(unique)))[[unique[t] for t in texts]]

    def fit(self, texts: list[str], targets: np.ndarray) -> HeadClassifier:
        return HeadClassifier(self.head.fit(self.embed(texts), np.asarray(targets)), self.embed)


class _Tagger:
    """A tagging model and the encoder function that gives it token vectors."""

    def __init__(self, model, encode: Callable[[list[str]], list[TokenEncoding]]) -> None:
        self.model = model
        self.encode = encode
        self.labels: tuple[str, ...] = model.labels
        self.trained_on: int = model.trained_on


class HeadTagger(_Tagger):
    """A :class:`SpansModel` behind the text protocol: ``predict_spans(texts)``, ``fit(texts, spans)``."""

    model: SpansModel

    def predict_spans(self, texts: list[str]) -> list[tuple[list[Span], np.ndarray]]:
        """Per text: its spans and its words' tag probabilities (n_words, n_tags)."""
        out = []
        for text, enc in zip(texts, self.encode(texts), strict=True):
            ranges, probs = self.model.word_probs(enc)
            out.append((self.model.predict_spans(text, ranges, probs), probs))
        return out

    def fit(self, texts: list[str], spans: list[list[Span]]) -> HeadTagger:
        return HeadTagger(SpansModel.fit(self.encode(texts), texts, spans, self.labels), self.encode)


class WordTagger(_Tagger):
    """A :class:`WordTagsModel` behind the text protocol: ``predict_spans(texts)`` gives one region per word
    (:mod:`labelloop.wordtags`), ``fit(texts, spans)`` learns from annotated regions."""

    model: WordTagsModel

    def predict_spans(self, texts: list[str]) -> list[tuple[list[Span], np.ndarray]]:
        """Per text: a span per word with its tag and probability, and the words' tag probabilities."""
        out = []
        for ranges, words, vectors in word_vectors(self.encode, texts, [self.model.words.ranges(t) for t in texts]):
            probs = self.model.predict_proba(vectors, words) if words else np.zeros((0, len(self.labels)))
            best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
            out.append(([Span(a, b, self.labels[k], float(p[k])) for (a, b), k, p in zip(ranges, best, probs, strict=True)], probs))
        return out

    def fit(self, texts: list[str], spans: list[list[Span]]) -> WordTagger:
        return WordTagger(fit_word_tags(self.encode, texts, spans, self.labels), self.encode)


def word_vectors(encode: Callable[[list[str]], list[TokenEncoding]], texts: list[str],
                 words: list[list[tuple[int, int]]]) -> list[tuple[list[tuple[int, int]], list[str], np.ndarray]]:
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

    def __init__(self, base: TransformerModel, head: ChoicesModel, embed: Callable[[list[str]], np.ndarray]) -> None:
        self.base = base
        self.head = head
        self.embed = embed
        self.labels = head.labels
        self.trained_on = head.trained_on
        self.path = base.path

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n_texts, n_labels), through the fine-tuned encoder's features."""
        return self.head.predict_proba(self.embed(texts))

    def fit(self, texts: list[str], targets: np.ndarray) -> TunedHead:
        prior = ChoicesModel.from_classifier(self.base)
        return self.with_head(prior.fit(self.embed(texts), np.asarray(targets)))

    def with_head(self, head: ChoicesModel) -> TunedHead:
        return TunedHead(self.base, head, self.embed)


class SetFitClassifier:
    """SetFit: the sentence encoder fine-tuned contrastively on pairs of labeled texts (same label or not),
    then a logistic-regression head on its vectors (the ``setfit`` package).

    It trains in minutes on CPU, not seconds, so it is a rung the simulation and benchmarks compare, not
    the per-annotation head. ``base`` is a sentence-transformers model name or path (the packaged MiniLM by
    default); ``iterations`` is the number of pairs drawn per labeled text.
    """

    def __init__(self, base: str, labels: Sequence[str], *, iterations: int = 10, seed: int = 0,
                 model=None) -> None:
        self.base = base
        self.labels = tuple(labels)
        self.iterations = iterations
        self.seed = seed
        self.model = model
        self.trained_on = 0

    def fit(self, texts: list[str], targets: np.ndarray) -> SetFitClassifier:
        """A new classifier trained on ``texts`` with class indices ``targets`` into ``labels``."""
        import tempfile

        from labelloop._optional import require

        require("setfit", "setfit")
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        targets = np.asarray(targets, dtype=int)
        if len(set(targets.tolist())) < 2:
            raise ModelError("SetFit needs examples of at least two labels; annotate more tasks first")
        model = SetFitModel.from_pretrained(self.base)
        with tempfile.TemporaryDirectory(prefix="labelloop-setfit-") as out:
            args = TrainingArguments(output_dir=out, batch_size=16, num_epochs=1, num_iterations=self.iterations,
                                     seed=self.seed, show_progress_bar=False, save_strategy="no", report_to="none")
            data = Dataset.from_dict({"text": list(texts), "label": targets.tolist()})
            Trainer(model=model, args=args, train_dataset=data).train()
        trained = SetFitClassifier(self.base, self.labels, iterations=self.iterations, seed=self.seed, model=model)
        trained.trained_on = len(texts)
        return trained

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n_texts, n_labels); labels the head never saw get probability 0."""
        if self.model is None:
            raise ModelError("this SetFit classifier is not trained yet: call fit(texts, targets) first")
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        if texts:
            probs = np.asarray(self.model.predict_proba(list(texts), as_numpy=True), dtype=np.float64)
            out[:, np.asarray(self.model.model_head.classes_, dtype=int)] = probs
        return out


class Features:
    """The backend's fast learners on one frozen encoder: zero-shot heads, head and tagger training, and
    saving and loading them as ``.npz`` + JSON (no pickles).

    ``encoder`` is a function that loads it (once, on first use: a server answers before it is loaded).
    ``embed`` replaces the encoder's own sentence embedding, e.g. with one that caches vectors on disk;
    ``hidden_size`` gives the encoder's width without loading it; ``cache(name, embed)`` wraps a fine-tuned
    model's feature function in a disk cache.
    """

    def __init__(self, encoder: Callable[[], Encoder], *, embed: Callable[[list[str]], np.ndarray] | None = None,
                 hidden_size: Callable[[], int] | None = None,
                 cache: Callable[[str, Callable[[list[str]], np.ndarray]], Callable[[list[str]], np.ndarray]]
                 | None = None) -> None:
        self._load = encoder
        self._embed = embed
        self._hidden_size = hidden_size
        self._cache = cache  # (name, embed) -> the same embed through a disk cache, for fine-tuned features
        self._zero_shot: dict[tuple[str, bool], HeadClassifier] = {}

    @functools.cached_property
    def encoder(self) -> Encoder:
        return self._load()

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts) if self._embed else self.encoder.embed(texts)

    def encode(self, texts: list[str]) -> list[TokenEncoding]:
        return self.encoder.encode(texts)

    @property
    def hidden_size(self) -> int:
        return self._hidden_size() if self._hidden_size else self.encoder.hidden_size

    def zero_shot(self, spec) -> HeadClassifier:
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

    def fit_classifier(self, spec, texts: list[str], targets: np.ndarray) -> HeadClassifier:
        return self.zero_shot(spec).fit(texts, targets)

    def fit_tagger(self, spec, texts: list[str], spans: list[list[Span]]) -> HeadTagger:
        return HeadTagger(SpansModel.fit(self.encode(texts), texts, spans, spec.labels), self.encode)

    def fit_word_tagger(self, spec, texts: list[str], spans: list[list[Span]]) -> WordTagger:
        return WordTagger(fit_word_tags(self.encode, texts, spans, spec.labels), self.encode)

    def fit_linker(self, spec, texts: list[str], answers: list) -> Linker:
        """A mention-pair linker for a ``<Relations>`` control (``spec.paths`` holds the linked span labels)."""
        return Linker(fit_links(self.encode, texts, answers, spec.labels, [p[0] for p in spec.paths]), self.encode)

    def tuned(self, model: TransformerModel) -> TunedHead:
        """The head on a fine-tuned classifier's features, starting as exactly its classifier."""
        embed: Callable[[list[str]], np.ndarray] = model.features
        if self._cache is not None:
            embed = self._cache(f"tuned:{model.path}", embed)
        return TunedHead(model, ChoicesModel.from_classifier(model), embed)

    def save(self, model, folder: Path, stem: str) -> dict:
        """Write ``<stem>.npz`` into ``folder`` and return the JSON metadata that goes with it.

        A :class:`TransformerModel` stays in its run folder; the metadata points at it.
        """
        if isinstance(model, TransformerModel):
            return {"type": "transformer", "path": model.path, "labels": list(model.labels), "trained_on": 0}
        inner = model.head if isinstance(model, (HeadClassifier, TunedHead)) else model.model
        np.savez(folder / f"{stem}.npz", **inner.arrays())
        meta = {"labels": list(inner.labels), "trained_on": inner.trained_on, "file": f"{stem}.npz"}
        if isinstance(model, TunedHead):
            meta.update(type="tuned", path=model.base.path, multiple=model.head.multiple)
        elif isinstance(inner, ChoicesModel):
            meta.update(type="choices", multiple=inner.multiple)
        elif isinstance(inner, WordTagsModel):
            meta.update(type="word_tags", words=inner.words.to_dict())
        elif isinstance(inner, LinksModel):
            meta.update(type="links", span_labels=list(inner.span_labels), chain_labels=list(inner.chain_labels),
                        agreement=dict(inner.agreement or {}))
        else:
            meta.update(type="labels", gazetteer=inner.gazetteer.counts)
        return meta

    def load(self, folder: Path, meta: dict):
        """The model :meth:`save` wrote; :class:`ModelError` for a missing, truncated or mis-shaped file."""
        try:
            if meta["type"] == "transformer":
                return TransformerModel(meta["path"], meta["labels"])
            with np.load(folder / meta["file"], allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ModelError(f"{folder}: {type(e).__name__}: {e}") from e
        if meta["type"] == "tuned":
            tuned = self.tuned(TransformerModel(meta["path"], meta["labels"]))
            return tuned.with_head(ChoicesModel.from_arrays(meta, arrays, width=tuned.head.weight.shape[0]))
        hidden = self.hidden_size
        if meta["type"] == "links":
            hidden = pair_width(hidden, len(meta.get("span_labels", ())))
        if arrays.get("weight") is not None and arrays["weight"].shape[:1] != (hidden,):
            raise ModelError(f"{folder}: weights are for a {arrays['weight'].shape[0]}-wide encoder, this one is {hidden}")
        if meta["type"] == "choices":
            return HeadClassifier(ChoicesModel.from_arrays(meta, arrays), self.embed)
        if meta["type"] == "word_tags":
            return WordTagger(WordTagsModel.from_arrays(meta, arrays), self.encode)
        if meta["type"] == "links":
            return Linker(LinksModel.from_arrays(meta, arrays), self.encode)
        return HeadTagger(SpansModel.from_arrays(meta, arrays), self.encode)


class TransformerModel:
    """A fine-tuned model from a run (its ``model/`` folder), served for one control.

    Classification models give probabilities over ``labels`` (re-ordered to the control's order); token
    classification models give BIO word probabilities in the order :mod:`labelloop.spans` uses. A SetFit run
    (a sentence encoder and ``head.npz``) serves like a classification run: its features are the encoder's
    sentence vectors, its output layer the logistic head.
    Texts longer than the model's window are truncated to it.
    """

    promoted = True  # served as promoted; the backend's quick retraining leaves it in place

    def __init__(self, path: str | Path, labels: Sequence[str]) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

        self.path = str(path)
        info = json.loads((Path(path) / "labelloop.json").read_text())
        self.task = info["task"]
        self.labels = tuple(labels)
        self.setfit = info.get("method") == "setfit"  # a sentence encoder and head.npz, not a transformers head
        if self.setfit:
            from sentence_transformers import SentenceTransformer

            self.body = SentenceTransformer(self.path)
            with np.load(Path(path) / "head.npz", allow_pickle=False) as head:
                self._head = (head["weight"].astype(np.float32), head["bias"].astype(np.float32))
            self.max_length = int(self.body.max_seq_length or 512)
        else:
            cls = AutoModelForTokenClassification if self.task == "ner" else AutoModelForSequenceClassification
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = cls.from_pretrained(path).eval()
            self.max_length = min(512, int(getattr(self.model.config, "max_position_embeddings", 512)))
        trained = info["labels"]
        if self.task == "ner":
            want = ["O"] + [f"{p}-{label}" for label in self.labels for p in ("B", "I")]
        else:
            want = list(self.labels)
        if set(want) != set(trained):
            raise ModelError(f"model at {path} predicts {trained}, the control needs {want}")
        self._order = [trained.index(x) for x in want]
        self._torch = torch
        self.trained_on = 0

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n_texts, n_labels) probabilities; independent per label for multi-label models."""
        if self.setfit:
            weight, bias = self.classifier()
            return softmax(self.features(texts).astype(np.float64) @ weight + bias)
        out = []
        for output in self._forward(texts):
            logits = output.logits.float().numpy()[:, self._order]
            out.append(sigmoid(logits) if self.task == "multi-label" else softmax(logits))
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)))

    def mc_proba(self, texts: list[str], *, samples: int = 10, batch: int = 32) -> np.ndarray:
        """Class probabilities under ``samples`` Monte Carlo dropout masks, (samples, n_texts, n_labels), for
        :func:`labelloop.uncertainty.bald`."""
        from labelloop.mc_dropout import mc_dropout_probs

        if self.setfit:
            raise ModelError(f"model at {self.path} is a SetFit run: BALD needs a fine-tuned classifier's dropout; "
                             "use the margin strategy")
        parts = []
        for i in range(0, len(texts), batch):
            enc = self.tokenizer(texts[i : i + batch], truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt")
            parts.append(mc_dropout_probs(self.model, dict(enc), samples=samples,
                                          multi_label=self.task == "multi-label")[:, :, self._order])
        return np.concatenate(parts, axis=1) if parts else np.zeros((samples, 0, len(self.labels)))

    def _forward(self, texts: list[str], batch: int = 32):
        """The model's outputs, ``batch`` texts at a time (truncated to its window)."""
        with self._torch.inference_mode():
            for i in range(0, len(texts), batch):
                enc = self.tokenizer(texts[i : i + batch], truncation=True, max_length=self.max_length,
                                     padding=True, return_tensors="pt")
                yield self.model(**enc)

    def _output_layer(self):
        """The classification layer: the last linear layer with one output per label."""
        layers = [m for m in self.model.modules() if isinstance(m, self._torch.nn.Linear)
                  and m.out_features == len(self._order)]
        if self.task == "ner" or not layers:
            raise ModelError(f"model at {self.path} has no sentence-level output layer to put a head on")
        return layers[-1]

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The output layer as ``(weight (width, n_labels), bias (n_labels,))``, labels in the control's order."""
        if self.setfit:
            weight, bias = self._head
            return weight[:, self._order].copy(), bias[self._order].copy()
        layer = self._output_layer()
        weight = layer.weight.detach().float().numpy().T[:, self._order]
        bias = (layer.bias.detach().float().numpy() if layer.bias is not None else np.zeros(layer.out_features))
        return weight.astype(np.float32).copy(), bias[self._order].astype(np.float32).copy()

    def features(self, texts: list[str]) -> np.ndarray:
        """What the output layer reads for each text, (n_texts, width): the fine-tuned sentence features."""
        if self.setfit:
            if not texts:
                return np.zeros((0, self._head[0].shape[0]), np.float32)
            return np.asarray(self.body.encode(list(texts), batch_size=32, convert_to_numpy=True,
                                               show_progress_bar=False), dtype=np.float32)
        layer = self._output_layer()
        seen: list[np.ndarray] = []

        def grab(_module, inputs):
            x = inputs[0]
            if x.ndim != 2:
                raise ModelError(f"model at {self.path} classifies per token, not per sentence")
            seen.append(x.detach().float().numpy())

        handle = layer.register_forward_pre_hook(grab)
        try:
            for _ in self._forward(texts):
                pass
        finally:
            handle.remove()
        return np.concatenate(seen).astype(np.float32) if seen else np.zeros((0, layer.in_features), np.float32)

    def fit(self, texts: list[str], targets) -> TransformerModel:
        raise ModelError("a fine-tuned model is trained by `labelloop train` (or the dashboard's Train page); "
                         "the backend promotes runs, it does not retrain them")

    def predict_spans(self, texts: list[str]) -> list[tuple[list[Span], np.ndarray]]:
        """Per text: its spans and its words' BIO tag probabilities."""
        out = []
        for text in texts:
            ranges, probs = self.text_word_probs(text)
            out.append((tags_to_spans(ranges, probs, self.labels), probs))
        return out

    def text_word_probs(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Word character ranges and BIO tag probabilities for one text."""
        enc = self.tokenizer(text, truncation=True, max_length=self.max_length, return_offsets_mapping=True,
                             return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].numpy()
        word_ids = np.array([w if w is not None else -1 for w in enc.word_ids(0)])
        with self._torch.inference_mode():
            logits = self.model(**enc).logits[0].float().numpy()[:, self._order]
        ranges, first = word_ranges(offsets, word_ids)
        return ranges, softmax(logits[first]) if len(first) else np.zeros((0, len(self._order)))


ControlModel = HeadClassifier | HeadTagger | TransformerModel | TunedHead
