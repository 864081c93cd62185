"""Confidence scores for active learning, as pure functions over class probabilities.

Every function takes ``probs`` of shape (n_tasks, n_classes), rows summing to 1, and returns a
confidence of shape (n_tasks,) in [0, 1]: **higher means more confident**, so the task with the
LOWEST score is the most informative one. That is the direction Label Studio's "Uncertainty
sampling" and an ascending sort on the prediction score expect. A one-hot row scores 1 and a
uniform row scores 0 (``random`` aside).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ConfidenceFn = Callable[[np.ndarray], np.ndarray]


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """Probability of the top class, rescaled so that uniform is 0 and one-hot is 1."""
    k = probs.shape[1]
    if k < 2:
        return np.ones(probs.shape[0])
    return np.clip((k * probs.max(axis=1) - 1.0) / (k - 1.0), 0.0, 1.0)


def margin(probs: np.ndarray) -> np.ndarray:
    """Gap between the two most probable classes: small gaps are the uncertain tasks."""
    if probs.shape[1] < 2:
        return np.ones(probs.shape[0])
    top2 = np.partition(probs, -2, axis=1)[:, -2:]
    return np.clip(top2[:, 1] - top2[:, 0], 0.0, 1.0)


def entropy(probs: np.ndarray) -> np.ndarray:
    """One minus the Shannon entropy normalised by its maximum, ``log(n_classes)``."""
    k = probs.shape[1]
    if k < 2:
        return np.ones(probs.shape[0])
    p = np.clip(probs, 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=1)
    return np.clip(1.0 - h / np.log(k), 0.0, 1.0)


def bald(mc_probs: np.ndarray) -> np.ndarray:
    """Confidence from BALD over Monte Carlo dropout samples.

    ``mc_probs`` has shape (n_samples, n_tasks, n_classes). The mutual information between the label
    and the model weights (entropy of the mean minus mean entropy) is high where the sampled models
    disagree; the confidence is ``1 - MI / log(n_classes)``, so disagreement ranks first.
    """
    mc = np.clip(np.asarray(mc_probs, dtype=np.float64), 1e-12, 1.0)
    k = mc.shape[2]
    if k < 2:
        return np.ones(mc.shape[1])
    mean = mc.mean(axis=0)
    entropy_of_mean = -(mean * np.log(mean)).sum(axis=1)
    mean_entropy = -(mc * np.log(mc)).sum(axis=2).mean(axis=0)
    return np.clip(1.0 - (entropy_of_mean - mean_entropy) / np.log(k), 0.0, 1.0)


def aggregate_words(word_confidences: list[np.ndarray]) -> np.ndarray:
    """Task confidence for span labeling: the mean confidence of each task's words, shape (n_tasks,).

    A mean does not grow more uncertain with length (a text repeated twice scores the same), unlike a
    minimum or a sum. A task with no words scores 1.
    """
    return np.array([float(np.mean(c)) if len(c) else 1.0 for c in word_confidences])


def random_confidence(probs: np.ndarray, *, seed: int | None = None) -> np.ndarray:
    """Uniform random scores: the baseline every strategy is compared against."""
    return np.random.default_rng(seed).random(probs.shape[0])


STRATEGIES: dict[str, ConfidenceFn] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
    "random": random_confidence,
}


def confidence(probs: np.ndarray, strategy: str = "margin", *, multi_label: bool = False) -> np.ndarray:
    """Confidence of each task under ``strategy``; higher ranks last in the annotation queue.

    Parameters
    ----------
    probs : ndarray of shape (n_tasks, n_classes)
        Class probabilities. With ``multi_label=True`` each column is an independent
        probability that the label applies.
    strategy : str
        A key of :data:`STRATEGIES`.
    multi_label : bool
        Score each label as its own yes/no question and average over labels.

    Returns
    -------
    ndarray of shape (n_tasks,)
        Confidence in [0, 1].
    """
    fn = STRATEGIES[strategy]
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (n_tasks, n_classes), got shape {probs.shape}")
    if probs.shape[0] == 0:
        return np.zeros(0)
    if not multi_label:
        return fn(probs)
    n, k = probs.shape
    binary = np.stack([probs.reshape(-1), 1.0 - probs.reshape(-1)], axis=1)
    return fn(binary).reshape(n, k).mean(axis=1)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, *, bins: int = 10) -> float:
    """Expected calibration error of top-label confidence: sum over equal-width confidence bins of
    (share of rows in the bin) * |accuracy - mean confidence|. ``probs`` (n, k), ``y`` (n,) label indices.
    0 is perfectly calibrated; lower is better."""
    probs, y = np.asarray(probs, dtype=float), np.asarray(y)
    if len(probs) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(correct[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))
