"""Relations between spans (coreference and other links): the mention-pair model and its scores.

A project links the regions of a ``<Labels>`` control with ``<Relations>``. An answer is :class:`Links`: the
spans, sorted by position, and ``(from, to, label)`` links between their indices. The model scores ordered
pairs of mentions at most :data:`MAX_DISTANCE` mentions apart: a softmax over the relation labels and "none",
on the two mentions' vectors (their product and cosine, from the frozen encoder) and on what coreference
systems have long relied on: exact and head-word string match, containment, pronouns, the mentions' labels,
and their distance. For each pair the surer direction is kept.

A relation whose annotated links join mentions of one span label (coreference) is decoded into consistent
chains (:func:`decode_chains`): each mention links to at most one earlier mention, the best-scored one whose chain
it may join; a chain never holds two names that share no word ("Anna Berg" and "Tom Hale") nor pronouns of
different gender or number ("she" and "he"), so a pronoun joins one chain.

Their scores are in :mod:`labelloop.relation_scores`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from labelloop.arrays import check_shapes, save_arrays, softmax
from labelloop.errors import ModelError
from labelloop.spans import Span

MAX_DISTANCE = 12  # mentions apart: pairs further apart are never linked
PRONOUNS = frozenset(
    "i me my mine myself you your yours yourself he him his himself she her hers herself it its itself we us our "
    "ours ourselves they them their theirs themselves this that these those who whom whose which".split())
# Which pronouns can't share a chain: those of different gender or number ("you", "who", "this": any).
AGREEMENT = {**dict.fromkeys("he him his himself".split(), "he"), **dict.fromkeys("she her hers herself".split(), "she"),
             **dict.fromkeys("it its itself".split(), "it"),
             **dict.fromkeys("they them their theirs themselves".split(), "they"),
             **dict.fromkeys("i me my mine myself".split(), "i"), **dict.fromkeys("we us our ours ourselves".split(), "we")}
_NOT_NAME = frozenset("the a an this that these those mr mrs ms dr prof professor sir madam".split())
PRONOUN_FLOOR = 0.1  # the least link probability at which a pronoun takes an antecedent that agrees with it
CHAIN_SHARE = 0.9  # a relation is decoded into chains when this share of its links join mentions of one label
_DISTANCES = (1, 2, 3, 5, 8, MAX_DISTANCE)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Links:
    """An answer for a ``<Relations>`` control: spans sorted by position and links between their indices."""

    spans: tuple[Span, ...]
    links: tuple[tuple[int, int, str], ...]


@dataclass(frozen=True)
class Link:
    """A predicted link from span ``source`` to span ``target`` (indices into the task's spans)."""

    source: int
    target: int
    label: str
    score: float


def mention_vectors(vectors: np.ndarray, offsets: np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """(n_spans, hidden): the mean vector of the tokens inside each span (zeros when none is)."""
    out = np.zeros((len(spans), vectors.shape[1]), dtype=np.float32)
    real = offsets[:, 1] > offsets[:, 0]
    for k, s in enumerate(spans):
        inside = real & (offsets[:, 0] < s.end) & (offsets[:, 1] > s.start)
        if inside.any():
            out[k] = vectors[inside].mean(axis=0)
    return out


def candidate_pairs(n: int) -> list[tuple[int, int]]:
    """Ordered pairs ``(i, j)``, ``i != j``, at most :data:`MAX_DISTANCE` mentions apart."""
    return [(i, j) for i in range(n) for j in range(max(0, i - MAX_DISTANCE), min(n, i + MAX_DISTANCE + 1)) if i != j]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def pair_width(hidden: int, n_span_labels: int) -> int:
    """How many features :func:`pair_features` gives a pair, for an encoder ``hidden`` wide."""
    return hidden + 9 + len(_DISTANCES) + n_span_labels * n_span_labels


def pair_features(text: str, spans: Sequence[Span], vectors: np.ndarray, pairs: Sequence[tuple[int, int]],
                  span_labels: Sequence[str]) -> np.ndarray:
    """(n_pairs, hidden + extras) features of each ordered pair of mentions."""
    hidden = vectors.shape[1]
    n_labels = len(span_labels)
    out = np.zeros((len(pairs), pair_width(hidden, n_labels)), dtype=np.float32)
    if not pairs:
        return out
    norms = np.linalg.norm(vectors, axis=1) + 1e-9
    unit = vectors / norms[:, None]
    words = [_words(text[s.start:s.end]) for s in spans]
    index = {label: k for k, label in enumerate(span_labels)}
    for row, (i, j) in enumerate(pairs):
        a, b = words[i], words[j]
        out[row, :hidden] = unit[i] * unit[j]
        f = out[row, hidden:]
        f[0] = float(unit[i] @ unit[j])
        f[1] = float(bool(a) and a == b)
        f[2] = float(bool(a) and bool(b) and a[-1] == b[-1])
        f[3] = float(bool(a) and bool(b) and (" ".join(a) in " ".join(b) or " ".join(b) in " ".join(a)))
        f[4] = float(len(a) == 1 and a[0] in PRONOUNS)
        f[5] = float(len(b) == 1 and b[0] in PRONOUNS)
        f[6] = float(spans[i].label == spans[j].label)
        f[7] = float(i < j)
        f[8] = np.log1p(abs(spans[j].start - spans[i].end) if i < j else abs(spans[i].start - spans[j].end)) / 8
        f[9 + next(k for k, d in enumerate(_DISTANCES) if abs(i - j) <= d)] = 1.0
        if spans[i].label in index and spans[j].label in index:
            f[9 + len(_DISTANCES) + index[spans[i].label] * n_labels + index[spans[j].label]] = 1.0
    return out


@dataclass
class LinksModel:
    """A softmax over ``("none", *labels)`` for each ordered pair of mentions."""

    labels: tuple[str, ...]  # relation labels
    span_labels: tuple[str, ...]  # the linked <Labels> control's labels (the label-pair features)
    weight: np.ndarray  # (n_features, 1 + n_labels)
    bias: np.ndarray  # (1 + n_labels,)
    trained_on: int = 0
    chain_labels: tuple[str, ...] = ()  # relations decoded into chains (coreference)
    agreement: dict[str, str] | None = None  # word -> the pronouns its mentions take ("mr" -> "he"), learned

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(features, dtype=np.float64) @ self.weight + self.bias)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LinksModel:
        k = 1 + len(meta["labels"])
        check_shapes(arrays, {"weight": (None, k), "bias": (k,)})
        return cls(tuple(meta["labels"]), tuple(meta["span_labels"]), arrays["weight"], arrays["bias"],
                   int(meta.get("trained_on", 0)), tuple(meta.get("chain_labels", ())),
                   {str(k): str(v) for k, v in dict(meta.get("agreement", {})).items()})

    @classmethod
    def fit(cls, features: Sequence[np.ndarray], targets: Sequence[np.ndarray], labels: Sequence[str],
            span_labels: Sequence[str], *, epochs: int = 200, lr: float = 0.05, trained_on: int = 0,
            chain_labels: Sequence[str] = (), agreement: dict[str, str] | None = None) -> LinksModel:
        """Train on each task's pair features and targets (0: none, k: ``labels[k - 1]``); "none" is
        down-weighted by class frequency, so a handful of links is not drowned by the pairs without one."""
        import torch

        k = 1 + len(labels)
        x_all = [f for f in features if len(f)]
        if not x_all:
            raise ModelError("no pair of mentions to learn links from: annotate tasks with two or more spans")
        x = torch.as_tensor(np.concatenate(x_all), dtype=torch.float32)
        y = torch.as_tensor(np.concatenate([t for t in targets if len(t)]), dtype=torch.long)
        counts = torch.bincount(y, minlength=k).float()
        class_weight = torch.where(counts > 0, (counts.sum() / counts.clamp(min=1.0)).sqrt(), torch.zeros(k))
        layer = torch.nn.Linear(x.shape[1], k)
        optimizer = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=1e-4)
        for _ in range(epochs):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(layer(x), y, weight=class_weight).backward()
            optimizer.step()
        return cls(tuple(labels), tuple(span_labels), layer.weight.detach().numpy().T.copy(),
                   layer.bias.detach().numpy().copy(), trained_on=trained_on, chain_labels=tuple(chain_labels),
                   agreement=dict(agreement or {}))


