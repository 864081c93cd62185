"""Evaluation of runs on the frozen test split, always with three rows side by side.

``base`` is the starting point (zero-shot from label names for classification, the untrained head for
NER, the base model for SFT), ``promoted`` the model the backend serves for this task (when there is
one), ``run`` the run itself. Metrics: accuracy, macro-F1, per-class precision/recall/F1 and the
confusion matrix; entity-level F1 (seqeval) for NER; loss, perplexity and exact match for SFT.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from labelloop.finetune.data import IGNORE, chat_prompt_ids, encode, read_records
from labelloop.finetune.manifest import ModelManifest
from labelloop.finetune.registry import RunRegistry


def classification_metrics(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows: true)."""
    k = len(labels)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[t, p] += 1
    per_class, f1s = {}, []
    for i, name in enumerate(labels):
        tp, fp, fn = cm[i, i], cm[:, i].sum() - cm[i, i], cm[i, :].sum() - cm[i, i]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(cm[i, :].sum())}
        if cm[i, :].sum():
            f1s.append(f1)
    return {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
            "per_class": per_class, "confusion_matrix": cm.tolist(), "labels": labels, "n": int(cm.sum())}


def _batches(items, size):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _logits(model, tokenizer, items: list[dict], batch_size: int = 32) -> list[np.ndarray]:
    import torch
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    out = []
    model.eval()
    with torch.inference_mode():
        for batch in _batches(items, batch_size):
            inputs = collate([{k: v for k, v in it.items() if k != "labels"} for it in batch])
            logits = model(**inputs).logits.float().numpy()
            for i, it in enumerate(batch):
                out.append(logits[i, : len(it["input_ids"])] if logits.ndim == 3 else logits[i])
    return out


def evaluate_model(task: str, model, tokenizer, rows: list[dict], labels: list[str], max_length: int) -> dict:
    """Metrics of a loaded model on test rows."""
    if task == "dpo":
        return dpo_metrics(model, tokenizer, rows)
    items = encode(task, tokenizer, rows, labels, max_length)
    if task == "classification":
        preds = [int(l.argmax()) for l in _logits(model, tokenizer, items)]
        return classification_metrics([it["labels"] for it in items], preds, labels)
    if task == "multi-label":
        logits = np.stack(_logits(model, tokenizer, items))
        pred, true = logits > 0, np.array([it["labels"] for it in items]) > 0.5
        return {"exact_match": float((pred == true).all(axis=1).mean()),
                "micro_f1": float(2 * (pred & true).sum() / max(pred.sum() + true.sum(), 1)), "n": len(items)}
    if task == "ner":
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        true_seqs, pred_seqs = [], []
        for it, logits in zip(items, _logits(model, tokenizer, items), strict=True):
            keep = [i for i, t in enumerate(it["labels"]) if t != IGNORE]
            true_seqs.append([labels[it["labels"][i]] for i in keep])
            pred_seqs.append([labels[int(logits[i].argmax())] for i in keep])
        return {"entity_f1": float(f1_score(true_seqs, pred_seqs)),
                "entity_precision": float(precision_score(true_seqs, pred_seqs)),
                "entity_recall": float(recall_score(true_seqs, pred_seqs)),
                "per_type": {k: {m: float(v) for m, v in d.items()} for k, d in
                             classification_report(true_seqs, pred_seqs, output_dict=True, zero_division=0).items()},
                "predicted_entity_tokens": int(sum(t != "O" for s in pred_seqs for t in s)), "n": len(items)}
    return sft_metrics(model, tokenizer, rows, items)


def _response_logprob(model, tokenizer, prompt: str, response: str) -> tuple[float, int]:
    """Summed log-probability of ``response`` after the chat prompt, and its token count."""
    import torch

    prompt_ids = chat_prompt_ids(tokenizer, prompt)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    picked = logprobs[torch.arange(len(targets)), targets][len(prompt_ids) - 1:]
    return float(picked.sum()), len(response_ids)


