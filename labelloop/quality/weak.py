"""Weak supervision: labeling functions and a label model that turns their votes into probabilistic labels.

For entity spans, a :class:`~labelloop.spans.Gazetteer` built from the project's annotated mentions finds them again in new
texts, and :func:`span_lf_summary` reports each span source's coverage, precision and recall.

A labeling function (LF) looks at a text and votes for a label or abstains. :func:`apply_lfs` builds the
vote matrix ``L`` (n_texts, n_lfs), with :data:`ABSTAIN` (-1) where an LF abstains; :func:`lf_summary`
reports each LF's coverage, overlap, conflict and (against approved labels) accuracy; :class:`LabelModel`
learns how far to trust each LF and returns probabilities (n_texts, n_labels).

The label model is Dawid and Skene's (1979) EM over one confusion matrix per LF, rather than Snorkel's
``LabelModel``: it needs only numpy, learns per-class reliabilities (an LF that is right about "sport" and
noisy about "finance" is weighed accordingly), and fits in a few lines we can read and test. Snorkel's
package pins an older stack than ours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from labelloop.arrays import softmax
from labelloop.config import ConfigMixin
from labelloop.errors import ConfigError
from labelloop.spans import Span

ABSTAIN = -1


@dataclass(frozen=True)
class LabelingFunction:
    """A named vote: ``fn(text)`` returns a label name, or ``None`` to abstain."""

    name: str
    fn: Callable[[str], str | None]


def keyword_lf(label: str, keywords: Sequence[str], *, name: str | None = None) -> LabelingFunction:
    """Votes ``label`` when the text contains any of ``keywords`` as whole words (case-insensitive)."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in keywords) + r")\b", re.IGNORECASE)
    return LabelingFunction(name or f"keywords:{label}", lambda text: label if pattern.search(text) else None)


def regex_lf(label: str, pattern: str, *, name: str | None = None) -> LabelingFunction:
    """Votes ``label`` when the regular expression matches anywhere in the text."""
    compiled = re.compile(pattern)
    return LabelingFunction(name or f"regex:{label}", lambda text: label if compiled.search(text) else None)


def model_lf(name: str, predict_proba: Callable[[list[str]], np.ndarray], labels: Sequence[str], *,
             threshold: float = 0.8) -> LabelingFunction:
    """Votes a model's top label when its probability is at least ``threshold`` (the current model, an LLM)."""

    def vote(text: str) -> str | None:
        probs = predict_proba([text])[0]
        top = int(np.argmax(probs))
        return labels[top] if probs[top] >= threshold else None

    return LabelingFunction(name, vote)


def probs_lf(name: str, texts: Sequence[str], probs: np.ndarray, labels: Sequence[str], *,
             threshold: float = 0.8) -> LabelingFunction:
    """Like :func:`model_lf`, from probabilities computed beforehand for ``texts`` in one batch."""
    votes = {t: labels[int(np.argmax(p))] for t, p in zip(texts, probs, strict=True) if float(np.max(p)) >= threshold}
    return LabelingFunction(name, votes.get)


@dataclass
class WeakRules(ConfigMixin):
    """A project's labeling rules (a JSON or YAML file): keywords and regular expressions per label, and
    whether the LLM and the current model vote too, when at least ``threshold`` sure."""

    config_name = "labeling rules"

    keywords: dict[str, list[str]] = field(default_factory=dict, metadata={"help": "label -> words that vote for it"})
    regex: dict[str, list[str]] = field(default_factory=dict, metadata={"help": "label -> patterns that vote for it"})
    llm: bool = field(default=False, metadata={"help": "the LLM votes its label when sure enough"})
    model: bool = field(default=False, metadata={"help": "the backend's current model votes when sure enough"})
    threshold: float = field(default=0.8, metadata={"help": "probability at which the LLM or the model votes"})

    def labeling_functions(self, labels: Sequence[str]) -> list[LabelingFunction]:
        """The keyword and regex LFs; a rule for a label the project lacks is an error naming it."""
        lfs = []
        for kind, table in (("keywords", self.keywords), ("regex", self.regex)):
            for label, items in table.items():
                if label not in labels:
                    raise ConfigError(f"the {kind} rule for {label!r} names no label of the project ({', '.join(labels)})")
                if isinstance(items, str):
                    items = [items]
                if kind == "keywords":
                    lfs.append(keyword_lf(label, items))
                else:
                    for k, pattern in enumerate(items):
                        try:
                            lfs.append(regex_lf(label, pattern, name=f"regex:{label}:{k}"))
                        except re.error as e:
                            raise ConfigError(f"regex {pattern!r} for {label!r} is invalid: {e}") from e
        if not lfs and not (self.llm or self.model):
            raise ConfigError("the rules define no labeling function: add keywords or regex, or set llm/model true")
        return lfs


