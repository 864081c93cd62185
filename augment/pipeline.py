"""Run augmenters over approved records with the hygiene a training set needs.

- Test items are never augmented, and no variant may match a test text (no leakage).
- A variant that duplicates, or nearly duplicates, an original, another variant or its own source is dropped.
- Optionally, a variant the current model confidently labels differently from its source is dropped, and
  so is one whose sentence vector strayed from its source's (:class:`SimilarityFilter`).
- Every variant keeps its provenance; the input records are never modified.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from labelloop.augment.base import Augmenter, record_id
from labelloop.errors import ConfigError
from labelloop.quality.dedup import NearDuplicateIndex, content_key

# Probabilities (n_texts, n_labels) for texts, and the label names of the columns.
ProbaFn = Callable[[list[str]], np.ndarray]


@dataclass
class LabelFilter:
    """Drops a variant when the model gives another label than its source's with probability >= threshold."""

    predict_proba: ProbaFn
    labels: Sequence[str]
    threshold: float = 0.9

    def keep(self, variants: list[dict]) -> list[bool]:
        if not variants:
            return []
        probs = self.predict_proba([v["text"] for v in variants])
        keep = []
        for v, p in zip(variants, probs, strict=True):
            top = int(np.argmax(p))
            keep.append(not (self.labels[top] != v.get("label") and p[top] >= self.threshold) if "label" in v else True)
        return keep


# Measured on 1,197 WordNet-synonym variants of movie reviews (benchmarks/augment_similarity.py): a head trained
# on other reviews changes its label for 23% of the variants below cosine 0.8 to their source, 7% of those at
# 0.9 or above, 14% overall. Variants that far from their source read as another sentence ("information
# technology" for "it", "fourth dimension" for "time").
MIN_SIMILARITY = 0.9
UNFILTERED_METHODS = ("mention-swap",)  # a swapped entity is meant to change the sentence


class SimilarityFilter:
    """Keeps a variant only when its sentence vector stays within ``threshold`` cosine of its source's."""

    def __init__(self, embed, threshold: float = MIN_SIMILARITY) -> None:
        self.embed = embed  # list[str] -> (n, dim) vectors
        self.threshold = threshold

    def keep(self, sources: dict[str, str], variants: Sequence[dict]) -> list[bool]:
        """One verdict per variant; ``sources`` maps a provenance source id to the source text."""
        checked = [i for i, v in enumerate(variants) if v["provenance"]["method"] not in UNFILTERED_METHODS
                   and v["provenance"]["source"] in sources]
        verdicts = [True] * len(variants)
        if not checked:
            return verdicts
        a = np.asarray(self.embed([sources[variants[i]["provenance"]["source"]] for i in checked]), dtype=np.float64)
        b = np.asarray(self.embed([variants[i]["text"] for i in checked]), dtype=np.float64)
        cos = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        for i, c in zip(checked, cos, strict=True):
            verdicts[i] = bool(c >= self.threshold)
        return verdicts


@dataclass
class AugmentReport:
    sources: int = 0
    excluded_test: int = 0  # records left out because their text is a test item's
    test_items: int = 0
    variants: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        kept = ", ".join(f"{m}: {n}" for m, n in sorted(self.variants.items())) or "none"
        dropped = ", ".join(f"{why}: {n}" for why, n in sorted(self.dropped.items())) or "none"
        duplicates = (f", {self.excluded_test} records left out because their text is a test item's"
                      if self.excluded_test else "")
        return (f"{self.sources} source records{duplicates}; {self.test_items} test items never augmented nor "
                f"matched by a variant; variants kept: {kept}; dropped: {dropped}")


def augment_records(records: Sequence[dict], augmenters: Sequence[Augmenter], *, n: int = 1, seed: int = 0,
                    test_records: Sequence[dict] = (), near_duplicate_threshold: float = 0.9,
                    label_filter: LabelFilter | None = None, similarity: SimilarityFilter | None = None,
                    progress: bool = True) -> tuple[list[dict], AugmentReport]:
    """Variants of ``records`` from every augmenter, cleaned as the module says."""
    if any("tags" in r for r in records):
        raise ConfigError("word-tagged records (part of speech) can't be augmented: a replaced or translated word "
                          "needs a new tag that no augmenter knows. Augment classification or entity projects.")
    if any("relations" in r for r in records):
        raise ConfigError("records with relations can't be augmented yet: their links point at spans by position. "
                          "Export the project's <Labels> control alone (--control NAME) to augment its spans.")
    originals = copy.deepcopy(list(records))
    text_of = lambda r: r.get("text", r.get("prompt", ""))  # noqa: E731
    test_keys = {content_key(text_of(r)) for r in test_records}
    report = AugmentReport()
    sources = [r for r in originals if content_key(text_of(r)) not in test_keys]
    report.sources, report.excluded_test = len(sources), len(originals) - len(sources)
    report.test_items = len(test_keys)
    seen = {content_key(text_of(r)) for r in originals} | test_keys
    index = NearDuplicateIndex(near_duplicate_threshold)
    for i, r in enumerate(originals):
        index.add(("original", i), text_of(r))
    kept: list[dict] = []
    for augmenter in tqdm(augmenters, desc="augmenting", unit="method", disable=not progress):
        candidates = augmenter.augment(sources, n=n, seed=seed)
        verdicts = label_filter.keep(candidates) if label_filter else [True] * len(candidates)
        close = (similarity.keep({record_id(r): text_of(r) for r in sources}, candidates) if similarity
                 else [True] * len(candidates))
        for variant, ok, near in zip(candidates, verdicts, close, strict=True):
            key = content_key(variant["text"])
            if key in test_keys:
                report.dropped["matches a test text"] += 1
            elif key in seen:
                report.dropped["duplicate"] += 1
            elif index.find(variant["text"]):
                report.dropped["near duplicate"] += 1
            elif not ok:
                report.dropped["model disagrees with the label"] += 1
            elif not near:
                report.dropped[f"far from its source (cosine < {similarity.threshold if similarity else 0:g})"] += 1
            else:
                seen.add(key)
                index.add(("variant", len(kept)), variant["text"])
                kept.append(variant)
                report.variants[variant["provenance"]["method"]] += 1
    assert originals == list(records), "augmentation must not modify its input"
    return kept, report


def variant_tasks(variants: Sequence[dict], label_config: str, *, model_version: str = "augmentation") -> list[dict]:
    """Label Studio tasks for variants: data marked as augmented (with provenance), the label as a prediction."""
    from labelloop.labeling.kinds import kind_of
    from labelloop.labeling.schema import find_control

    control = find_control(label_config)
    tasks = []
    for v in variants:
        prov = v["provenance"]
        data = {control.value_key: v["text"], "augmented": True, "augmentation_source": prov["source"],
                "augmentation_method": prov["method"]}
        result = kind_of(control).regions_for(control, v)
        tasks.append({"data": data, "predictions": [{"model_version": model_version, "result": result}]})
    return tasks
