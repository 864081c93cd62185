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
    votes = {t: labels[int(np.argmax(p))] for t, p in zip(texts, probs) if float(np.max(p)) >= threshold}
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

    def fit(self, votes: np.ndarray) -> LabelModel:
        """Learn from the vote matrix (n_texts, n_lfs), starting from majority vote."""
        q = self._majority(votes)
        for _ in range(self.iterations):
            self._m_step(votes, q)
            new = self.predict_proba(votes)
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
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=1, keepdims=True)

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
    """Probabilistic labels from votes: ``probs`` (n_texts, n_labels), which combiner made them, and both
    combiners' accuracy on the gold-labelled texts the functions cover (None without enough gold)."""

    probs: np.ndarray
    combiner: str
    label_model_accuracy: float | None
    majority_accuracy: float | None
    n_gold: int


def combine_votes(votes: np.ndarray, n_labels: int, gold: np.ndarray | None = None, *,
                  min_gold: int = 20) -> Combined:
    """The label model's probabilities, or majority vote's where annotated texts show it is the better one.

    ``gold`` holds a label index per text, :data:`ABSTAIN` where there is none. With at least ``min_gold``
    covered gold texts, the combiner that is right more often on them is used, so the result is never worse
    than majority vote of the same functions on what annotators labelled.
    """
    model = LabelModel(n_labels).fit(votes)
    lm, mv = model.predict_proba(votes), majority_vote(votes, n_labels)
    judged = (votes != ABSTAIN).any(axis=1) & (gold != ABSTAIN) if gold is not None else np.zeros(len(votes), bool)
    n = int(judged.sum())
    if n < min_gold or gold is None:
        return Combined(lm, "label model", None, None, n)
    lm_acc = float((lm[judged].argmax(axis=1) == gold[judged]).mean())
    mv_acc = float((mv[judged].argmax(axis=1) == gold[judged]).mean())
    return Combined(lm if lm_acc >= mv_acc else mv, "label model" if lm_acc >= mv_acc else "majority vote",
                    lm_acc, mv_acc, n)


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
                     for f, g in zip(found, gold) if g is not None]
            hits = sum(len(f & g) for f, g in pairs)
            predicted, true = sum(len(f) for f, _ in pairs), sum(len(g) for _, g in pairs)
            row.update(n_gold=len(pairs), precision=hits / predicted if predicted else None,
                       recall=hits / true if true else None)
        rows.append(row)
    return rows
