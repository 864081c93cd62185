"""Weak supervision on rules a lead would write: are the stored labels ever worse than majority vote?

Three data sets: BBC News (5 topics) and movie-review sentences, which the label model was developed on, and
chat lines of three topics (sports, movies, money) from chatterbot-corpus, with keyword lists written from
general knowledge without reading the lines: the set no tuning looked at. Four rule shapes on each:
  per-label      one keyword list per label, each voting only its label (the most common shape)
  per-keyword    one function per keyword
  overlapping    two regular expressions per label that share a keyword
  skewed         per-label rules on a sample where the first label holds most texts (the others cut to 25%)
10% of the texts count as annotated (5 draws); every combiner is scored on the covered texts not annotated:
  majority       the share of votes per label (the baseline)
  label-model    Dawid-Skene with abstention as an outcome, fit on the votes alone (the earlier default)
  stored         what `labelloop weak` stores now: the label model fit with the annotations, or majority vote
                 where cross-fitting on the annotations says so, or where the rules barely overlap

    python benchmarks/weak_rules.py [--out benchmarks/results/weak_rules.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, bbc_news, chat_topics, movie_reviews  # noqa: E402

from labelloop.data.jsonl import read_jsonl  # noqa: E402
from labelloop.quality.weak import (  # noqa: E402
    ABSTAIN,
    LabelModel,
    apply_lfs,
    combine_votes,
    keyword_lf,
    majority_vote,
    regex_lf,
)

RULES = {
    "bbc_news": {"business": ["shares", "profits", "economy", "bank", "market"],
                 "entertainment": ["film", "album", "band", "actor", "singer"],
                 "politics": ["labour", "tory", "minister", "election", "parliament"],
                 "sport": ["match", "coach", "cup", "championship", "injury"],
                 "tech": ["software", "computer", "internet", "users", "mobile"]},
    "movie_reviews": {"positive": ["wonderful", "best", "beautiful", "funny", "great"],
                      "negative": ["bad", "boring", "dull", "worst", "mess"]},
    # Written from general knowledge, before and without reading the chat lines: the held-out set.
    "chat_topics": {"sports": ["game", "team", "play", "ball", "football", "soccer", "score", "win"],
                    "movies": ["movie", "film", "actor", "actress", "director", "watch", "cinema", "star"],
                    "money": ["money", "dollar", "bank", "pay", "price", "cost", "rich", "cash"]},
}
SHAPES = ("per-label", "per-keyword", "overlapping", "skewed")


def load(name: str) -> tuple[list[str], list[str]]:
    path = {"bbc_news": bbc_news, "movie_reviews": movie_reviews, "chat_topics": chat_topics}[name](DEFAULT_OUT)
    rows = read_jsonl(path)
    if name == "chat_topics":
        rows = [r for r in rows if r["label"] in RULES[name]]
    if name == "bbc_news":
        rows = [{**r, "label": "sport" if r["label"] == "sports" else r["label"]} for r in rows]
    return [r["text"] for r in rows], [str(r["label"]) for r in rows]


def functions(rules: dict[str, list[str]], shape: str) -> list:
    if shape == "per-keyword":
        return [keyword_lf(label, [w], name=f"{label}:{w}") for label, words in rules.items() for w in words]
    if shape == "overlapping":
        out = []
        for label, words in rules.items():
            half = max(2, len(words) // 2 + 1)
            for part, chosen in (("a", words[:half]), ("b", words[half - 1:])):
                out.append(regex_lf(label, r"\b(" + "|".join(map(re.escape, chosen)) + r")\b", name=f"{label}:{part}"))
        return out
    return [keyword_lf(label, words, name=label) for label, words in rules.items()]


def evaluate(name: str, shape: str, draws: int = 5) -> dict:
    texts, names = load(name)
    labels = sorted(set(names))
    y = np.array([labels.index(n) for n in names])
    if shape == "skewed":
        keep = np.random.default_rng(0).random(len(y)) < np.where(y == 0, 1.0, 0.25)
        texts, y = [t for t, k in zip(texts, keep) if k], y[keep]
    rules = {label: words for label, words in RULES[name].items() if label in labels}
    votes = apply_lfs(functions(rules, shape), texts, labels)
    covered = (votes != ABSTAIN).any(axis=1)
    scores: dict[str, list[float]] = {"majority": [], "label-model": [], "stored": []}
    combiners = []
    unsupervised = LabelModel(len(labels)).fit(votes).predict_proba(votes)
    for draw in range(draws):
        annotated = np.random.default_rng(draw).random(len(texts)) < 0.1
        scored = covered & ~annotated
        combined = combine_votes(votes, len(labels), np.where(annotated, y, ABSTAIN))
        for key, probs in (("majority", majority_vote(votes, len(labels))), ("label-model", unsupervised),
                           ("stored", combined.probs)):
            scores[key].append(float((probs.argmax(axis=1) == y)[scored].mean()))
        combiners.append(combined.combiner)
    out = {key: float(np.mean(v)) for key, v in scores.items()}
    return {**out, "texts": len(texts), "coverage": float(covered.mean()), "functions": votes.shape[1],
            "combiners": combiners, "stored_vs_majority": round(out["stored"] / out["majority"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/weak_rules.json")
    args = parser.parse_args()
    results = {name: {shape: evaluate(name, shape) for shape in SHAPES} for name in RULES}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'data':<15}{'shape':<13}{'coverage':>9}{'majority':>10}{'label-model':>13}{'stored':>8}  stored/majority")
    for name, by_shape in results.items():
        for shape, r in by_shape.items():
            print(f"{name:<15}{shape:<13}{r['coverage']:>9.3f}{r['majority']:>10.3f}{r['label-model']:>13.3f}"
                  f"{r['stored']:>8.3f}  {r['stored_vs_majority']}  ({', '.join(sorted(set(r['combiners'])))})")


if __name__ == "__main__":
    main()
