"""Monte Carlo dropout samples from a fine-tuned transformer classifier, for BALD.

Use :func:`mc_dropout_probs` on a ``*ForSequenceClassification`` model and a tokenized batch, then
:func:`labelloop.al.uncertainty.bald` on the result. Only dropout layers are switched to training mode;
normalisation layers keep their inference behaviour.
"""

from __future__ import annotations

import numpy as np


def mc_dropout_probs(model, batch: dict, *, samples: int = 10, multi_label: bool = False) -> np.ndarray:
    """Class probabilities under ``samples`` dropout masks, shape (samples, n_texts, n_classes)."""
    import torch

    if samples < 2:
        raise ValueError("BALD needs at least 2 Monte Carlo samples")
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    if not dropouts or all(m.p == 0 for m in dropouts):
        raise ValueError("the model has no active dropout layer, so Monte Carlo samples would all be equal")
    was_training = model.training
    model.eval()
    for m in dropouts:
        m.train()
    try:
        with torch.no_grad():
            out = []
            for _ in range(samples):
                logits = model(**batch).logits.float()
                out.append((torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)).numpy())
    finally:
        model.train(was_training)
    return np.stack(out)
