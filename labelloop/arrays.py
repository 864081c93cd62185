"""Small array helpers the models share: softmax and sigmoid over logits, and the check every saved model's
arrays pass before they serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labelloop.errors import ModelError


def softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis of logits ``z`` (any shape), computed without overflow."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def check_shapes(arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int | None, ...]]) -> None:
    """Raise :class:`ModelError` unless every array is there, finite, with the shape asked (None: any size)."""
    for name, shape in shapes.items():
        a = arrays.get(name)
        if a is None or a.ndim != len(shape) or any(w is not None and w != n for w, n in zip(shape, a.shape, strict=True)):
            got = "missing" if a is None else f"shape {a.shape}"
            raise ModelError(f"model file: {name!r} is {got}, expected {shape}")
        if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all():
            raise ModelError(f"model file: {name!r} is not finite floating point")


def save_arrays(folder: Path, stem: str, model: Any, **meta: Any) -> dict:
    """Write a head's ``arrays()`` to ``<folder>/<stem>.npz`` (no pickles) and return its JSON metadata: its labels,
    how many annotations it learned from, the file, and ``meta``."""
    np.savez(folder / f"{stem}.npz", **model.arrays())
    return {"labels": list(model.labels), "trained_on": model.trained_on, "file": f"{stem}.npz", **meta}
