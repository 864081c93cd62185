"""Weak supervision on rules a lead would write: does the label model beat majority vote of the same votes?

BBC News (2,225 articles, 5 topics) labelled by one keyword rule per topic, each rule voting only its own
topic (the kind of rule `labelloop weak` is built for), and movie-review sentences by a positive-word and a
negative-word rule. One run compares, on the texts the rules cover, the same vote matrix combined by
  majority       the share of votes per label (the baseline)
  ds-ignore      Dawid-Skene with abstentions ignored (the model LabelLoop used before: a one-label rule
                 carries no information in it)
  ds-abstain     Dawid-Skene with abstention as an outcome (the default label model)
  combined       what `labelloop weak` stores: the label model, or majority vote where 20% of the texts,
                 taken as annotated, show majority vote is better (scored on the other 80%)

    python benchmarks/weak_rules.py [--out benchmarks/results/weak_rules.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, bbc_news, movie_reviews  # noqa: E402

from labelloop.jsonl import iter_jsonl  # noqa: E402
from labelloop.weak import ABSTAIN, LabelModel, WeakRules, apply_lfs, combine_votes, majority_vote  # noqa: E402

RULES = {
    "bbc_news": {"business": ["shares", "profits", "economy", "bank", "market"],
                 "entertainment": ["film", "album", "band", "actor", "singer"],
                 "politics": ["labour", "tory", "minister", "election", "parliament"],
                 "sports": ["match", "coach", "cup", "championship", "injury"],
                 "tech": ["software", "computer", "internet", "users", "mobile"]},
    "movie_reviews": {"positive": ["wonderful", "best", "beautiful", "funny", "great"],
                      "negative": ["bad", "boring", "dull", "worst", "mess"]},
}


def evaluate(name: str, path: Path, seed: int = 0) -> dict:
    rows = [row for _, row in iter_jsonl(path)]
    texts = [r["text"] for r in rows]
    labels = sorted({str(r["label"]) for r in rows})
    y = np.array([labels.index(str(r["label"])) for r in rows])
    rules = WeakRules(keywords=RULES[name])
    votes = apply_lfs(rules.labeling_functions(labels), texts, labels)
    covered = (votes != ABSTAIN).any(axis=1)
    annotated = np.random.default_rng(seed).random(len(texts)) < 0.2
    gold = np.where(annotated, y, ABSTAIN)
    scored = covered & ~annotated

    def accuracy(probs: np.ndarray) -> float:
        return float((probs.argmax(axis=1) == y)[scored].mean())

    combined = combine_votes(votes, len(labels), gold)
    result = {"texts": len(texts), "labels": labels, "coverage": float(covered.mean()), "scored": int(scored.sum()),
              "majority": accuracy(majority_vote(votes, len(labels))),
              "ds-ignore": accuracy(LabelModel(len(labels), abstain="ignore").fit(votes).predict_proba(votes)),
              "ds-abstain": accuracy(LabelModel(len(labels)).fit(votes).predict_proba(votes)),
              "combined": accuracy(combined.probs), "combiner": combined.combiner}
    result["combined_vs_majority"] = round(result["combined"] / result["majority"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--out", default="benchmarks/results/weak_rules.json")
    args = parser.parse_args()
    results = {"bbc_news": evaluate("bbc_news", bbc_news(args.data)),
               "movie_reviews": evaluate("movie_reviews", movie_reviews(args.data))}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'data':<15}{'coverage':>9}{'majority':>10}{'ds-ignore':>11}{'ds-abstain':>12}{'combined':>10}  combiner")
    for name, r in results.items():
        print(f"{name:<15}{r['coverage']:>9.3f}{r['majority']:>10.3f}{r['ds-ignore']:>11.3f}{r['ds-abstain']:>12.3f}"
              f"{r['combined']:>10.3f}  {r['combiner']} ({r['combined_vs_majority']}x majority)")


if __name__ == "__main__":
    main()
