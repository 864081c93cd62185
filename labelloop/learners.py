"""The learners the active-learning simulation replays, each over one simulated project (:class:`Pool`).

- ``head``: the backend's linear head on frozen encoder vectors, retrained after every batch.
- ``self``: the head with self-training: refit once on the labels plus the unlabeled pool items it labels
  with probability >= 0.9 (pseudo-labels), to measure whether the backend should do it.
- ``setfit``: :class:`labelloop.models.SetFitClassifier` (contrastive fine-tuning of the encoder plus a head).
- ``finetune``: a full fine-tune of the encoder, run exactly as the backend runs it
  (:func:`labelloop.serving.ladder.finetune_config` in a ``labelloop.finetune.launch`` process).
- ``auto``: the ladder as the backend runs it. A share of the queue is audit tasks (random, never trained
  on); the head serves and retrains after every batch; a fine-tune starts at ``finetune_at`` training labels
  (every label with :data:`~labelloop.serving.ladder.MIN_PER_LABEL` examples) and again as labels double; the
  fine-tuned classifier is judged against the serving model on the labeled audit items
  (:func:`labelloop.audit.judge`) and, once promoted, serves as a head on its features retrained every batch.
  One difference: the backend fine-tunes in the background while annotation goes on; here the labels wait.

``setfit`` and ``finetune`` train for minutes on CPU, so they train on a sparse schedule (the seed size,
then doubling: 25, 50, 100, 200, 400 labels); between two trainings, strategies pick with the last model.
Every learner answers ``fit(labeled, unlabeled) -> predict`` where ``labeled``, ``unlabeled`` (the rest of
the pool, never the test items) and the argument of ``predict`` are indices into the pool and ``predict``
returns class probabilities.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labelloop.audit import judge
from labelloop.errors import ModelError
from labelloop.models import ChoicesModel, SetFitClassifier, TransformerModel

LEARNERS = ("head", "self", "setfit", "finetune", "auto")
DENSE = ("head", "self", "auto")  # cheap enough to retrain after every batch; the others train on a sparse schedule
Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class Pool:
    """The simulated project: its texts, their frozen-encoder vectors, gold class indices, the zero-shot
    head the backend starts from, and the encoder the heavier learners fine-tune (a name or a path)."""

    texts: list[str]
    x: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]
    prior: ChoicesModel
    base_model: str
    workdir: Path

    def texts_at(self, ids: np.ndarray) -> list[str]:
        return [self.texts[i] for i in ids]


def _head_predict(model: ChoicesModel, x: np.ndarray) -> Predict:
    return lambda ids: model.predict_proba(x[ids])


def _text_predict(model, pool: Pool) -> Predict:
    return lambda ids: model.predict_proba(pool.texts_at(ids))


class HeadLearner:
    name = "head"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def fit(self, labeled: np.ndarray, unlabeled: np.ndarray | None = None) -> Predict:
        return _head_predict(self.pool.prior.fit(self.pool.x[labeled], self.pool.y[labeled]), self.pool.x)


class SelfTrainingLearner:
    name = "self"

    def __init__(self, pool: Pool, threshold: float = 0.9) -> None:
        self.pool = pool
        self.threshold = threshold

    def fit(self, labeled: np.ndarray, unlabeled: np.ndarray | None = None) -> Predict:
        pool = self.pool
        model = pool.prior.fit(pool.x[labeled], pool.y[labeled])
        if unlabeled is not None and len(unlabeled):
            probs = model.predict_proba(pool.x[unlabeled])
            sure = probs.max(axis=1) >= self.threshold
            if sure.any():
                x = np.concatenate([pool.x[labeled], pool.x[unlabeled[sure]]])
                y = np.concatenate([pool.y[labeled], probs[sure].argmax(axis=1)])
                model = pool.prior.fit(x, y)
        return _head_predict(model, pool.x)


class SetFitLearner:
    name = "setfit"

    def __init__(self, pool: Pool, *, seed: int = 0) -> None:
        self.pool = pool
        self.classifier = SetFitClassifier(pool.base_model, pool.labels, seed=seed)
        self.head = HeadLearner(pool)

    def fit(self, labeled: np.ndarray, unlabeled: np.ndarray | None = None) -> Predict:
        if len(set(self.pool.y[labeled].tolist())) < 2:  # one label seen: nothing to contrast
            return self.head.fit(labeled)
        return _text_predict(self.classifier.fit(self.pool.texts_at(labeled), self.pool.y[labeled]), self.pool)


def finetune(pool: Pool, labeled: np.ndarray, name: str, method: str = "full") -> TransformerModel:
    """The backend's fine-tune (``full`` or ``setfit``) of ``pool.base_model`` on the labeled texts, in its own
    process, loaded."""
    from labelloop.finetune.registry import RunRegistry
    from labelloop.jsonl import write_jsonl
    from labelloop.serving.ladder import finetune_config

    home = Path(tempfile.mkdtemp(prefix="finetune-", dir=pool.workdir))
    try:
        train_file = home / "train.jsonl"
        write_jsonl(train_file, [{"text": pool.texts[i], "label": pool.labels[pool.y[i]]} for i in labeled])
        run = RunRegistry(home).create(finetune_config(len(labeled), train_file, base_model=pool.base_model,
                                                       method=method), name=name)
        done = subprocess.run([sys.executable, "-m", "labelloop.finetune.launch", str(run.folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                              env={**os.environ, "TQDM_DISABLE": "1"})
        if done.returncode != 0:
            tail = (run.folder / "log.txt").read_text(errors="replace")[-2000:] if (run.folder / "log.txt").exists() else ""
            raise ModelError(f"the simulated fine-tune on {len(labeled)} labels failed:\n{tail}")
        model = TransformerModel(run.model_dir, pool.labels)  # weights now in memory
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return model


def _has_every_label(pool: Pool, ids: np.ndarray, at_least: int) -> bool:
    counts = np.bincount(pool.y[ids], minlength=len(pool.labels))
    return bool(counts.min() >= at_least)


class FinetuneLearner:
    name = "finetune"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.head = HeadLearner(pool)
        self.fits = 0
        self.model: TransformerModel | None = None

    def fit(self, labeled: np.ndarray, unlabeled: np.ndarray | None = None) -> Predict:
        if not _has_every_label(self.pool, labeled, 1):  # a fine-tune can't serve labels it never saw
            self.model = None
            return self.head.fit(labeled)
        self.fits += 1
        self.model = finetune(self.pool, labeled, f"simulated-{self.fits}")
        return _text_predict(self.model, self.pool)

    def mc_predict(self, ids: np.ndarray) -> np.ndarray | None:
        """Monte Carlo dropout probabilities of the last fine-tune, for BALD (None: no fine-tune yet)."""
        return self.model.mc_proba(self.pool.texts_at(ids)) if self.model is not None else None


@dataclass
class LadderEvent:
    """Something the simulated ladder did: a fine-tune started, or the gate's verdict on one."""

    labels: int
    what: str  # finetune | promote | refuse | hold
    detail: str = ""

    def to_dict(self) -> dict:
        return {"labels": self.labels, "what": self.what, "detail": self.detail}


