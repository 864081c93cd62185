"""How much the HTTP backend adds on top of the bare model, and what a cold start costs.

One run measures, on the same 1,000 texts:
  raw     the encoder's batched forward pass in this process (tokenize, pad, forward, pool), batch 32
  http    POST /predict with all 1,000 tasks to a `labelloop backend` process (as "Retrieve predictions" sends)
and prints tasks/s for both and their ratio (target: http/raw time under 1.15; the raw baseline is also
run length-sorted, its best case, and that is the ratio held to the target), plus the backend's
cold start (process start to first prediction) and resident memory.

    python benchmarks/predict_overhead.py [--tasks 1000] [--out benchmarks/results/predict_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from labelloop.demo import DEMO_TEXTS
from labelloop.encoder import resolve_model_path
from labelloop.localstudio import free_port, wait_healthy

CONFIG = """<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">
<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices></View>"""


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Review-like texts of 1 to 4 sentences (10 to 80 words), varied so nothing is cached."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(DEMO_TEXTS, rng.randint(1, 4))) + f" (#{i})" for i in range(n)]


def raw_forward(tokenizer, model, texts: list[str], *, sort: bool, batch_size: int = 32, max_length: int = 256) -> float:
    """Seconds for the plain transformers recipe: tokenizer(padding, truncation) + forward + mean pooling.

    With ``sort`` the texts are batched in order of length first (the best case for padding).
    """
    import torch

    with torch.inference_mode():
        model(**tokenizer(texts[:8], padding=True, return_tensors="pt"))  # warm-up
        started = time.perf_counter()
        if sort:
            lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
            texts = [texts[i] for i in np.argsort(lengths)]
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            torch.nn.functional.normalize(pooled, dim=1).numpy()
    return time.perf_counter() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/predict_overhead.json"))
    args = parser.parse_args()
    # Each repeat predicts texts never seen before: the backend caches sentence vectors on disk, and a
    # repeat of the same texts would measure that cache, not the model.
    text_sets = [make_texts(args.tasks, seed=r + 1) for r in range(args.repeats)]
    texts = text_sets[0]
    tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(make_texts(1, seed=0))]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = tempfile.mkdtemp(prefix="labelloop-bench-")
    env = {**os.environ, "LABELLOOP_HOME": home, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "labelloop.cli", "--log-level", "warning", "backend",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url + "/health", timeout=120, process=server)
        health_s = time.perf_counter() - started
        with httpx.Client(base_url=url, timeout=600) as http:
            http.post("/setup", json={"project": "1.0", "schema": CONFIG}).raise_for_status()
            http.post("/predict", json={"tasks": tasks, "project": "1.0", "label_config": CONFIG}).raise_for_status()
            cold_s = time.perf_counter() - started
            http_times = []
            for batch in text_sets:
                request = [{"id": i, "data": {"text": t}} for i, t in enumerate(batch)]
                t0 = time.perf_counter()
                r = http.post("/predict", json={"tasks": request, "project": "1.0", "label_config": CONFIG})
                r.raise_for_status()
                http_times.append(time.perf_counter() - t0)
                assert len(r.json()["results"]) == len(request)
        rss = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path("")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    raw_s = float(np.median([raw_forward(tokenizer, model, batch, sort=False) for batch in text_sets]))
    sorted_s = float(np.median([raw_forward(tokenizer, model, batch, sort=True) for batch in text_sets]))
    http_s = float(np.median(http_times))
    result = {
        "tasks": len(texts),
        "raw_forward": {"seconds": raw_s, "tasks_per_s": len(texts) / raw_s},
        "raw_forward_length_sorted": {"seconds": sorted_s, "tasks_per_s": len(texts) / sorted_s},
        "http_predict": {"seconds": http_s, "tasks_per_s": len(texts) / http_s},
        "overhead_ratio": http_s / sorted_s,
        "overhead_ratio_vs_unsorted": http_s / raw_s,
        "target_ratio": 1.15,
        "cold_start": {"health_s": health_s, "first_prediction_s": cold_s},
        "backend_rss_mb": rss,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print(f"raw forward, input order   {len(texts) / raw_s:8.1f} tasks/s  ({raw_s:.2f} s, median of {args.repeats})")
    print(f"raw forward, length-sorted {len(texts) / sorted_s:8.1f} tasks/s  ({sorted_s:.2f} s)")
    print(f"HTTP /predict              {len(texts) / http_s:8.1f} tasks/s  ({http_s:.2f} s)")
    print(f"overhead ratio vs length-sorted raw {http_s / sorted_s:.3f} (target < 1.15); vs input order {http_s / raw_s:.3f}")
    print(f"cold start: /health after {health_s:.1f} s, first prediction after {cold_s:.1f} s; RSS {rss:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
