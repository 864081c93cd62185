"""Training data from `labelloop export` JSONL, tokenized for each task.

Classification rows are ``{"text", "label"}`` (or ``"labels"`` for multi-label), NER rows
``{"text", "spans": [{"start", "end", "label"}]}`` (tags on each word's first token, BIO), SFT rows
``{"prompt", "response"}`` (the model's chat template; the loss covers the response only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labelloop.data.jsonl import iter_jsonl
from labelloop.errors import ConfigError
from labelloop.spans import Span, spans_to_tags, word_ranges

IGNORE = -100


def read_records(path: str | Path, task: str) -> list[dict]:
    if not path:
        raise ConfigError("no data file given: pass the train.jsonl (and test.jsonl) that `labelloop export` wrote")
    need = {"classification": ("text", "label"), "multi-label": ("text", "labels"), "ner": ("text", "spans"),
            "sft": ("prompt", "response"), "dpo": ("prompt", "chosen", "rejected")}[task]
    rows: list[dict] = []
    for n, row in iter_jsonl(path):
        missing = [k for k in need if not isinstance(row, dict) or k not in row]
        if missing or not isinstance(row, dict):
            raise ConfigError(f"{path}:{n}: a {task} row needs {need}, this one lacks {missing}")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path} has no rows")
    return rows


def check_data(config) -> None:
    """Refuse a run before it starts when its data can't train it: a missing or empty train file (the
    Train page's export of a project with no approved labels), a missing or empty test file, bad rows."""
    for what, path in (("train_file", config.train_file), ("test_file", config.test_file)):
        if not path and what == "test_file":
            continue
        if path and not Path(path).is_file():
            raise ConfigError(f"{what} {path} does not exist: export the project's approved labels first "
                              "(`labelloop export`, or the Train page's export), or give the path of a JSONL file")
        try:
            read_records(path, config.task)
        except ConfigError as e:
            if path and "has no rows" in str(e):
                raise ConfigError(f"{what} {path} has no records: annotate tasks in Label Studio and export "
                                  "again" + (", or leave test_file empty" if what == "test_file" else "")) from e
            raise


def label_names(task: str, records: list[dict]) -> list[str]:
    """Class names (classification), or BIO tags with ``O`` first (NER); empty for SFT."""
    if task == "classification":
        return sorted({str(r["label"]) for r in records})
    if task == "multi-label":
        return sorted({str(x) for r in records for x in r["labels"]})
    if task == "ner":
        entities = sorted({s["label"] for r in records for s in r["spans"]})
        return ["O"] + [f"{p}-{e}" for e in entities for p in ("B", "I")]
    return []


def entity_types(tags: list[str]) -> list[str]:
    return [t[2:] for t in tags[1::2]]


def encode(task: str, tokenizer, records: list[dict], labels: list[str], max_length: int) -> list[dict]:
    if task in ("classification", "multi-label"):
        enc = tokenizer([r["text"] for r in records], truncation=True, max_length=max_length)
        out = []
        for i, r in enumerate(records):
            item = {k: enc[k][i] for k in enc.keys()}
            if task == "classification":
                item["labels"] = labels.index(str(r["label"]))
            else:
                item["labels"] = [1.0 if name in r["labels"] else 0.0 for name in labels]
            out.append(item)
        return out
    if task == "ner":
        return [encode_ner_row(tokenizer, r["text"], r["spans"], labels, max_length) for r in records]
    return [encode_sft_row(tokenizer, r["prompt"], r["response"], max_length) for r in records]


def encode_ner_row(tokenizer, text: str, spans: list[dict], tags: list[str], max_length: int) -> dict:
    enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    word_ids = np.array([w if w is not None else -1 for w in enc.word_ids()])
    offsets = np.array(enc["offset_mapping"])
    ranges, first = word_ranges(offsets, word_ids)
    word_tags = spans_to_tags(ranges, [Span(s["start"], s["end"], s["label"]) for s in spans], entity_types(tags))
    token_labels = [IGNORE] * len(word_ids)
    for tok, tag in zip(first, word_tags, strict=True):
        token_labels[tok] = int(tag)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": token_labels}


def chat_prompt_ids(tokenizer, prompt: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    return tokenizer(f"### Prompt:\n{prompt}\n### Response:\n", add_special_tokens=False)["input_ids"]


def encode_sft_row(tokenizer, prompt: str, response: str, max_length: int) -> dict:
    prompt_ids = chat_prompt_ids(tokenizer, prompt)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        response_ids = response_ids + [tokenizer.eos_token_id]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