@dataclass
class LadderLearner:
    """The ladder as the backend runs it (see the module's docstring)."""

    pool: Pool
    audit: np.ndarray  # bool per pool item: an audit task
    finetune_at: int = 100
    setfit_below: int = 400
    min_audit: int = 30
    alpha: float = 0.05
    min_per_label: int = 2
    events: list[LadderEvent] = field(default_factory=list)
    name = "auto"

    def __post_init__(self) -> None:
        self._tuned: tuple[TransformerModel, np.ndarray] | None = None  # serving fine-tune and its features
        self._challenger: tuple[TransformerModel, int] | None = None  # held, with its training size
        self._last = 0  # training labels of the last fine-tune

    def fit(self, labeled: np.ndarray, unlabeled: np.ndarray | None = None) -> Predict:
        pool = self.pool
        train, audit = labeled[~self.audit[labeled]], labeled[self.audit[labeled]]
        if self._tuned is None:
            champion = _head_predict(pool.prior.fit(pool.x[train], pool.y[train]), pool.x)
        else:
            model, features = self._tuned
            head = ChoicesModel.from_classifier(model).fit(features[train], pool.y[train])
            champion = _head_predict(head, features)
        due = max(self.finetune_at, 2 * self._last) if self._last else self.finetune_at
        if len(train) >= due and _has_every_label(pool, train, self.min_per_label):
            self._last = len(train)
            method = "setfit" if len(train) < self.setfit_below else "full"
            self._challenger = (finetune(pool, train, f"ladder-{len(train)}", method), len(train))
            self.events.append(LadderEvent(len(labeled), "finetune", f"{method} on {len(train)} training labels"))
        if self._challenger is None:
            return champion
        model, size = self._challenger
        gold = pool.y[audit]
        evidence = judge("serving", f"fine-tune@{size}", champion(audit).argmax(axis=1) == gold,
                         model.predict_proba(pool.texts_at(audit)).argmax(axis=1) == gold,
                         min_audit=self.min_audit, alpha=self.alpha)
        if evidence.verdict != "hold" or not self.events or self.events[-1].what != "hold":
            self.events.append(LadderEvent(len(labeled), evidence.verdict, evidence.reason))
        if evidence.verdict == "refuse":
            self._challenger = None
        elif evidence.verdict == "promote":
            self._challenger = None
            features = model.features(pool.texts)
            self._tuned = (model, features)
            head = ChoicesModel.from_classifier(model).fit(features[train], pool.y[train])
            return _head_predict(head, features)
        return champion


def make_learner(name: str, pool: Pool, rng: np.random.Generator, *, audit_share: float = 0.1,
                 finetune_at: int = 100, min_audit: int = 30, setfit_below: int = 400, seed: int = 0):
    """A fresh learner for one repeat of the simulation."""
    if name == "head":
        return HeadLearner(pool)
    if name == "self":
        return SelfTrainingLearner(pool)
    if name == "setfit":
        return SetFitLearner(pool, seed=seed)
    if name == "finetune":
        return FinetuneLearner(pool)
    if name == "auto":
        return LadderLearner(pool, rng.random(len(pool.texts)) < audit_share, finetune_at=finetune_at,
                             setfit_below=setfit_below, min_audit=min_audit)
    raise ValueError(f"unknown learner {name!r}: use one of {', '.join(LEARNERS)}")
