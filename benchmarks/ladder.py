"""The ladder's rungs side by side: where does the background fine-tune start to beat the head?

For each label count, the same random training sample goes to the head (the backend's linear head on frozen
MiniLM vectors) and to the fine-tune the backend starts (:func:`labelloop.policy.finetune_config`,
run as the backend runs it: ``python -m labelloop.finetune.launch``), and both are scored on the same held-out
test set, with 95% Wilson intervals, and as the ratio fine-tune / head. The head on all of the pool is the
baseline line. The first label count where the fine-tune wins by more than the noise sets the default of
``LABELLOOP_FINETUNE_AT``.

    python benchmarks/ladder.py [--data movie_reviews|bbc_news] [--sizes 100,200,400] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, bbc_news, movie_reviews  # noqa: E402

from labelloop.audit import wilson_interval  # noqa: E402
from labelloop.data.jsonl import write_jsonl  # noqa: E402
from labelloop.encoder import load_encoder  # noqa: E402
from labelloop.finetune.registry import RunRegistry  # noqa: E402
from labelloop.models import ChoicesModel, TransformerModel  # noqa: E402
from labelloop.policy import finetune_config  # noqa: E402

DATA = {"movie_reviews": movie_reviews, "bbc_news": bbc_news}


def mcnemar_exact(first_only: int, second_only: int) -> float:
    """One-sided exact McNemar p-value that the second model is better (a fair coin on discordant items)."""
    import math

    n = first_only + second_only
    return float(sum(math.comb(n, k) for k in range(second_only, n + 1)) / 2.0**n) if n else 1.0


def read(path: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows], [str(r["label"]) for r in rows]


def finetune(home: Path, name: str, texts: list[str], labels: list[str]) -> tuple[Path, float]:
    registry = RunRegistry(home)
    (home / "data").mkdir(parents=True, exist_ok=True)
    train_file = home / "data" / f"{name}.jsonl"
    write_jsonl(train_file, [{"text": t, "label": y} for t, y in zip(texts, labels)])
    run = registry.create(finetune_config(len(texts), train_file), name=name)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "labelloop.finetune.launch", str(run.folder)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"})
    return run.model_dir, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(DATA), default="movie_reviews")
    parser.add_argument("--sizes", default="100,200,400")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--test", type=int, default=600)
    parser.add_argument("--truncate", type=int, default=600, help="characters of each text kept (BBC articles are long)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    texts, labels = read(DATA[args.data](DEFAULT_OUT))
    texts = [t[: args.truncate] for t in texts]
    names = sorted(set(labels))
    y_all = np.array([names.index(y) for y in labels])
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    test, pool = order[: args.test], order[args.test :]
    encoder = load_encoder("")
    x = encoder.embed(texts)
    prior = ChoicesModel.zero_shot(encoder, names)
    full = float((prior.fit(x[pool], y_all[pool]).predict_proba(x[test]).argmax(1) == y_all[test]).mean())
    home = Path(tempfile.mkdtemp(prefix="labelloop-ladder-"))  # every run's model, removed at the end
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for r in range(args.repeats):
            rng = random.Random(1000 * n + r)
            train = rng.sample(pool, n)
            while len({labels[i] for i in train}) < len(names):  # every label present, as the ladder requires
                train = rng.sample(pool, n)
            started = time.perf_counter()
            head_right = prior.fit(x[train], y_all[train]).predict_proba(x[test]).argmax(1) == y_all[test]
            head_seconds = time.perf_counter() - started
            model_dir, ft_seconds = finetune(home, f"{args.data}-{n}-{r}", [texts[i] for i in train],
                                             [labels[i] for i in train])
            ft = TransformerModel(model_dir, names)
            ft_right = ft.predict_proba([texts[i] for i in test]).argmax(1) == y_all[test]
            p = mcnemar_exact(int((head_right & ~ft_right).sum()), int((ft_right & ~head_right).sum()))
            row = {"labels": n, "repeat": r, "head": float(head_right.mean()), "finetune": float(ft_right.mean()),
                   "head_seconds": head_seconds, "finetune_seconds": ft_seconds, "p_finetune_better": p}
            rows.append(row)
            print(json.dumps(row), flush=True)
    n_test = len(test)
    print(f"\n{args.data}: test n={n_test}; head on the whole pool ({len(pool)} labels) {full:.3f}")
    print(f"{'labels':>6} {'head':>16} {'fine-tune':>16} {'ratio ft/head':>14} {'ft seconds':>11}")
    summary = []
    for n in sorted({r["labels"] for r in rows}):
        mine = [r for r in rows if r["labels"] == n]
        head, ft = np.mean([r["head"] for r in mine]), np.mean([r["finetune"] for r in mine])
        lo, hi = wilson_interval(int(round(ft * n_test)), n_test)
        summary.append({"labels": n, "head": float(head), "head_std": float(np.std([r["head"] for r in mine])),
                        "finetune": float(ft), "finetune_std": float(np.std([r["finetune"] for r in mine])),
                        "finetune_interval": [lo, hi], "ratio": float(ft / head),
                        "finetune_seconds": float(np.mean([r["finetune_seconds"] for r in mine]))})
        print(f"{n:>6} {head:>9.3f} ±{summary[-1]['head_std']:.3f} {ft:>9.3f} ±{summary[-1]['finetune_std']:.3f} "
              f"{ft / head:>14.2f} {summary[-1]['finetune_seconds']:>11.0f}")
    shutil.rmtree(home, ignore_errors=True)
    out = args.out or Path(f"benchmarks/results/ladder_{args.data}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data": args.data, "test": n_test, "pool": len(pool), "head_full_pool": full,
                               "summary": summary, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
