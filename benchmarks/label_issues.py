"""Label-error candidates on planted noise: cleanlab's default rule against the plain confident-joint rule.

BBC News and movie-review sentences with 10% of the labels flipped to another class at random. The
out-of-fold probabilities are the backend's own (a head on the packaged MiniLM, 5 folds), the same for
every rule; each rule's precision, recall and F1 at recovering the flipped rows are printed.
  confident_learning    the off-diagonal rule of the confident joint (what LabelLoop implemented itself)
  prune_by_noise_rate   cleanlab's default, what `labelloop` now uses

    python benchmarks/label_issues.py [--out benchmarks/results/label_issues.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, bbc_news, movie_reviews  # noqa: E402

from labelloop.al.simulation import embed_cached  # noqa: E402
from labelloop.data.jsonl import iter_jsonl  # noqa: E402
from labelloop.encoder import load_encoder  # noqa: E402
from labelloop.models import ChoicesModel  # noqa: E402
from labelloop.quality.insights import out_of_fold_probs  # noqa: E402


def scores(found: np.ndarray, flipped: np.ndarray) -> dict:
    hits = len(set(found) & set(flipped))
    precision = hits / len(found) if len(found) else 0.0
    recall = hits / len(flipped)
    return {"flagged": int(len(found)), "precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(2 * precision * recall / (precision + recall), 3) if hits else 0.0}


def run(name: str, path: Path, cache: Path, *, noise: float = 0.1, seed: int = 0) -> dict:
    from cleanlab.filter import find_label_issues

    rows = [row for _, row in iter_jsonl(path)]
    labels = sorted({str(r["label"]) for r in rows})
    y = np.array([labels.index(str(r["label"])) for r in rows])
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(y), int(noise * len(y)), replace=False)
    given = y.copy()
    given[flipped] = (y[flipped] + rng.integers(1, len(labels), len(flipped))) % len(labels)
    encoder = load_encoder("")
    x = embed_cached(encoder, [r["text"] for r in rows], cache)
    prior = ChoicesModel.zero_shot(encoder, labels)
    probs = out_of_fold_probs(x, given, lambda xs, t: prior.fit(xs, t).predict_proba, folds=5, seed=seed)
    out = {"texts": len(rows), "flipped": int(len(flipped))}
    for rule in ("confident_learning", "prune_by_noise_rate"):
        out[rule] = scores(np.asarray(find_label_issues(given, probs, filter_by=rule)).nonzero()[0], flipped)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--out", default="benchmarks/results/label_issues.json")
    args = parser.parse_args()
    cache = args.data / "vectors"
    results = {"bbc_news": run("bbc_news", bbc_news(args.data), cache),
               "movie_reviews": run("movie_reviews", movie_reviews(args.data), cache)}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'data':<15}{'rule':<22}{'flagged':>8}{'precision':>10}{'recall':>8}{'F1':>7}")
    for name, r in results.items():
        for rule in ("confident_learning", "prune_by_noise_rate"):
            s = r[rule]
            print(f"{name:<15}{rule:<22}{s['flagged']:>8}{s['precision']:>10.3f}{s['recall']:>8.3f}{s['f1']:>7.3f}")


if __name__ == "__main__":
    main()