class Linker:
    """A :class:`LinksModel` behind the text protocol: ``predict_links(texts, spans)``, ``fit(texts, answers)``."""

    def __init__(self, model: LinksModel, encode: Callable[[list[str]], list]) -> None:
        self.model = model
        self.encode = encode
        self.labels = model.labels
        self.trained_on = model.trained_on

    saved_as: ClassVar[str] = "links"

    def saved(self, folder: Path, stem: str) -> dict:
        return save_arrays(folder, stem, self.model, type=self.saved_as, span_labels=list(self.model.span_labels),
                           chain_labels=list(self.model.chain_labels), agreement=dict(self.model.agreement or {}))

    @classmethod
    def restore(cls, features: Any, meta: dict, arrays: dict[str, np.ndarray]) -> Linker:
        return cls(LinksModel.from_arrays(meta, arrays), features.encode)

    @staticmethod
    def width(features: Any, meta: dict) -> int:
        """The width of its pair features on the encoder of ``features``."""
        return pair_width(features.hidden_size, len(meta.get("span_labels", ())))

    def predict_links(self, texts: list[str], spans: list[list[Span]]) -> list[tuple[list[Link], np.ndarray]]:
        """Per text: its links (the surer direction of each pair) and each candidate pair's probabilities."""
        out = []
        for text, task_spans, enc in zip(texts, spans, self.encode(texts), strict=True):
            pairs = candidate_pairs(len(task_spans))
            vectors = mention_vectors(enc.vectors, enc.offsets, task_spans)
            probs = self.model.predict_proba(pair_features(text, task_spans, vectors, pairs, self.model.span_labels))
            chained = [k + 1 for k, label in enumerate(self.labels) if label in self.model.chain_labels]
            rest = probs.copy()
            rest[:, chained] = 0.0  # those are decoded below, into chains
            links = decode(pairs, rest, self.labels)
            for k in chained:
                links += decode_chains(text, task_spans, pairs, probs, k, self.labels[k - 1],
                                       agreement=self.model.agreement)
            out.append((sorted(links, key=lambda x: (x.source, x.target)), probs))
        return out

    def fit(self, texts: list[str], answers: list[Links]) -> Linker:
        return Linker(fit_links(self.encode, texts, answers, self.labels, self.model.span_labels), self.encode)


