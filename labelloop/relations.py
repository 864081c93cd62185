"""Relations between spans (coreference and other links): the mention-pair model and its scores.

A project links the regions of a ``<Labels>`` control with ``<Relations>``. An answer is :class:`Links`: the
spans, sorted by position, and ``(from, to, label)`` links between their indices. The model scores ordered
pairs of mentions at most :data:`MAX_DISTANCE` mentions apart: a softmax over the relation labels and "none",
on the two mentions' vectors (their product and cosine, from the frozen encoder) and on what coreference
systems have long relied on: exact and head-word string match, containment, pronouns, the mentions' labels,
and their distance. For each pair the surer direction is kept.

Scores: link precision, recall and F1 (a link counts when its two spans and label match; for symmetric
relations either direction counts), and for coreference chains (the connected components of the links)
MUC and B³, computed on the gold mentions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from labelloop.errors import ModelError
from labelloop.spans import Span

MAX_DISTANCE = 12  # mentions apart: pairs further apart are never linked
PRONOUNS = frozenset(
    "i me my mine myself you your yours yourself he him his himself she her hers herself it its itself we us our "
    "ours ourselves they them their theirs themselves this that these those who whom whose which".split())
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

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = np.asarray(features, dtype=np.float64) @ self.weight + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LinksModel:
        from labelloop.models import _check_shapes

        k = 1 + len(meta["labels"])
        _check_shapes(arrays, {"weight": (None, k), "bias": (k,)})
        return cls(tuple(meta["labels"]), tuple(meta["span_labels"]), arrays["weight"], arrays["bias"],
                   int(meta.get("trained_on", 0)))

    @classmethod
    def fit(cls, features: Sequence[np.ndarray], targets: Sequence[np.ndarray], labels: Sequence[str],
            span_labels: Sequence[str], *, epochs: int = 200, lr: float = 0.05, trained_on: int = 0) -> LinksModel:
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
                   layer.bias.detach().numpy().copy(), trained_on=trained_on)


class Linker:
    """A :class:`LinksModel` behind the text protocol: ``predict_links(texts, spans)``, ``fit(texts, answers)``."""

    def __init__(self, model: LinksModel, encode: Callable[[list[str]], list]) -> None:
        self.model = model
        self.encode = encode
        self.labels = model.labels
        self.trained_on = model.trained_on

    def predict_links(self, texts: list[str], spans: list[list[Span]]) -> list[tuple[list[Link], np.ndarray]]:
        """Per text: its links (the surer direction of each pair) and each candidate pair's probabilities."""
        out = []
        for text, task_spans, enc in zip(texts, spans, self.encode(texts)):
            pairs = candidate_pairs(len(task_spans))
            vectors = mention_vectors(enc.vectors, enc.offsets, task_spans)
            probs = self.model.predict_proba(pair_features(text, task_spans, vectors, pairs, self.model.span_labels))
            out.append((decode(pairs, probs, self.labels), probs))
        return out

    def fit(self, texts: list[str], answers: list[Links]) -> Linker:
        return Linker(fit_links(self.encode, texts, answers, self.labels, self.model.span_labels), self.encode)


def decode(pairs: Sequence[tuple[int, int]], probs: np.ndarray, labels: Sequence[str]) -> list[Link]:
    """A link for each pair whose most likely class is a relation; of ``(i, j)`` and ``(j, i)`` with the same
    label, only the surer one."""
    best: dict[tuple[int, int, str], Link] = {}
    for (i, j), p in zip(pairs, probs):
        k = int(p.argmax())
        if k == 0:
            continue
        key = (min(i, j), max(i, j), labels[k - 1])
        if key not in best or p[k] > best[key].score:
            best[key] = Link(i, j, labels[k - 1], float(p[k]))
    return sorted(best.values(), key=lambda link: (link.source, link.target))


def fit_links(encode: Callable[[list[str]], list], texts: list[str], answers: list[Links], labels: Sequence[str],
              span_labels: Sequence[str]) -> LinksModel:
    """A :class:`LinksModel` from annotated spans and links (a pair without a link is a "none" example)."""
    index = {label: k + 1 for k, label in enumerate(labels)}
    features, targets = [], []
    for text, answer, enc in zip(texts, answers, encode(texts)):
        pairs = candidate_pairs(len(answer.spans))
        gold = {(i, j): index[label] for i, j, label in answer.links if label in index}
        vectors = mention_vectors(enc.vectors, enc.offsets, answer.spans)
        features.append(pair_features(text, answer.spans, vectors, pairs, span_labels))
        targets.append(np.asarray([gold.get(p, 0) for p in pairs], dtype=np.int64))
    return LinksModel.fit(features, targets, labels, span_labels, trained_on=len(texts))


# -- scores -------------------------------------------------------------------------------------------


def link_f1(gold: Sequence[Links], predicted: Sequence[Sequence[tuple[int, int, str]]], *,
            symmetric: bool = True) -> dict:
    """Precision, recall and F1 of links on gold spans; ``symmetric``: a link and its reverse are one."""
    def keyed(links):
        return {(min(i, j), max(i, j), label) if symmetric else (i, j, label) for i, j, label in links}

    tp = fp = fn = 0
    for g, p in zip(gold, predicted):
        g_set, p_set = keyed(g.links), keyed(p)
        tp, fp, fn = tp + len(g_set & p_set), fp + len(p_set - g_set), fn + len(g_set - p_set)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold_links": tp + fn, "predicted_links": tp + fp}


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


def _muc_side(keys: Sequence[list[set[int]]], responses: Sequence[list[set[int]]]) -> tuple[int, int]:
    num = den = 0
    for key, response in zip(keys, responses):
        where = {m: k for k, chain in enumerate(response) for m in chain}
        for chain in key:
            num += len(chain) - len({where[m] for m in chain})
            den += len(chain) - 1
    return num, den


def coreference_scores(gold: Sequence[Links], predicted: Sequence[Sequence[tuple[int, int, str]]]) -> dict:
    """MUC and B³ precision, recall and F1 of the chains the links make, on the gold mentions."""
    g = [chains(len(x.spans), x.links) for x in gold]
    p = [chains(len(x.spans), links) for x, links in zip(gold, predicted)]

    def f1(precision: float, recall: float) -> float:
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    r_num, r_den = _muc_side(g, p)
    p_num, p_den = _muc_side(p, g)
    muc_r, muc_p = (r_num / r_den if r_den else 0.0), (p_num / p_den if p_den else 0.0)
    b_p, b_r, mentions = 0.0, 0.0, 0
    for key, response in zip(g, p):
        in_key = {m: c for c in key for m in c}
        in_response = {m: c for c in response for m in c}
        for m in in_key:
            overlap = len(in_key[m] & in_response[m])
            b_p += overlap / len(in_response[m])
            b_r += overlap / len(in_key[m])
            mentions += 1
    b_p, b_r = (b_p / mentions, b_r / mentions) if mentions else (0.0, 0.0)
    return {"muc": {"precision": muc_p, "recall": muc_r, "f1": f1(muc_p, muc_r)},
            "b_cubed": {"precision": b_p, "recall": b_r, "f1": f1(b_p, b_r)}, "mentions": mentions}
