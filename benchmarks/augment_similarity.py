"""How far a synonym variant may stray from its source: the threshold of augment's similarity filter.

WordNet-synonym variants (2 per sentence, 15% of words) of 600 movie-review sentences; a head trained on 2,000
other reviews labels each source and each variant. Per band of cosine similarity between the two sentence
vectors: how often the head changes its label (a variant that changed meaning), against all variants in the
same run. Then the share of variants the default threshold keeps and a blind sample of kept and dropped ones
(drawn at random, not picked), printed only. Results: benchmarks/results/augment_similarity.json.

    python benchmarks/augment_similarity.py [--threshold 0.9]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, movie_reviews  # noqa: E402

from labelloop.augment.augmenters import SynonymAugmenter  # noqa: E402
from labelloop.augment.pipeline import MIN_SIMILARITY  # noqa: E402
from labelloop.encoder import load_encoder  # noqa: E402
from labelloop.models import ChoicesModel  # noqa: E402

BANDS = [0.0, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 1.01]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=MIN_SIMILARITY)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/augment_similarity.json"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in movie_reviews(DEFAULT_OUT).read_text().splitlines()]
    random.Random(0).shuffle(rows)
    train, sources = rows[:2000], rows[2000:2600]
    encoder = load_encoder("")
    names = ("negative", "positive")
    head = ChoicesModel.zero_shot(encoder, names).fit(encoder.embed([r["text"] for r in train]),
                                                      np.array([names.index(r["label"]) for r in train]))
    variants = SynonymAugmenter(aug_p=0.15).augment([{**r, "task_id": i} for i, r in enumerate(sources)], n=2)
    source_text = [sources[int(v["provenance"]["source"].split()[1])]["text"] for v in variants]
    a, b = encoder.embed(source_text), encoder.embed([v["text"] for v in variants])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    flipped = head.predict_proba(a).argmax(1) != head.predict_proba(b).argmax(1)
    bands = []
    for lo, hi in zip(BANDS, BANDS[1:]):
        inside = (cos >= lo) & (cos < hi)
        bands.append({"cosine": [lo, min(hi, 1.0)], "variants": int(inside.sum()),
                      "label_changed": float(flipped[inside].mean()) if inside.any() else None})
    kept = cos >= args.threshold
    rng = random.Random(1)
    sample = {name: [{"cosine": round(float(cos[i]), 3), "source": source_text[i], "variant": variants[i]["text"]}
                     for i in rng.sample([int(i) for i in np.flatnonzero(mask)], min(6, int(mask.sum())))]
              for name, mask in (("kept", kept), ("dropped", ~kept))}
    result = {"variants": len(variants), "label_changed_all": float(flipped.mean()), "bands": bands,
              "threshold": args.threshold, "kept_share": float(kept.mean()),
              "label_changed_kept": float(flipped[kept].mean()), "label_changed_dropped": float(flipped[~kept].mean()),
              # the sample's texts are printed, not stored: the reviews' licence is for research use
              "blind_sample_cosines": {name: [row["cosine"] for row in rows_] for name, rows_ in sample.items()}}
    print(f"{len(variants)} variants; the head changes its label for {flipped.mean():.1%} of them")
    for band in bands:
        changed = "-" if band["label_changed"] is None else f"{band['label_changed']:.1%}"
        print(f"  cosine {band['cosine'][0]:.2f}-{band['cosine'][1]:.2f}: {band['variants']:>4} variants, label changed "
              f"for {changed}")
    print(f"threshold {args.threshold}: keeps {kept.mean():.1%}; label changed for {flipped[kept].mean():.1%} of the "
          f"kept, {flipped[~kept].mean():.1%} of the dropped (ratio {flipped[kept].mean() / flipped.mean():.2f} of all)")
    for name, rows_ in sample.items():
        print(f"\n{name} (blind sample):")
        for row in rows_:
            print(f"  {row['cosine']:.3f}  {row['source']}\n         -> {row['variant']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