def decode(pairs: Sequence[tuple[int, int]], probs: np.ndarray, labels: Sequence[str]) -> list[Link]:
    """A link for each pair whose most likely class is a relation; of ``(i, j)`` and ``(j, i)`` with the same
    label, only the surer one."""
    best: dict[tuple[int, int, str], Link] = {}
    for (i, j), p in zip(pairs, probs, strict=True):
        k = int(p.argmax())
        if k == 0:
            continue
        key = (min(i, j), max(i, j), labels[k - 1])
        if key not in best or p[k] > best[key].score:
            best[key] = Link(i, j, labels[k - 1], float(p[k]))
    return sorted(best.values(), key=lambda link: (link.source, link.target))


def _mention(text: str, agreement: dict[str, str] | None = None) -> tuple[str | None, frozenset[str]]:
    """A mention's pronoun agreement class (None: unknown; a name's from the ``agreement`` its words learned), and
    its name words (empty: not a name)."""
    words = _words(text)
    if len(words) == 1 and words[0] in PRONOUNS:
        return AGREEMENT.get(words[0], "any"), frozenset()
    learned = {agreement[w] for w in words if agreement and w in agreement}
    if len(learned) == 1:
        return learned.pop(), _name_words(text, words)
    return None, _name_words(text, words)


def _name_words(text: str, words: list[str]) -> frozenset[str]:
    """The words of a name ("Dr. Anna Berg": anna, berg); empty for a description ("the engineer", "The
    auditor")."""
    if not text[:1].isupper() or (words and words[0] in _NOT_NAME and not any(w[:1].isupper() for w in
                                                                              text.split()[1:])):
        return frozenset()
    return frozenset(w for w in words if w not in _NOT_NAME)


