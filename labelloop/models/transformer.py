"""A fine-tuned run served as a model (:class:`TransformerModel`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from labelloop.arrays import sigmoid, softmax
from labelloop.errors import ModelError
from labelloop.finetune.manifest import ModelManifest
from labelloop.spans import Span, tags_to_spans, word_ranges


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
        manifest = ModelManifest.read(path)
        self.task = manifest.task
        self.labels = tuple(labels)
        self.setfit = manifest.setfit  # a sentence encoder and head.npz, not a transformers head
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
        trained = list(manifest.labels)
        if self.task == "ner":
            want = ["O"] + [f"{p}-{label}" for label in self.labels for p in ("B", "I")]
        else:
            want = list(self.labels)
        if set(want) != set(trained):
            raise ModelError(f"model at {path} predicts {trained}, the control needs {want}")
        self._order = [trained.index(x) for x in want]
        self._torch = torch
        self.trained_on = 0

    def predict_proba(self, texts: list[str]) -> NDArray[Any]:
        """(n_texts, n_labels) probabilities; independent per label for multi-label models."""
        if self.setfit:
            weight, bias = self.classifier()
            return softmax(self.features(texts).astype(np.float64) @ weight + bias)
        out = []
        for output in self._forward(texts):
            logits = output.logits.float().numpy()[:, self._order]
            out.append(sigmoid(logits) if self.task == "multi-label" else softmax(logits))
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)))

    def mc_proba(self, texts: list[str], *, samples: int = 10, batch: int = 32) -> NDArray[Any]:
        """Class probabilities under ``samples`` Monte Carlo dropout masks, (samples, n_texts, n_labels), for
        :func:`labelloop.al.uncertainty.bald`."""
        from labelloop.al.mc_dropout import mc_dropout_probs

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

    def _forward(self, texts: list[str], batch: int = 32) -> Iterator[Any]:
        """The model's outputs, ``batch`` texts at a time (truncated to its window)."""
        with self._torch.inference_mode():
            for i in range(0, len(texts), batch):
                enc = self.tokenizer(texts[i : i + batch], truncation=True, max_length=self.max_length,
                                     padding=True, return_tensors="pt")
                yield self.model(**enc)

    def _output_layer(self) -> Any:
        """The classification layer: the last linear layer with one output per label."""
        layers = [m for m in self.model.modules() if isinstance(m, self._torch.nn.Linear)
                  and m.out_features == len(self._order)]
        if self.task == "ner" or not layers:
            raise ModelError(f"model at {self.path} has no sentence-level output layer to put a head on")
        return layers[-1]

    def classifier(self) -> tuple[NDArray[Any], NDArray[Any]]:
        """The output layer as ``(weight (width, n_labels), bias (n_labels,))``, labels in the control's order."""
        if self.setfit:
            weight, bias = self._head
            return weight[:, self._order].copy(), bias[self._order].copy()
        layer = self._output_layer()
        weight = layer.weight.detach().float().numpy().T[:, self._order]
        bias = (layer.bias.detach().float().numpy() if layer.bias is not None else np.zeros(layer.out_features))
        return weight.astype(np.float32).copy(), bias[self._order].astype(np.float32).copy()

    saved_as: ClassVar[str] = "transformer"

    def saved(self, folder: Path, stem: str) -> dict[str, Any]:
        """It stays in its run folder: the metadata points at it."""
        return {"type": self.saved_as, "path": self.path, "labels": list(self.labels), "trained_on": 0}

    @classmethod
    def restore(cls, features: Any, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> TransformerModel:
        return cls(meta["path"], meta["labels"])

    def features(self, texts: list[str]) -> NDArray[Any]:
        """What the output layer reads for each text, (n_texts, width): the fine-tuned sentence features."""
        if self.setfit:
            if not texts:
                return np.zeros((0, self._head[0].shape[0]), np.float32)
            return np.asarray(self.body.encode(list(texts), batch_size=32, convert_to_numpy=True,
                                               show_progress_bar=False), dtype=np.float32)
        layer = self._output_layer()
        seen: list[NDArray[Any]] = []

        def grab(_module: Any, inputs: tuple[Any, ...]) -> None:
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

    def fit(self, texts: list[str], targets: NDArray[Any]) -> TransformerModel:
        raise ModelError("a fine-tuned model is trained by `labelloop train` (or the dashboard's Train page); "
                         "the backend promotes runs, it does not retrain them")

    def predict_spans(self, texts: list[str]) -> list[tuple[list[Span], NDArray[Any]]]:
        """Per text: its spans and its words' BIO tag probabilities."""
        out = []
        for text in texts:
            ranges, probs = self.text_word_probs(text)
            out.append((tags_to_spans(ranges, probs, self.labels), probs))
        return out

    def text_word_probs(self, text: str) -> tuple[NDArray[Any], NDArray[Any]]:
        """Word character ranges and BIO tag probabilities for one text."""
        enc = self.tokenizer(text, truncation=True, max_length=self.max_length, return_offsets_mapping=True,
                             return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].numpy()
        word_ids = np.array([w if w is not None else -1 for w in enc.word_ids(0)])
        with self._torch.inference_mode():
            logits = self.model(**enc).logits[0].float().numpy()[:, self._order]
        ranges, first = word_ranges(offsets, word_ids)
        return ranges, softmax(logits[first]) if len(first) else np.zeros((0, len(self._order)))
