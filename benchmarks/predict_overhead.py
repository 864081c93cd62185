"""How much the HTTP backend adds on top of the bare model, and what a cold start costs.

Three sides, interleaved (``--rounds`` rounds, each side once per round, the first side rotating), each run
on 1,000 texts no other run saw:
  raw                the encoder's batched forward pass in this process (tokenize, pad, forward, pool), batch 32
  raw_length_sorted  the same, texts batched by length first (its best case: the baseline held to the target)
  http               POST /predict with all 1,000 tasks to a `labelloop backend` process (as "Retrieve
                     predictions" sends)
and prints min and median seconds per side and the http / raw_length_sorted ratio (target under 1.15), plus
the backend's cold start (process start to first prediction) and resident memory.

    python benchmarks/predict_overhead.py [--tasks 1000] [--rounds 3] [--out benchmarks/results/predict_overhead.json]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleaved, spread  # noqa: E402

from labelloop.demo import DEMO_TEXTS  # noqa: E402
from labelloop.encoder import resolve_model_path  # noqa: E402
from labelloop.studio.localstudio import free_port, wait_healthy  # noqa: E402

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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each side once per round)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/predict_overhead.json"))
    args = parser.parse_args()
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path("")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

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
            warm = [{"id": 0, "data": {"text": make_texts(1, seed=-1)[0]}}]
            http.post("/predict", json={"tasks": warm, "project": "1.0", "label_config": CONFIG}).raise_for_status()
            cold_s = time.perf_counter() - started

            def over_http(seed: int) -> float:
                # Texts of their own: the backend caches sentence vectors, and seen texts would measure that cache.
                request = [{"id": i, "data": {"text": t}} for i, t in enumerate(make_texts(args.tasks, seed=seed))]
                t0 = time.perf_counter()
                r = http.post("/predict", json={"tasks": request, "project": "1.0", "label_config": CONFIG})
                r.raise_for_status()
                assert len(r.json()["results"]) == len(request)
                return time.perf_counter() - t0

            runs = interleaved({
                "raw": lambda seed: raw_forward(tokenizer, model, make_texts(args.tasks, seed=seed), sort=False),
                "raw_length_sorted": lambda seed: raw_forward(tokenizer, model, make_texts(args.tasks, seed=seed),
                                                              sort=True),
                "http": over_http,
            }, args.rounds, report=lambda name, r, s: print(f"  round {r}: {name:<17} {s:6.2f} s", flush=True))
        rss = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    seconds = {name: spread(times) for name, times in runs.items()}
    rate = {name: args.tasks / s["median"] for name, s in seconds.items()}
    ratio = seconds["http"]["median"] / seconds["raw_length_sorted"]["median"]
    ratio_min = seconds["http"]["min"] / seconds["raw_length_sorted"]["min"]
    result = {
        "tasks": args.tasks, "rounds": args.rounds, "seconds": seconds,
        "tasks_per_s_median": rate,
        "overhead_ratio": ratio, "overhead_ratio_of_minima": ratio_min,
        "overhead_ratio_vs_unsorted": seconds["http"]["median"] / seconds["raw"]["median"],
        "target_ratio": 1.15,
        "cold_start": {"health_s": health_s, "first_prediction_s": cold_s},
        "backend_rss_mb": rss,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print(f"{args.tasks} fresh texts per run, {args.rounds} interleaved rounds (min / median seconds):")
    for name, s in seconds.items():
        print(f"  {name:<17} {s['min']:6.2f} / {s['median']:6.2f} s   {rate[name]:7.1f} tasks/s at the median")
    print(f"overhead ratio vs length-sorted raw: {ratio:.3f} of medians, {ratio_min:.3f} of minima (target < 1.15); "
          f"vs input order {result['overhead_ratio_vs_unsorted']:.3f}")
    print(f"cold start: /health after {health_s:.1f} s, first prediction after {cold_s:.1f} s; RSS {rss:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
