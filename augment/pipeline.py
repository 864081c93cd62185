"""Run augmenters over approved records with the hygiene a training set needs.

- Test items are never augmented, and no variant may match a test text (no leakage).
- A variant that duplicates, or nearly duplicates, an original, another variant or its own source is dropped.
- Optionally, a variant the current model confidently labels differently from its source is dropped.
- Every variant keeps its provenance; the input records are never modified.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from labelloop.augment.base import Augmenter
from labelloop.dedup import NearDuplicateIndex, content_key

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
        for v, p in zip(variants, probs):
            top = int(np.argmax(p))
            keep.append(not (self.labels[top] != v.get("label") and p[top] >= self.threshold) if "label" in v else True)
        return keep


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
                    label_filter: LabelFilter | None = None, progress: bool = True) -> tuple[list[dict], AugmentReport]:
    """Variants of ``records`` from every augmenter, cleaned as the module says."""
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
        for variant, ok in zip(candidates, verdicts):
            key = content_key(variant["text"])
            if key in test_keys:
                report.dropped["matches a test text"] += 1
            elif key in seen:
                report.dropped["duplicate"] += 1
            elif index.find(variant["text"]):
                report.dropped["near duplicate"] += 1
            elif not ok:
                report.dropped["model disagrees with the label"] += 1
            else:
                seen.add(key)
                index.add(("variant", len(kept)), variant["text"])
                kept.append(variant)
                report.variants[variant["provenance"]["method"]] += 1
    assert originals == list(records), "augmentation must not modify its input"
    return kept, report


def variant_tasks(variants: Sequence[dict], label_config: str, *, model_version: str = "augmentation") -> list[dict]:
    """Label Studio tasks for variants: data marked as augmented (with provenance), the label as a prediction."""
    from labelloop.labeling.schema import find_control

    control = find_control(label_config)
    to_name = control.to_name
    tasks = []
    for v in variants:
        prov = v["provenance"]
        data = {control.value_key: v["text"], "augmented": True, "augmentation_source": prov["source"],
                "augmentation_method": prov["method"]}
        if control.kind == "choices":
            choices = v["labels"] if "labels" in v else [v["label"]]
            result = [{"from_name": control.from_name, "to_name": to_name, "type": "choices",
                       "value": {"choices": list(choices)}}]
        else:
            result = [{"id": f"aug{k}", "from_name": control.from_name, "to_name": to_name, "type": "labels",
                       "value": {"start": s["start"], "end": s["end"], "text": v["text"][s["start"] : s["end"]],
                                 "labels": [s["label"]]}} for k, s in enumerate(v.get("spans", []))]
        tasks.append({"data": data, "predictions": [{"model_version": model_version, "result": result}]})
    return tasks
