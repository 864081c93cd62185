"""The augmenters: random word edits, WordNet synonyms, back-translation, mention swaps, fill-mask.

All are :class:`~labelloop.augment.base.Augmenter` subclasses, so all keep NER spans intact.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator, Sequence

import numpy as np

from labelloop._optional import require
from labelloop.augment.base import PROTECT, Augmenter, record_id
from labelloop.augment.translate import TranslationEngine


@contextlib.contextmanager
def seeded(rng: random.Random) -> Iterator[None]:
    """Run nlpaug (which draws from the global RNGs) reproducibly, restoring the global state after."""
    state, np_state = random.getstate(), np.random.get_state()
    seed = rng.randrange(2**31)
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
        np.random.set_state(np_state)


def _first(result) -> str:
    return result[0] if isinstance(result, list) else result


class RandomWordAugmenter(Augmenter):
    """Swap or delete random words (nlpaug's ``RandomWordAug``)."""

    def __init__(self, action: str = "swap", aug_p: float = 0.1) -> None:
        if action not in ("swap", "delete"):
            raise ValueError("action must be swap or delete")
        self.action, self.aug_p, self.name = action, aug_p, f"random-{action}"
        # Whitespace tokens: punctuation stays with its word instead of being moved about on its own.
        self._aug = require("nlpaug.augmenter.word", "augment").RandomWordAug(
            action=action, aug_p=aug_p, aug_min=1, tokenizer=str.split, reverse_tokenizer=" ".join)

    def params(self) -> dict:
        return {"action": self.action, "aug_p": self.aug_p}

    def rewrite(self, text: str, rng: random.Random) -> str:
        if len(text.split()) < 2:
            return text
        with seeded(rng):
            return _first(self._aug.augment(text))


# Words a synonym swap must not touch: WordNet has senses for many of them that no reader means ("it" as
# information technology, "or" as Oregon, "will" as a testament), and they carry the sentence's structure.
FUNCTION_WORDS = sorted(set("""
about above after again against all also and any are because been before being below between both but can
could did does doing down during each even ever few for from further had has have having her here hers herself
him himself his how into its itself just least less let like many may might more most much must myself never
nor not now off often once one only other our ours out over own same she should some such than that the their
them then there these they this those though through too under until upon very was were what when where which
while who whom why will with would yet you your yours well still get got goes make made seem seems way thing
things really quite rather almost enough every nothing something anything everything
""".split()))
# Tokens left alone: one or two letters, or anything with a digit or a sign ("2002's", "8", "-").
SKIP_TOKENS = r"^\s?(?:\S{1,2}|\S*[^A-Za-z\s]\S*)\s?$"


class SynonymAugmenter(Augmenter):
    """Replace words with WordNet synonyms (nlpaug's ``SynonymAug``), or insert a synonym of a random word.

    Function words, short tokens and tokens with digits or signs are never replaced
    (:data:`FUNCTION_WORDS`, :data:`SKIP_TOKENS`). WordNet and the POS tagger are provisioned offline by
    :func:`labelloop.augment.wordnet.ensure_wordnet`.
    """

    def __init__(self, action: str = "substitute", aug_p: float = 0.1, *, nltk_data: str | None = None) -> None:
        from labelloop.augment.wordnet import ensure_wordnet

        if action not in ("substitute", "insert"):
            raise ValueError("action must be substitute or insert")
        ensure_wordnet(nltk_data)
        self.action, self.aug_p = action, aug_p
        self.name = "synonym" if action == "substitute" else "synonym-insert"
        self._aug = require("nlpaug.augmenter.word", "augment").SynonymAug(
            aug_src="wordnet", aug_p=aug_p, aug_min=1, stopwords=FUNCTION_WORDS, stopwords_regex=SKIP_TOKENS)

    def params(self) -> dict:
        return {"action": self.action, "aug_p": self.aug_p, "source": "wordnet"}

    def rewrite(self, text: str, rng: random.Random) -> str:
        if self.action == "substitute":
            with seeded(rng):
                return _first(self._aug.augment(text))
        from nltk.corpus import wordnet

        words = text.split()
        candidates = [w for w in words if re.fullmatch(r"[A-Za-z]{3,}", w) and w.lower() not in FUNCTION_WORDS
                      and wordnet.synsets(w)]
        if not candidates:
            return text
        word = rng.choice(candidates)
        synonyms = sorted({l.name().replace("_", " ") for s in wordnet.synsets(word) for l in s.lemmas()} - {word})
        if not synonyms:
            return text
        words.insert(rng.randrange(len(words) + 1), rng.choice(synonyms))
        return " ".join(words)


class BackTranslationAugmenter(Augmenter):
    """Translate to a pivot language and back. Handles, hashtags, URLs and numbers are masked first and
    restored after; a round trip that loses one of them yields no variant."""

    split_protected = False

    def __init__(self, engine: TranslationEngine) -> None:
        self.engine = engine
        self.name = f"backtranslation-{engine.pivot}"

    def params(self) -> dict:
        return {"engine": self.engine.describe(), "pivot": self.engine.pivot}

    def rewrite(self, text: str, rng: random.Random) -> str:
        return self.rewrite_many([text], rng)[0]

    def rewrite_many(self, texts: list[str], rng: random.Random) -> list[str]:
        masked, kept = [], []
        for text in texts:
            found = PROTECT.findall(text)
            for i, token in enumerate(found):
                text = text.replace(token, f"ZX{i}Q", 1)
            masked.append(text)
            kept.append(found)
        back = self.engine.round_trip(masked)
        out = []
        for original, text, found in zip(texts, back, kept, strict=True):
            ok = all(f"ZX{i}Q" in text for i in range(len(found)))
            for i, token in enumerate(found):
                text = text.replace(f"ZX{i}Q", token, 1)
            out.append(text if ok and text.strip() else original)
        return out


class MentionSwapAugmenter(Augmenter):
    """Replace entity mentions with other annotated mentions of the same type (NER only)."""

    name = "mention-swap"

    def __init__(self, records: Sequence[dict], p: float = 0.5) -> None:
        self.p = p
        self.mentions: dict[str, list[str]] = {}
        for r in records:
            for s in r.get("spans") or []:
                mention = r["text"][s["start"] : s["end"]]
                if mention not in self.mentions.setdefault(s["label"], []):
                    self.mentions[s["label"]].append(mention)

    def params(self) -> dict:
        return {"p": self.p, "mentions_per_type": {k: len(v) for k, v in self.mentions.items()}}

    def rewrite(self, text: str, rng: random.Random) -> str:
        return text  # text between entities stays as it is; see augment()

    def augment(self, records: list[dict], *, n: int = 1, seed: int = 0) -> list[dict]:
        rng = random.Random(seed)
        out = []
        for record in records:
            spans = sorted(record.get("spans") or [], key=lambda s: s["start"])
            for k in range(n):
                text, new_spans, pos, changed = "", [], 0, False
                for s in spans:
                    text += record["text"][pos : s["start"]]
                    mention = record["text"][s["start"] : s["end"]]
                    options = [m for m in self.mentions.get(s["label"], []) if m != mention]
                    if options and rng.random() < self.p:
                        mention, changed = rng.choice(options), True
                    new_spans.append({**s, "start": len(text), "end": len(text) + len(mention)})
                    text += mention
                    pos = s["end"]
                text += record["text"][pos:]
                if changed:
                    out.append({**{k2: v for k2, v in record.items() if k2 != "provenance"}, "text": text,
                                "spans": new_spans,
                                "provenance": {"source": record_id(record), "method": self.name,
                                               "params": self.params(), "seed": seed, "variant": k}})
        return out


class FillMaskAugmenter(Augmenter):
    """Contextual substitution or insertion with a masked language model (transformers' fill-mask)."""

    def __init__(self, model: str, action: str = "substitute", aug_p: float = 0.15, top_k: int = 5) -> None:
        if action not in ("substitute", "insert"):
            raise ValueError("action must be substitute or insert")
        transformers = require("transformers", "augment")
        self.model, self.action, self.aug_p, self.top_k = model, action, aug_p, top_k
        self.name = f"fill-mask-{action}"
        self._fill = transformers.pipeline("fill-mask", model=model, tokenizer=model, top_k=top_k)
        self._mask = self._fill.tokenizer.mask_token

    def params(self) -> dict:
        return {"model": self.model, "action": self.action, "aug_p": self.aug_p, "top_k": self.top_k}

    def rewrite(self, text: str, rng: random.Random) -> str:
        words = text.split()
        if not words:
            return text
        n = max(1, round(self.aug_p * len(words)))
        for _ in range(n):
            i = rng.randrange(len(words) + (1 if self.action == "insert" else 0))
            original = words[i] if self.action == "substitute" else None
            trial = words[:i] + [self._mask] + words[i + (1 if self.action == "substitute" else 0) :]
            options = [c["token_str"].strip() for c in self._fill(" ".join(trial))]
            options = [o for o in options if o and o != original and not o.startswith("##")
                       and re.fullmatch(r"[\w'-]+", o)]
            if options:
                trial[i] = rng.choice(options)
                words = trial
        return " ".join(words)