def dpo_metrics(model, tokenizer, rows: list[dict]) -> dict:
    """Preference accuracy (the chosen answer more likely than the rejected one, per token) and the
    perplexity of the chosen answers."""
    model.eval()
    right, total, count = 0, 0.0, 0
    for row in rows:
        chosen, n_chosen = _response_logprob(model, tokenizer, row["prompt"], row["chosen"])
        rejected, n_rejected = _response_logprob(model, tokenizer, row["prompt"], row["rejected"])
        right += chosen / max(n_chosen, 1) > rejected / max(n_rejected, 1)
        total, count = total - chosen, count + n_chosen
    loss = total / max(count, 1)
    return {"preference_accuracy": right / max(len(rows), 1), "loss": loss, "perplexity": math.exp(min(loss, 50)),
            "n": len(rows)}


def sft_metrics(model, tokenizer, rows: list[dict], items: list[dict]) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq

    collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE)
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for batch in _batches(items, 16):
            inputs = collate(batch)
            n = int((inputs["labels"][:, 1:] != IGNORE).sum())
            total += float(model(**inputs).loss) * n
            count += n
        exact = 0
        for row in rows:
            prompt = torch.tensor([chat_prompt_ids(tokenizer, row["prompt"])])
            want = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=min(len(want) + 4, 64),
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
            exact += tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True).strip() == row["response"].strip()
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50)), "exact_match": exact / len(rows), "n": len(rows)}


def _zero_shot(rows: list[dict], labels: list[str], base: str) -> dict:
    from labelloop.encoder import Encoder
    from labelloop.models import ChoicesModel

    encoder = Encoder(base)
    head = ChoicesModel.zero_shot(encoder, labels)
    preds = head.predict_proba(encoder.embed([r["text"] for r in rows])).argmax(axis=1)
    return classification_metrics([labels.index(str(r["label"])) for r in rows], preds.tolist(), labels)


def _run_metrics(config, model_dir: Path, rows: list[dict], labels: list[str]) -> dict:
    """Metrics of a run's saved model: a SetFit run through its encoder and head, any other through
    transformers."""
    from labelloop.finetune.train import load_model

    if ModelManifest.read(model_dir).setfit:
        from labelloop.models import TransformerModel

        preds = TransformerModel(model_dir, labels).predict_proba([str(r["text"]) for r in rows]).argmax(axis=1)
        return classification_metrics([labels.index(str(r["label"])) for r in rows], preds.tolist(), labels)
    tok, model = load_model(config.task, str(model_dir), labels)
    return evaluate_model(config.task, model, tok, rows, labels, config.max_length)


def evaluate_run(registry: RunRegistry, run_id: str, *, test_file: str | None = None,
                 against: str | None = None) -> dict:
    """Write ``eval.json`` for a run with the base and run rows, and a row for the run ``against`` (the one
    serving now, as the caller knows it) when it has the same labels; returns it."""
    import torch

    from labelloop.finetune.train import load_model, resolve_base_model

    record = registry.get(run_id)
    config = registry.config(run_id)
    rows = read_records(test_file or config.test_file, config.task)
    labels = list(ModelManifest.read(record.model_dir).labels)
    base_path = resolve_base_model(config.model_name, registry.root.parent / "models")
    report: dict = {"task": config.task, "test_file": test_file or config.test_file, "rows": {}}
    if config.task == "classification":
        report["rows"]["base"] = {"kind": "zero-shot from label names", **_zero_shot(rows, labels, base_path)}
    else:
        torch.manual_seed(config.seed)
        tok, model = load_model(config.task, base_path, labels)
        kind = "base model" if config.task in ("sft", "dpo") else "untrained head"
        report["rows"]["base"] = {"kind": kind, **evaluate_model(config.task, model, tok, rows, labels, config.max_length)}
    if against and against != run_id:
        path = registry.get(against).model_dir
        if list(ModelManifest.read(path).labels) == labels:
            report["rows"]["promoted"] = {"run": against, **_run_metrics(config, path, rows, labels)}
    report["rows"]["run"] = {"run": run_id, **_run_metrics(config, record.model_dir, rows, labels)}
    report["run"] = {k: v for k, v in report["rows"]["run"].items() if not isinstance(v, (dict, list))}
    (record.folder / "eval.json").write_text(json.dumps(report, indent=2))
    return report
