"""``labelloop augment``: build augmenters by name, run the pipeline, preview with diffs, write or push."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from labelloop.augment.base import Augmenter
from labelloop.errors import ConfigError

METHODS = ("swap", "delete", "synonym", "synonym-insert", "backtranslate", "mention-swap", "fill-mask",
           "fill-mask-insert")


def build_augmenters(names: Sequence[str], records: Sequence[dict], *, fill_mask_model: str | None = None,
                     mt_forward: str | None = None, mt_backward: str | None = None, aug_p: float = 0.15,
                     nltk_data: str | None = None) -> list[Augmenter]:
    from labelloop.augment import augmenters as a
    from labelloop.augment.translate import BergamotEngine, HFTranslationEngine

    out: list[Augmenter] = []
    for name in names:
        if name in ("swap", "delete"):
            out.append(a.RandomWordAugmenter(name, aug_p))
        elif name in ("synonym", "synonym-insert"):
            out.append(a.SynonymAugmenter("substitute" if name == "synonym" else "insert", aug_p, nltk_data=nltk_data))
        elif name == "backtranslate":
            engine = HFTranslationEngine(mt_forward, mt_backward) if mt_forward and mt_backward else BergamotEngine()
            out.append(a.BackTranslationAugmenter(engine))
        elif name == "mention-swap":
            if not any(r.get("spans") for r in records):
                raise ConfigError("mention-swap needs NER records ({\"text\", \"spans\"})")
            out.append(a.MentionSwapAugmenter(records))
        elif name in ("fill-mask", "fill-mask-insert"):
            if not fill_mask_model:
                raise ConfigError(f"{name} needs --fill-mask-model (a masked language model id or folder)")
            out.append(a.FillMaskAugmenter(fill_mask_model, "substitute" if name == "fill-mask" else "insert", aug_p))
        else:
            raise ConfigError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return out


def word_diff(old: str, new: str) -> str:
    """``[-removed-]{+added+}`` between two texts, word by word."""
    a, b = old.split(), new.split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes():
        if op == "equal":
            parts += a[i1:i2]
        else:
            if i2 > i1:
                parts.append("[-" + " ".join(a[i1:i2]) + "-]")
            if j2 > j1:
                parts.append("{+" + " ".join(b[j1:j2]) + "+}")
    return " ".join(parts)


def preview(records: Sequence[dict], variants: Sequence[dict], per_method: int = 3) -> str:
    by_source: dict = {}
    from labelloop.augment.base import record_id

    for r in records:
        by_source.setdefault(record_id(r), r)
    lines: list[str] = []
    shown: dict = {}
    for v in variants:
        method = v["provenance"]["method"]
        if shown.get(method, 0) >= per_method:
            continue
        shown[method] = shown.get(method, 0) + 1
        source = by_source[v["provenance"]["source"]]
        lines.append(f"[{method}] {word_diff(source['text'], v['text'])}")
    return "\n".join(lines)
