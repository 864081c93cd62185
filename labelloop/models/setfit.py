"""SetFit as a rung: contrastive fine-tuning of the encoder plus a head, behind the same text protocol."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelloop.errors import ModelError


class SetFitClassifier:
    """SetFit: the sentence encoder fine-tuned contrastively on pairs of labeled texts (same label or not),
    then a logistic-regression head on its vectors (the ``setfit`` package).

    It trains in minutes on CPU, not seconds, so it is a rung the simulation and benchmarks compare, not
    the per-annotation head. ``base`` is a sentence-transformers model name or path (the packaged MiniLM by
    default); ``iterations`` is the number of pairs drawn per labeled text.
    """

    def __init__(self, base: str, labels: Sequence[str], *, iterations: int = 10, seed: int = 0,
                 model: Any = None) -> None:
        self.base = base
        self.labels = tuple(labels)
        self.iterations = iterations
        self.seed = seed
        self.model = model
        self.trained_on = 0

    def fit(self, texts: list[str], targets: NDArray[Any]) -> SetFitClassifier:
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
            # The trainer prints its loss log to stdout; a command's stdout is its output (`--json`), so the log
            # goes to stderr with the other progress.
            with contextlib.redirect_stdout(sys.stderr):
                Trainer(model=model, args=args, train_dataset=data).train()
        trained = SetFitClassifier(self.base, self.labels, iterations=self.iterations, seed=self.seed, model=model)
        trained.trained_on = len(texts)
        return trained

    def predict_proba(self, texts: list[str]) -> NDArray[Any]:
        """(n_texts, n_labels); labels the head never saw get probability 0."""
        if self.model is None:
            raise ModelError("this SetFit classifier is not trained yet: call fit(texts, targets) first")
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        if texts:
            probs = np.asarray(self.model.predict_proba(list(texts), as_numpy=True), dtype=np.float64)
            out[:, np.asarray(self.model.model_head.classes_, dtype=int)] = probs
        return out
