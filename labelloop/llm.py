"""Classification labels from a local causal language model, as probabilities over the label set.

For each text, the prompt (the project's labels, its guideline and a few approved examples, through an
editable :class:`PromptTemplate`) is scored with every label as the continuation; a softmax over those
log-probabilities gives one probability per label, so the confidence feeds the same uncertainty scores as
the backend's own models. Results are cached on disk keyed on model, prompt and labels: a re-run costs
nothing. Tokens read are counted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labelloop.errors import ConfigError


@dataclass
class PromptTemplate:
    """How a prompt is put together; every part may be edited per project.

    ``instruction`` sees ``{labels}`` and ``{guideline}``; ``example`` sees ``{text}`` and ``{label}``;
    ``query`` sees ``{text}``. The label follows ``query`` after one space.
    """

    instruction: str = field(default="{guideline}Answer with exactly one of these labels: {labels}.\n\n",
                             metadata={"help": "opening; {labels} and {guideline} are filled in"})
    example: str = field(default="Text: {text}\nLabel: {label}\n\n", metadata={"help": "one few-shot example"})
    query: str = field(default="Text: {text}\nLabel:", metadata={"help": "the text to label"})

    def render(self, text: str, labels: Sequence[str], *, guideline: str = "",
               examples: Sequence[tuple[str, str]] = ()) -> str:
        guide = guideline.strip() + "\n\n" if guideline.strip() else ""
        shots = "".join(self.example.format(text=t, label=label) for t, label in examples)
        return self.instruction.format(labels=", ".join(labels), guideline=guide) + shots + self.query.format(text=text)


class LLMCache:
    """Answers keyed on (model, prompt, labels), in SQLite; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, prompt: str, labels: Sequence[str]) -> str:
        return hashlib.sha256(json.dumps([model, prompt, list(labels)]).encode()).hexdigest()

    def get(self, key: str):
        with self._lock:
            row = self._db.execute("SELECT value FROM answers WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(value)))


class LocalLLM:
    """A transformers causal LM that scores label continuations (SmolLM2-135M-Instruct by default)."""

    def __init__(self, path: str, *, name: str | None = None, max_prompt_tokens: int = 1024) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name or str(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
        self.max_prompt_tokens = max_prompt_tokens
        self.tokens_read = 0

    def _prompt_ids(self, prompt: str) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                     tokenize=True)
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids  # newer tokenizers return an encoding
        else:
            ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        return list(ids)[-self.max_prompt_tokens:]  # keep the end: the text to label is there

    def label_logprobs(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        """Log-probability (n_labels,) of each label as the continuation of ``prompt`` (summed over its tokens)."""
        import torch

        prompt_ids = self._prompt_ids(prompt)
        label_ids = [self.tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label in labels]
        if any(not ids for ids in label_ids):
            raise ConfigError("a label is empty after tokenization; give every label a name")
        seqs = [prompt_ids + ids for ids in label_ids]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        with torch.inference_mode():
            logp = torch.log_softmax(self.model(input_ids=input_ids, attention_mask=mask).logits.float(), dim=-1)
        self.tokens_read += int(mask.sum())
        out = np.empty(len(labels))
        for i, ids in enumerate(label_ids):
            positions = range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(ids))
            out[i] = float(sum(logp[i, p, t] for p, t in zip(positions, ids)))
        return out


def classify(llm: LocalLLM, texts: Sequence[str], labels: Sequence[str], *, template: PromptTemplate | None = None,
             guideline: str = "", examples: Sequence[Sequence[tuple[str, str]]] | None = None,
             cache: LLMCache | None = None) -> np.ndarray:
    """Probabilities (n_texts, n_labels): a softmax over each label's log-probability after the prompt.

    ``examples[i]`` are the few-shot ``(text, label)`` pairs for ``texts[i]`` (e.g. its nearest approved tasks).
    """
    if len(labels) < 2:
        raise ConfigError("LLM labels need at least two labels to choose from")
    template = template or PromptTemplate()
    out = np.empty((len(texts), len(labels)))
    for i, text in enumerate(texts):
        prompt = template.render(text, labels, guideline=guideline, examples=examples[i] if examples else ())
        key = LLMCache.key(llm.name, prompt, labels)
        scores = cache.get(key) if cache else None
        if scores is None:
            scores = llm.label_logprobs(prompt, labels).tolist()
            if cache:
                cache.put(key, scores)
        p = np.exp(np.asarray(scores) - max(scores))
        out[i] = p / p.sum()
    return out