def decode_chains(text: str, spans: Sequence[Span], pairs: Sequence[tuple[int, int]], probs: np.ndarray, k: int,
                  label: str, *, agreement: dict[str, str] | None = None) -> list[Link]:
    """Links of relation ``k`` (column of ``probs``) that make consistent chains: mention by mention, in text
    order, a link to the best-scored earlier mention (scored in either direction, and likelier than no link)
    whose chain it can join. Chains can't join when they would hold two names that share no word, pronouns that
    disagree ("she", "he"; a name takes the pronouns its words took in the annotations, ``agreement``), or
    mentions of different span labels."""
    score: dict[tuple[int, int], float] = {}
    likely: set[tuple[int, int]] = set()  # pairs whose likeliest class is this link, in either direction
    for (i, j), p in zip(pairs, probs, strict=True):
        key = (min(i, j), max(i, j))
        score[key] = max(score.get(key, 0.0), float(p[k]))
        if p[k] >= p.max():
            likely.add(key)
    parent = list(range(len(spans)))
    kinds = [_mention(text[s.start:s.end], agreement) for s in spans]
    names = [[n] if n else [] for _, n in kinds]
    agree = [{a} - {"any"} if a else set() for a, _ in kinds]
    span_label = [{s.label} for s in spans]

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def joins(a: int, b: int) -> bool:
        return (len(agree[a] | agree[b]) <= 1 and len(span_label[a] | span_label[b]) <= 1
                and all(x & y for x in names[a] for y in names[b]))

    links = []
    for j in range(len(spans)):
        words = _words(text[spans[j].start:spans[j].end])
        pronoun = len(words) == 1 and words[0] in PRONOUNS
        # A pronoun stands for something: it takes its best antecedent that agrees, even a less likely one.
        candidates = [i for i in range(j) if (i, j) in likely or (pronoun and score.get((i, j), 0.0) >= PRONOUN_FLOOR)]
        for i in sorted(candidates, key=lambda i: (-score[(i, j)], j - i)):
            a, b = root(i), root(j)
            if a != b and joins(a, b):
                parent[b] = a
                names[a] += names[b]
                agree[a] |= agree[b]
                span_label[a] |= span_label[b]
                links.append(Link(j, i, label, score[(i, j)]))
                break
    return links


def agreement_lexicon(texts: Sequence[str], answers: Sequence[Links], labels: Sequence[str], *,
                      min_count: int = 2, share: float = 0.9) -> dict[str, str]:
    """The pronouns that mentions with a word take, from the annotated chains of ``labels``: a word (a first
    name, a title such as "Ms.") seen at least ``min_count`` times in chains with pronouns of one class, and
    ``share`` of the time with that class."""
    seen: dict[str, dict[str, int]] = {}
    for text, answer in zip(texts, answers, strict=True):
        for chain in chains(len(answer.spans), [x for x in answer.links if x[2] in labels]):
            mentions = [_words(text[answer.spans[m].start:answer.spans[m].end]) for m in chain]
            classes = {AGREEMENT[w[0]] for w in mentions if len(w) == 1 and w[0] in AGREEMENT}
            if len(classes) != 1:
                continue
            (cls,) = classes
            for words in mentions:
                if not (len(words) == 1 and words[0] in PRONOUNS):
                    for w in set(words):
                        seen.setdefault(w, {}).setdefault(cls, 0)
                        seen[w][cls] += 1
    out = {}
    for word, counts in seen.items():
        cls, n = max(counts.items(), key=lambda kv: kv[1])
        if n >= min_count and n >= share * sum(counts.values()):
            out[word] = cls
    return out


def chain_labels(answers: Sequence[Links], labels: Sequence[str]) -> tuple[str, ...]:
    """The relation labels whose annotated links join mentions of one span label, nearly always: coreference,
    decoded into chains (a relation between different kinds of mention, "works for", is not)."""
    same: dict[str, list[bool]] = {}
    for answer in answers:
        for i, j, label in answer.links:
            same.setdefault(label, []).append(answer.spans[i].label == answer.spans[j].label)
    return tuple(x for x in labels if same.get(x) and np.mean(same[x]) >= CHAIN_SHARE)


def fit_links(encode: Callable[[list[str]], list], texts: list[str], answers: list[Links], labels: Sequence[str],
              span_labels: Sequence[str]) -> LinksModel:
    """A :class:`LinksModel` from annotated spans and links (a pair without a link is a "none" example)."""
    index = {label: k + 1 for k, label in enumerate(labels)}
    features, targets = [], []
    for text, answer, enc in zip(texts, answers, encode(texts), strict=True):
        pairs = candidate_pairs(len(answer.spans))
        gold = {(i, j): index[label] for i, j, label in answer.links if label in index}
        vectors = mention_vectors(enc.vectors, enc.offsets, answer.spans)
        features.append(pair_features(text, answer.spans, vectors, pairs, span_labels))
        targets.append(np.asarray([gold.get(p, 0) for p in pairs], dtype=np.int64))
    chained = chain_labels(answers, labels)
    return LinksModel.fit(features, targets, labels, span_labels, trained_on=len(texts), chain_labels=chained,
                          agreement=agreement_lexicon(texts, answers, chained))


def chains(n: int, links: Sequence[tuple[int, int, str]]) -> list[set[int]]:
    """The connected components of ``n`` mentions under ``links`` (singletons included)."""
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in links:
        parent[root(i)] = root(j)
    groups: dict[int, set[int]] = {}
    for m in range(n):
        groups.setdefault(root(m), set()).add(m)
    return list(groups.values())
