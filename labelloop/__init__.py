"""LabelLoop: pre-annotation, active learning and fine-tuning around a Label Studio instance.

The public API, for scripts and notebooks::

    from labelloop import LabelLoopSettings, ModelService, parse_label_config

    service = ModelService(LabelLoopSettings(home="state"))
    service.setup(project=3, label_config=config)
    predictions = service.predict(tasks, project=3)   # Label Studio predictions, one per task

The core package holds everything that is not a web or UI framework: the labeling vocabulary
(:mod:`labelloop.labeling`), the models, uncertainty scores, the serving core (:mod:`labelloop.serving`)
and the Label Studio client helpers. ``labelloop.backend`` adapts it to the ML backend protocol that
Label Studio speaks. Names are imported on first use, so ``import labelloop`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "LabelLoopSettings": "labelloop.settings",
    "ModelService": "labelloop.serving.service",
    "Event": "labelloop.labeling.tasks",
    "Annotation": "labelloop.labeling.tasks",
    "Store": "labelloop.serving.store",
    "VersionRegistry": "labelloop.serving.versions",
    "UNTRAINED_VERSION": "labelloop.serving.versions",
    "parse_label_config": "labelloop.labeling.schema",
    "ControlSpec": "labelloop.labeling.schema",
    "TaskSchema": "labelloop.labeling.schema",
    "KINDS": "labelloop.labeling.kinds",
    "ControlKind": "labelloop.labeling.kinds",
    "confidence": "labelloop.al.uncertainty",
    "STRATEGIES": "labelloop.al.uncertainty",
    "Encoder": "labelloop.encoder",
    "load_encoder": "labelloop.encoder",
    "HeadClassifier": "labelloop.models",
    "HeadTagger": "labelloop.models",
    "TransformerModel": "labelloop.models",
    "Span": "labelloop.spans",
    "Gazetteer": "labelloop.spans",
    "LabelLoopError": "labelloop.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'labelloop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
