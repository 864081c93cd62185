"""Synthetic examples: the LLM writes new texts for each label, and only those a model agrees with are kept.

For each label with an approved example the LLM sees the project's guideline and a few approved examples of that label, and writes
one new text at a time (sampled, a different seed each attempt). A text is kept only when

- it is not empty and not an echo of the prompt,
- it neither equals nor nearly duplicates a test item (no leakage), an approved text, or another kept text,
- the judge (the backend's head trained on the approved labels, or any ``texts -> probabilities`` function)
  gives its label at least ``min_agreement``.

Every kept text carries its provenance (the model, the label asked for, the seed, the examples shown, the
judge's probability). They go to JSONL, or into Label Studio as tasks to review like augmented ones.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from labelloop.config import ConfigMixin
from labelloop.errors import ConfigError
from labelloop.quality.dedup import NearDuplicateIndex, content_key

Judge = Callable[[list[str]], np.ndarray]  # texts -> (n, n_labels) probabilities


@dataclass
class SynthesisConfig(ConfigMixin):
    """Settings of ``labelloop synthesize``; every field is a flag."""

    config_name = "synthesis"

    per_label: int = field(default=10, metadata={"help": "texts to keep per label"})
    examples: int = field(default=3, metadata={"help": "approved examples of the label shown to the LLM"})
    attempts: int = field(default=3, metadata={"help": "generations tried per text kept, at most"})
    min_agreement: float = field(default=0.6, metadata={
        "help": "the judge's probability for the intended label a text needs to be kept"})
    near_duplicate: float = field(default=0.7, metadata={
        "help": "shingle similarity to a test item, an approved text or a kept one that drops a text"})
    temperature: float = field(default=0.9, metadata={"help": "sampling temperature of the LLM"})
    max_tokens: int = field(default=96, metadata={"help": "longest text the LLM may write, in tokens"})
    seed: int = field(default=0, metadata={"help": "random seed (examples shown, generation)"})

    def __post_init__(self) -> None:
        if min(self.per_label, self.examples, self.attempts, self.max_tokens) < 1:
            raise ConfigError("per_label, examples, attempts and max_tokens must be at least 1")
        if not 0.0 <= self.min_agreement <= 1.0 or not 0.0 < self.near_duplicate <= 1.0:
            raise ConfigError("min_agreement must be in [0, 1] and near_duplicate in (0, 1]")


@dataclass
class SynthesisReport:
    kept: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    generations: int = 0
    skipped: list[str] = field(default_factory=list)  # labels without an approved example

    def summary(self) -> str:
        kept = ", ".join(f"{label}: {n}" for label, n in sorted(self.kept.items())) or "none"
        dropped = ", ".join(f"{why}: {n}" for why, n in sorted(self.dropped.items())) or "none"
        skipped = (f"; skipped {', '.join(self.skipped)} (no approved example yet: annotate one)"
                   if self.skipped else "")
        return f"{self.generations} texts generated; kept {kept}; dropped {dropped}{skipped}"


def messages_for(label: str, labels: Sequence[str], examples: Sequence[str], guideline: str = "") -> list[dict]:
    """The chat messages that ask for one new text of ``label``."""
    shown = "\n".join(f"- {e}" for e in examples)
    others = ", ".join(x for x in labels if x != label)
    system = ("You write realistic example texts for a text labeling project. Answer with the new text only: no "
              "quotes, no label, no explanation.")
    user = (f"{('Labeling guideline: ' + guideline.strip() + chr(10)) if guideline.strip() else ''}"
            f"The labels are: {', '.join(labels)}.\n"
            f"Texts labeled {label}:\n{shown}\n"
            f"Write one new text, different from these, that a careful annotator would label {label}"
            f"{' and not ' + others if others else ''}.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def clean(text: str) -> str:
    """The generated text: its first paragraph, without list marks, quotes or a leading 'Text:'."""
    text = text.strip().split("\n\n")[0].strip()
    text = re.sub(r"^(?:[-*\d.)\s]+|(?:new\s+)?text\s*:\s*)", "", text, flags=re.IGNORECASE).strip()
    text = text.strip("\"'“”‘’` ").strip()
    return " ".join(text.split())


def synthesize(engine, labels: Sequence[str], approved: Sequence[tuple[str, str]], *, judge: Judge,
               test_texts: Sequence[str] = (), guideline: str = "", config: SynthesisConfig | None = None,
               progress: Callable[[int], None] | None = None) -> tuple[list[dict], SynthesisReport]:
    """Up to ``per_label`` kept texts per label (see the module docstring) and what was dropped and why.

    ``engine`` answers ``generate(messages, max_tokens=, temperature=, seed=)`` with an object that has
    ``.text`` (:class:`labelloop.llm.LocalLLM` or :class:`~labelloop.llm.OpenAIEndpoint`); ``approved`` is
    ``(text, label)`` pairs of the project's training labels.
    """
    config = config or SynthesisConfig()
    labels = list(labels)
    by_label: dict[str, list[str]] = {label: [] for label in labels}
    for text, label in approved:
        if label in by_label:
            by_label[label].append(text)
    report = SynthesisReport(skipped=[label for label, texts in by_label.items() if not texts])
    if len(report.skipped) == len(labels):
        raise ConfigError("no approved example of any label: annotate a few tasks first (the LLM writes from "
                          "examples)")
    rng = random.Random(config.seed)
    tests = NearDuplicateIndex(config.near_duplicate)
    for i, text in enumerate(test_texts):
        tests.add(("test", i), text)
    known = NearDuplicateIndex(config.near_duplicate)
    for i, (text, _) in enumerate(approved):
        known.add(("approved", i), text)
    seen = {content_key(t) for t in test_texts} | {content_key(t) for t, _ in approved}
    kept: list[dict] = []
    model_name = getattr(engine, "name", type(engine).__name__)
    for label in [x for x in labels if by_label[x]]:
        got = 0
        for attempt in range(config.per_label * config.attempts):
            if got == config.per_label:
                break
            shown = rng.sample(by_label[label], min(config.examples, len(by_label[label])))
            seed = rng.randrange(2**31)
            answer = engine.generate(messages_for(label, labels, shown, guideline), max_tokens=config.max_tokens,
                                     temperature=config.temperature, seed=seed)
            report.generations += 1
            if progress:
                progress(1)
            text = clean(answer.text)
            key = content_key(text)
            if len(text.split()) < 2 or text.lower().startswith(("texts labeled", "the labels are")):
                report.dropped["empty or an echo of the prompt"] += 1
            elif key in seen:
                report.dropped["duplicate"] += 1
            elif tests.find(text):
                report.dropped["near a test item"] += 1
            elif known.find(text):
                report.dropped["near duplicate"] += 1
            else:
                agreement = float(judge([text])[0][labels.index(label)])
                if agreement < config.min_agreement:
                    report.dropped["judge disagrees with the label"] += 1
                    continue
                seen.add(key)
                known.add(("synthetic", len(kept)), text)
                kept.append({"text": text, "label": label, "provenance": {
                    "source": "synthetic", "method": "llm-synthetic", "model": model_name, "label": label,
                    "seed": seed, "examples": shown, "judge_probability": round(agreement, 4), "attempt": attempt}})
                report.kept[label] += 1
                got += 1
    return kept, report
