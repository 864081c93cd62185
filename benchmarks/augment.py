"""Augmentation on CPU: speed of each method, and whether it helps fine-tuning (an honest ablation).

1. sentences/s for each offline method on 200 movie-review sentences (relative to random swap, the cheapest).
2. Ablation: full fine-tuning of MiniLM on 100 and 500 labeled sentences, same seeds, test accuracy on 1,000
   held-out sentences, mean and standard deviation over the seeds, three arms:
     plain          the labeled sentences, N epochs
     plain-matched  the labeled sentences, as many optimizer steps as the augmented arm (more epochs): the
                    control for "augmentation helps only because it means more steps"
     augmented      the labeled sentences plus swap, synonym and back-translation variants, N epochs
   Published results disagree (Wei & Zou 2019: EDA helps CNN/RNN classifiers; Longpre et al. 2020: little gain
   for pretrained transformers); this reports what we measure.

    python benchmarks/augment.py [--seeds 3] [--sizes 100,500] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, movie_reviews  # noqa: E402
from finetune_cpu import train  # noqa: E402

from labelloop.augment.cli import build_augmenters  # noqa: E402
from labelloop.augment.pipeline import augment_records  # noqa: E402
from labelloop.data.jsonl import write_jsonl  # noqa: E402

METHODS = ["swap", "delete", "synonym", "synonym-insert", "backtranslate"]
ABLATION_METHODS = ["swap", "synonym", "backtranslate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", default="100,500")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/augment.json"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in movie_reviews(DEFAULT_OUT).read_text().splitlines()]
    random.Random(0).shuffle(rows)
    test, pool = rows[:1000], rows[1000:]
    work = Path(tempfile.mkdtemp(prefix="labelloop-aug-"))
    result: dict = {"speed": {}, "ablation": {}}

    sample = pool[:200]
    for method, aug in zip(METHODS, build_augmenters(METHODS, sample)):
        started = time.perf_counter()
        aug.augment(sample, seed=0)
        result["speed"][method] = len(sample) / (time.perf_counter() - started)
    base = result["speed"]["swap"]
    print("sentences/s: " + ", ".join(f"{m} {v:.0f} ({v / base:.2f}x swap)" for m, v in result["speed"].items()))

    augmenters = build_augmenters(ABLATION_METHODS, pool)
    write_jsonl(work / "test.jsonl", test)
    for size in (int(s) for s in args.sizes.split(",")):
        scores = {"plain": [], "plain-matched": [], "augmented": []}
        for seed in range(args.seeds):
            train_rows = random.Random(seed).sample(pool, size)
            variants, _ = augment_records(train_rows, augmenters, seed=seed, test_records=test, progress=False)
            matched_epochs = args.epochs * (len(train_rows) + len(variants)) / len(train_rows)
            for name, data, epochs in (("plain", train_rows, args.epochs),
                                       ("plain-matched", train_rows, matched_epochs),
                                       ("augmented", train_rows + variants, args.epochs)):
                write_jsonl(work / f"{name}-{size}-{seed}.jsonl", data)
                r = train(work / "home", f"{name}-{size}-{seed}", work / f"{name}-{size}-{seed}.jsonl",
                          work / "test.jsonl", epochs, ["--task", "classification", "--method", "full",
                                                        "--seed", str(seed)])
                scores[name].append(r["eval"]["run"]["accuracy"])
        result["ablation"][size] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v}
                                    for k, v in scores.items()}
        a = result["ablation"][size]
        print(f"{size} labels: " + ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in a.items())
              + f"; augmented - plain-matched {a['augmented']['mean'] - a['plain-matched']['mean']:+.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
