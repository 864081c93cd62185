"""What a saved model is: ``labelloop.json`` beside its weights, written by a run and read by whoever serves,
evaluates or filters with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from labelloop.errors import ConfigError

MANIFEST = "labelloop.json"


@dataclass(frozen=True)
class ModelManifest:
    """A saved model's task (``classification``, ``ner``, ...), its labels in output order, and how it was trained:
    ``setfit`` is a sentence encoder with ``head.npz``; ``full`` and ``lora`` (merged) are transformers models."""

    task: str
    labels: tuple[str, ...]
    method: str = "full"

    @property
    def setfit(self) -> bool:
        return self.method == "setfit"

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelManifest:
        path = Path(model_dir) / MANIFEST
        try:
            info = json.loads(path.read_text())
            return cls(task=str(info["task"]), labels=tuple(str(x) for x in info["labels"]),
                       method=str(info.get("method") or "full"))
        except FileNotFoundError:
            raise ConfigError(f"{model_dir} has no {MANIFEST}: it is not a model saved by a LabelLoop run "
                              "(train one with `labelloop finetune`)") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path} is damaged ({e}); train the run again") from None

    def write(self, model_dir: str | Path) -> None:
        (Path(model_dir) / MANIFEST).write_text(
            json.dumps({"task": self.task, "labels": list(self.labels), "method": self.method}))