def apply_lfs(lfs: Sequence[LabelingFunction], texts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """The vote matrix (n_texts, n_lfs): label indices, :data:`ABSTAIN` where an LF abstains.

    A vote for a label outside ``labels`` is an error: it names the LF and the label.
    """
    index = {label: i for i, label in enumerate(labels)}
    votes = np.full((len(texts), len(lfs)), ABSTAIN, dtype=int)
    for j, lf in enumerate(lfs):
        for i, text in enumerate(texts):
            label = lf.fn(text)
            if label is None:
                continue
            if label not in index:
                raise ValueError(f"labeling function {lf.name!r} voted {label!r}, which is not one of {list(labels)}")
            votes[i, j] = index[label]
    return votes


def lf_summary(votes: np.ndarray, names: Sequence[str], gold: np.ndarray | None = None) -> list[dict]:
    """Per LF: ``coverage`` (share of texts it votes on), ``overlap`` (share where another LF votes too),
    ``conflict`` (share where another LF votes differently), and with ``gold`` (label indices, -1 unknown)
    ``accuracy`` on the labeled texts it votes on and ``n_gold``."""
    active = votes != ABSTAIN
    n = max(len(votes), 1)
    rows = []
    for j, name in enumerate(names):
        mine = active[:, j]
        others = np.delete(active, j, axis=1)
        other_votes = np.delete(votes, j, axis=1)
        disagree = (others & (other_votes != votes[:, [j]])).any(axis=1)
        row = {"lf": name, "coverage": float(mine.sum() / n), "overlap": float((mine & others.any(axis=1)).sum() / n),
               "conflict": float((mine & disagree).sum() / n)}
        if gold is not None:
            judged = mine & (gold != ABSTAIN)
            row["n_gold"] = int(judged.sum())
            row["accuracy"] = float((votes[judged, j] == gold[judged]).mean()) if judged.any() else None
        rows.append(row)
    return rows


class LabelModel:
    """Dawid-Skene EM: a class prior and, per LF, P(outcome | true class).

    With ``abstain="model"`` (the default) abstaining is an outcome like any vote, so a rule that only ever
    votes one label still says something when it stays silent: "no sports keyword" makes sport less likely.
    Without it (``"ignore"``, the classic crowd-worker model) such a rule carries no information and the model
    collapses on rule sets made of them. On crowd-style functions, whose abstentions do not depend on the
    class, both agree.
    """

    def __init__(self, n_labels: int, *, iterations: int = 100, smoothing: float = 0.1, tol: float = 1e-6,
                 abstain: str = "model") -> None:
        if n_labels < 2:
            raise ValueError("a label model needs at least two labels")
        if abstain not in ("model", "ignore"):
            raise ValueError("abstain must be 'model' or 'ignore'")
        self.k, self.iterations, self.smoothing, self.tol = n_labels, iterations, smoothing, tol
        self.abstain = abstain
        self.prior = np.full(n_labels, 1.0 / n_labels)
        self.confusion: np.ndarray | None = None  # (n_lfs, k true, k votes + 1 abstain)

    def fit(self, votes: np.ndarray, gold: np.ndarray | None = None) -> LabelModel:
        """Learn from the vote matrix (n_texts, n_lfs), starting from majority vote.

        ``gold`` (n_texts,) holds the annotated label index of a text, :data:`ABSTAIN` elsewhere: annotated
        texts keep their true class through EM (semi-supervised), which anchors each function's reliabilities
        where its votes alone can't (one function per label, no overlap: the unsupervised model is not
        identifiable there).
        """
        labelled = np.full(len(votes), ABSTAIN) if gold is None else np.asarray(gold)
        known = labelled != ABSTAIN
        truth = np.eye(self.k)[np.where(known, labelled, 0)] if known.any() else None
        q = self._majority(votes)
        if truth is not None:
            q[known] = truth[known]
        for _ in range(self.iterations):
            self._m_step(votes, q)
            new = self.predict_proba(votes)
            if truth is not None:
                new[known] = truth[known]
            done = np.abs(new - q).max() < self.tol
            q = new
            if done:
                break
        return self

    def predict_proba(self, votes: np.ndarray) -> np.ndarray:
        """Probabilities (n_texts, n_labels). With ``abstain="ignore"`` a text no LF voted on gets the prior."""
        if self.confusion is None:
            raise RuntimeError("call fit() first")
        log_p = np.tile(np.log(self.prior), (len(votes), 1))
        outcomes = self._outcomes(votes)
        for j in range(votes.shape[1]):
            seen = outcomes[:, j] >= 0
            log_p[seen] += np.log(self.confusion[j][:, outcomes[seen, j]]).T
        return softmax(log_p)

    def accuracies(self) -> np.ndarray:
        """Each LF's learned accuracy when it votes: P(vote = true class | it votes)."""
        if self.confusion is None:
            raise RuntimeError("call fit() first")
        out = []
        for c in self.confusion:
            joint = c[:, : self.k] * self.prior[:, None]  # P(true, vote), abstentions left out
            out.append(float(np.trace(joint) / joint.sum()))
        return np.array(out)

    def _outcomes(self, votes: np.ndarray) -> np.ndarray:
        """Votes as outcome indices: a label, ``k`` for an abstention, or -1 where abstentions are ignored."""
        return np.where(votes == ABSTAIN, self.k if self.abstain == "model" else -1, votes)

    def _majority(self, votes: np.ndarray) -> np.ndarray:
        counts = np.stack([(votes == c).sum(axis=1) for c in range(self.k)], axis=1).astype(float)
        counts[counts.sum(axis=1) == 0] = 1.0
        return counts / counts.sum(axis=1, keepdims=True)

    def _m_step(self, votes: np.ndarray, q: np.ndarray) -> None:
        self.prior = (q.sum(axis=0) + self.smoothing) / (q.sum() + self.k * self.smoothing)
        outcomes = self._outcomes(votes)
        confusion = np.empty((votes.shape[1], self.k, self.k + 1))
        for j in range(votes.shape[1]):
            counts = np.full((self.k, self.k + 1), self.smoothing)
            if self.abstain == "ignore":
                counts[:, self.k] = 1.0  # never used: abstentions are not looked up
            seen = outcomes[:, j] >= 0
            np.add.at(counts.T, outcomes[seen, j], q[seen])  # counts[true, outcome] += q(true)
            confusion[j] = counts / counts.sum(axis=1, keepdims=True)
        self.confusion = confusion


def majority_vote(votes: np.ndarray, n_labels: int) -> np.ndarray:
    """Probabilities (n_texts, n_labels) as the share of votes per label; uniform where nobody voted."""
    counts = np.stack([(votes == c).sum(axis=1) for c in range(n_labels)], axis=1).astype(float) + 1e-3
    return counts / counts.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Combined:
    """Probabilistic labels from votes: ``probs`` (n_texts, n_labels), which combiner made them and why, and both
    combiners' accuracy on the gold-labelled texts the functions cover, each scored by a label model that never
    saw that text's label (None without enough gold)."""

    probs: np.ndarray
    combiner: str
    label_model_accuracy: float | None
    majority_accuracy: float | None
    n_gold: int
    reason: str = ""


def overlap(votes: np.ndarray) -> float:
    """Share of the covered texts that two or more functions vote on: what an unsupervised label model learns
    the functions' reliabilities from (0 when no text is covered)."""
    voting = (votes != ABSTAIN).sum(axis=1)
    covered = int((voting > 0).sum())
    return float((voting > 1).sum() / covered) if covered else 0.0


MIN_OVERLAP = 0.1  # below this share of covered texts with 2+ votes, the votes alone can't identify the model


def combine_votes(votes: np.ndarray, n_labels: int, gold: np.ndarray | None = None, *,
                  min_gold: int = 20, folds: int = 5, seed: int = 0) -> Combined:
    """Probabilistic labels from the vote matrix (n_texts, n_lfs): the label model's, or majority vote's.

    ``gold`` holds the annotated label index per text, :data:`ABSTAIN` where there is none; the label model is
    fit with it (semi-supervised). With ``min_gold`` covered annotated texts, each combiner is scored on them by
    ``folds``-fold cross-fitting (the label model never sees the label of the text it is scored on) and the one
    right more often is used (majority vote on a tie), so the result is never worse than majority vote on what annotators labelled.
    With fewer, majority vote is used: a label model that agreement between the functions can't pin down (one
    list per label, lists that barely overlap: under :data:`MIN_OVERLAP` of the covered texts get two votes)
    collapses onto one label, and one that could be pinned down has nothing yet to show it is better. The
    ``reason`` says which.
    """
    gold_ = np.full(len(votes), ABSTAIN) if gold is None else np.asarray(gold)
    mv = majority_vote(votes, n_labels)
    judged = np.flatnonzero((votes != ABSTAIN).any(axis=1) & (gold_ != ABSTAIN))
    n = len(judged)
    if n < min_gold:
        shared = overlap(votes)
        why = (f"the functions overlap on {shared:.0%} of the texts they cover, too little for a label model to learn "
               "their reliabilities from their agreements" if shared < MIN_OVERLAP else
               f"the functions overlap on {shared:.0%} of the texts they cover")
        return Combined(mv, "majority vote", None, None, n,
                        f"{why}; {n} of those texts are annotated, and {min_gold} would let the annotations show "
                        "whether the label model does better")
    fold = np.random.default_rng(seed).permutation(n) % folds
    held_out = np.empty(n, dtype=int)
    for f in range(folds):
        test = judged[fold == f]
        train_gold = gold_.copy()
        train_gold[test] = ABSTAIN
        held_out[fold == f] = LabelModel(n_labels).fit(votes, train_gold).predict_proba(votes[test]).argmax(axis=1)
    lm = LabelModel(n_labels).fit(votes, gold_).predict_proba(votes)
    lm_acc = float((held_out == gold_[judged]).mean())
    mv_acc = float((mv[judged].argmax(axis=1) == gold_[judged]).mean())
    better = lm_acc > mv_acc  # a tie goes to the baseline
    return Combined(lm if better else mv, "label model" if better else "majority vote", lm_acc, mv_acc, n,
                    f"on {n} annotated texts: label model {lm_acc:.3f}, majority vote {mv_acc:.3f}")


def span_lf_summary(sources: dict[str, Sequence[Sequence[Span]]],
                    gold: Sequence[Sequence[Span] | None] | None = None) -> list[dict]:
    """Per span source (gazetteer, LLM, model): ``coverage`` (share of texts with a span), ``spans`` found and,
    against ``gold`` (None where a text is not annotated), exact-match ``precision`` and ``recall``."""
    rows = []
    for name, found in sources.items():
        n = max(len(found), 1)
        row: dict = {"lf": name, "coverage": sum(bool(f) for f in found) / n, "spans": sum(len(f) for f in found)}
        if gold is not None:
            pairs = [(set((s.start, s.end, s.label) for s in f), set((s.start, s.end, s.label) for s in g))
                     for f, g in zip(found, gold, strict=True) if g is not None]
            hits = sum(len(f & g) for f, g in pairs)
            predicted, true = sum(len(f) for f, _ in pairs), sum(len(g) for _, g in pairs)
            row.update(n_gold=len(pairs), precision=hits / predicted if predicted else None,
                       recall=hits / true if true else None)
        rows.append(row)
    return rows
