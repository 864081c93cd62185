"""LoRA against full fine-tuning of MiniLM on CPU, in one run, on the movie-review sentences.

Both runs get the same data (2,000 training sentences, 1,000 test), epochs and batch size. Printed as
ratios LoRA/full: seconds per step, peak resident memory, trainable parameters; and test accuracy of
each (target >= 0.80), beside the zero-shot base row. Each run is a `labelloop train` subprocess so its
peak memory is its own.

    python benchmarks/finetune_cpu.py [--train 2000] [--test 1000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, movie_reviews  # noqa: E402


def split(path: Path, n_train: int, n_test: int, out: Path) -> tuple[Path, Path]:
    rows = path.read_text().splitlines()
    random.Random(0).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.jsonl").write_text("\n".join(rows[:n_train]) + "\n")
    (out / "test.jsonl").write_text("\n".join(rows[n_train : n_train + n_test]) + "\n")
    return out / "train.jsonl", out / "test.jsonl"


def train(home: Path, name: str, train_file: Path, test_file: Path, epochs: float, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "labelloop.cli", "--log-level", "warning", "train", "--name", name,
           "--train-file", str(train_file), "--test-file", str(test_file), "--epochs", str(epochs),
           "--batch-size", "32", *extra]
    subprocess.run(cmd, env={**os.environ, "LABELLOOP_HOME": str(home)}, check=True, stdout=subprocess.DEVNULL)
    folder = home / "runs" / name
    import sqlite3

    summary = json.loads(sqlite3.connect(home / "runs" / "index.sqlite3").execute(
        "SELECT summary FROM runs WHERE run_id=?", (name,)).fetchone()[0])
    return {"summary": summary, "eval": json.loads((folder / "eval.json").read_text())["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/finetune_cpu.json"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labelloop-ft-"))
    train_file, test_file = split(movie_reviews(DEFAULT_OUT), args.train, args.test, home / "data")
    runs = {method: train(home, method, train_file, test_file, args.epochs, ["--task", "classification", "--method", method])
            for method in ("lora", "full")}
    result = {"train": args.train, "test": args.test, "epochs": args.epochs, "runs": {}}
    for method, r in runs.items():
        s = r["summary"]
        result["runs"][method] = {"seconds_per_step": s["seconds"] / s["steps"], "peak_rss_mb": s["peak_rss_mb"],
                                  "trainable_parameters": s["trainable_parameters"],
                                  "accuracy": r["eval"]["run"]["accuracy"], "macro_f1": r["eval"]["run"]["macro_f1"],
                                  "learning_rate": s["learning_rate"]}
    result["zero_shot_accuracy"] = runs["lora"]["eval"]["base"]["accuracy"]
    lora, full = result["runs"]["lora"], result["runs"]["full"]
    result["ratios_lora_over_full"] = {k: lora[k] / full[k] for k in ("seconds_per_step", "peak_rss_mb",
                                                                       "trainable_parameters", "accuracy")}
    print(f"{'':<6}{'s/step':>10}{'peak MB':>10}{'trainable':>12}{'accuracy':>10}")
    for method, r in result["runs"].items():
        print(f"{method:<6}{r['seconds_per_step']:>10.3f}{r['peak_rss_mb']:>10.0f}{r['trainable_parameters']:>12,}"
              f"{r['accuracy']:>10.3f}")
    print(f"zero-shot base accuracy {result['zero_shot_accuracy']:.3f}; LoRA/full ratios: "
          + ", ".join(f"{k} {v:.2f}" for k, v in result["ratios_lora_over_full"].items()))
    print(f"target: accuracy >= 0.80; best {max(lora['accuracy'], full['accuracy']):.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
