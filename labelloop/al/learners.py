"""The learners the active-learning simulation replays, each over one simulated project (:class:`Pool`).

- ``head``: the backend's linear head on frozen encoder vectors, retrained after every batch.
- ``self``: the head with self-training: refit once on the labels plus the unlabeled pool items it labels
  with probability >= 0.9 (pseudo-labels), to measure whether the backend should do it.
- ``setfit``: :class:`labelloop.models.SetFitClassifier` (contrastive fine-tuning of the encoder plus a head).
- ``finetune``: a full fine-tune of the encoder, run exactly as the backend runs it
  (:func:`labelloop.policy.finetune_config` in a ``labelloop.finetune.launch`` process).
- ``auto``: the ladder as the backend runs it, through the same policy (:mod:`labelloop.policy`) and gate
  (:mod:`labelloop.gate`). A share of the queue is audit tasks (random, never trained on); the head serves and
  retrains after every batch; a fine-tune starts when :func:`~labelloop.policy.finetune_due` says so; the
  champion and the challenger then predict every audit item, their disagreements are labelled first (in a
  random order), and the betting test promotes, stops or refuses the challenger; once promoted it serves as a
  head on its features retrained every batch, watched by the rollback test. One difference: the backend
  fine-tunes in the background while annotation goes on; here the labels wait.

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

from labelloop.errors import ModelError
from labelloop.gate import decide
from labelloop.models import ChoicesModel, SetFitClassifier, TransformerModel
from labelloop.policy import CARRY_FRAMES, finetune_due, finetune_method, new_round_due, pseudo_labels

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
            sure, pseudo = pseudo_labels(model.predict_proba(pool.x[unlabeled]), pool.y[labeled],
                                         threshold=self.threshold)
            if len(sure):
                model = pool.prior.fit(np.concatenate([pool.x[labeled], pool.x[unlabeled[sure]]]),
                                       np.concatenate([pool.y[labeled], pseudo]))
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
    from labelloop.data.jsonl import write_jsonl
    from labelloop.finetune.registry import RunRegistry
    from labelloop.policy import finetune_config

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
    what: str  # finetune | superseded | promote | futility | refuse | hold | carry | rollback | keep | new frame
    detail: str = ""
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"labels": self.labels, "what": self.what, "detail": self.detail,
                **({"evidence": self.evidence} if self.evidence else {})}


@dataclass(frozen=True)
class GateSettings:
    """The gate's settings, as the backend's ``LABELLOOP_GATE_*``."""

    alpha: float = 0.05
    min_gain: float = 0.01
    budget: int = 40


@dataclass
class _SimulatedGate:
    """A challenger before the simulated gate: both models' classes on every audit item, frozen when it opened."""

    model: TransformerModel
    size: int
    audit_ids: np.ndarray  # over every frame it was judged on
    champion: np.ndarray
    challenger: np.ndarray
    opened_at: int  # labels when it opened
    champion_model: Predict  # the frozen champion, to predict a fresh frame when its evidence carries over
    state: str = "open"
    counted: set[int] = field(default_factory=set)  # audit items whose labels the promotion used
    seen: int = -1
    judged: set[int] | None = None  # labelled audit items at the last verdict; None: not judged yet
    frames: int = 1  # audit frames it has been judged on


@dataclass
class LadderLearner:
    """The ladder as the backend runs it (see the module's docstring): the policy of :mod:`labelloop.policy` and
    the gate of :mod:`labelloop.gate`, with the gate's disagreements served first (:meth:`serve_first`)."""

    pool: Pool
    share: float  # the audit share
    finetune_at: int = 100
    setfit_below: int = 400
    gate: GateSettings = field(default_factory=GateSettings)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    events: list[LadderEvent] = field(default_factory=list)
    name = "auto"

    def __post_init__(self) -> None:
        self._tuned: tuple[TransformerModel, np.ndarray] | None = None  # serving fine-tune and its features
        self._gate: _SimulatedGate | None = None
        self._started: list[int] = []  # training labels each fine-tune started at
        self._labelable: np.ndarray = np.zeros(0, dtype=int)  # the pool items annotators can be served (never the test set)
        self.audit: np.ndarray = np.zeros(0, dtype=bool)  # bool per pool item: the current audit frame
        self.audit_since = 0  # labels when the current audit frame was drawn
        self._draw_frame(np.zeros(0, dtype=int))

    def _draw_frame(self, labeled: np.ndarray) -> None:
        """A fresh audit frame over the items not labelled yet, with its own random order (:mod:`labelloop.audit`):
        ``audit`` (bool per pool item) marks it, and the labels so far train from now on."""
        n = len(self.pool.texts)
        self.audit = (self.rng.random(n) < self.share) & ~np.isin(np.arange(n), labeled)
        self._rank = self.rng.random(n)  # the frame's random order
        self.audit_since = len(labeled)

    def _settle(self, labeled: np.ndarray, at: int) -> None:
        """The gate is closed or carried: as the backend, once nothing is judged or watched on the frame, its labels
        join training and a fresh frame is drawn (:func:`labelloop.policy.new_round_due`); a carried gate goes on
        over it."""
        gate = self._gate
        if gate is None or not new_round_due([gate.state]):
            return
        released = int(self.audit[labeled].sum())
        self._gate = None
        self._draw_frame(labeled)
        self.events.append(LadderEvent(at, "new frame", f"{released} audit labels join training"))
        if gate.state != "carried":
            return
        new = np.intersect1d(np.flatnonzero(self.audit), self._labelable)
        ours = gate.champion_model(new).argmax(axis=1)
        theirs = gate.model.predict_proba(self.pool.texts_at(new)).argmax(axis=1) if len(new) else ours
        if not (ours != theirs).any():
            self.events.append(LadderEvent(at, "refuse", f"its evidence could not carry over: the fresh audit frame "
                                                         f"({len(new)} tasks) holds no disagreement"))
            return
        gate.audit_ids = np.concatenate([gate.audit_ids, new])
        gate.champion = np.concatenate([gate.champion, ours])
        gate.challenger = np.concatenate([gate.challenger, theirs])
        gate.state = "open"
        gate.frames += 1
        self._gate = gate

    def serve_first(self, candidates: np.ndarray) -> np.ndarray:
        """Of the unlabeled pool items ``candidates``, the gate's disagreements, in their random order."""
        gate = self._gate
        if gate is None or gate.state == "closed":
            return np.zeros(0, dtype=int)
        wanted = gate.audit_ids[gate.champion != gate.challenger]
        front = np.intersect1d(candidates, wanted)
        return front[np.argsort(self._rank[front], kind="stable")]

    def fit(self, labeled: np.ndarray, unlabeled: np.ndarray | None = None) -> Predict:
        pool = self.pool
        self._labelable = labeled if unlabeled is None else np.union1d(labeled, unlabeled)
        train, audit = labeled[~self.audit[labeled]], labeled[self.audit[labeled]]
        champion = self._champion(train)
        if self._gate is not None:
            champion = self._judge(labeled, train, audit) or champion
        counts = {label: int(n) for label, n in zip(pool.labels, np.bincount(pool.y[train], minlength=len(pool.labels)), strict=True)}
        if finetune_due(len(train), self._started, counts, finetune_at=self.finetune_at) is None:
            self._started.append(len(train))
            method = finetune_method(len(train), setfit_below=self.setfit_below)
            model = finetune(pool, train, f"ladder-{len(train)}", method)
            self.events.append(LadderEvent(len(labeled), "finetune", f"{method} on {len(train)} training labels"))
            if self._gate is not None:  # as the backend: one challenger per frame; the frame's labels then train
                if self._gate.state == "open":
                    self.events.append(LadderEvent(len(labeled), "superseded",
                                                   f"a fine-tune on {len(train)} labels replaces "
                                                   f"fine-tune@{self._gate.size}"))
                elif self._gate.state == "watch":
                    self.events.append(LadderEvent(len(labeled), "keep",
                                                   f"the rollback watch ends: a fine-tune on {len(train)} labels "
                                                   f"is ready to be judged against fine-tune@{self._gate.size}"))
                self._gate.state = "closed"
                self._settle(labeled, len(labeled))
            # The frame is the audit tasks annotators can be served: the project's, never the held-out test texts.
            audit_ids = np.intersect1d(np.flatnonzero(self.audit), self._labelable)
            self._gate = _SimulatedGate(model, len(train), audit_ids, champion(audit_ids).argmax(axis=1),
                                        model.predict_proba(pool.texts_at(audit_ids)).argmax(axis=1), len(labeled),
                                        champion)
            champion = self._judge(labeled, train, audit) or champion
        return champion

    def _champion(self, train: np.ndarray) -> Predict:
        pool = self.pool
        if self._tuned is None:
            return _head_predict(pool.prior.fit(pool.x[train], pool.y[train]), pool.x)
        model, features = self._tuned
        return _head_predict(ChoicesModel.from_classifier(model).fit(features[train], pool.y[train]), features)

    def _judge(self, labeled: np.ndarray, train: np.ndarray, audit: np.ndarray) -> Predict | None:
        """The gate's verdict on the open challenger (or the rollback watch); a new champion when it changes.

        The backend judges after every annotation, and serves the disagreements in a random order: so the
        disagreement labels of a batch that came after the last verdict are judged one at a time in that order,
        and the first verdict stands (labels the batch brought past it count for the rollback watch)."""
        gate = self._gate
        assert gate is not None
        watch = gate.state == "watch"
        disagree = gate.champion != gate.challenger
        labelled = np.isin(gate.audit_ids, labeled)  # in any frame the gate was judged on
        usable = labelled & ~np.isin(gate.audit_ids, list(gate.counted) if watch else [])
        steps = [usable]
        if gate.judged is not None:
            new = usable & disagree & ~np.isin(gate.audit_ids, list(gate.judged))
            order = np.flatnonzero(new)[np.argsort(self._rank[gate.audit_ids[new]], kind="stable")]
            before = usable & ~new
            steps = []
            for position in order:
                before = before.copy()
                before[position] = True
                steps.append(before)
            steps = steps or [usable]
        for known in steps:
            evidence = self._evidence(gate, known, disagree, watch, unlabelled=~(known | (labelled & ~usable)))
            if evidence.verdict != "hold":
                break
        gate.judged = set(gate.audit_ids[known].tolist())
        unused = int((usable & ~known).sum())  # labels of this batch that came after the verdict
        at = len(labeled) - unused
        if evidence.verdict == "hold":
            if evidence.labels != gate.seen and gate.seen < 0:
                self.events.append(LadderEvent(at, "hold", evidence.reason, evidence.to_dict()))
            gate.seen = evidence.labels
            return None
        self.events.append(LadderEvent(at, evidence.verdict, evidence.reason,
                                       {**evidence.to_dict(), "labels_since_ready": at - gate.opened_at,
                                        "held_out": self._held_out(gate)}))
        if evidence.verdict == "promote":
            gate.state = "watch"
            gate.counted = gate.judged = set(gate.audit_ids[known].tolist())
            features = gate.model.features(self.pool.texts)
            self._tuned = (gate.model, features)
            return self._champion(train)
        gate.state = "carried" if evidence.verdict == "carry" else "closed"
        self._settle(labeled, at)
        if evidence.verdict == "rollback":
            self._tuned = None
            return self._champion(train)
        return None

    def _held_out(self, gate: _SimulatedGate) -> dict:
        """Both models' accuracy on the simulation's test texts (never served, so never judged on): what a
        verdict is checked against afterwards, never what it decides on."""
        test = np.setdiff1d(np.arange(len(self.pool.texts)), self._labelable)
        if not len(test):
            return {}
        gold = self.pool.y[test]
        champion = gate.champion_model(test).argmax(axis=1)
        challenger = gate.model.predict_proba(self.pool.texts_at(test)).argmax(axis=1)
        return {"n": int(len(test)), "champion": float((champion == gold).mean()),
                "challenger": float((challenger == gold).mean())}

    def _evidence(self, gate: _SimulatedGate, known: np.ndarray, disagree: np.ndarray, watch: bool,
                  unlabelled: np.ndarray):
        """:func:`labelloop.gate.decide` on the audit items ``known`` (masks over the gate's frame)."""
        gold = self.pool.y[gate.audit_ids]
        return decide(gate.champion[known] == gold[known], gate.challenger[known] == gold[known], disagree[known],
                      p_disagree=float(disagree.mean()) if len(disagree) else 0.0, frame=len(gate.audit_ids),
                      disagreements=int(disagree.sum()), remaining=int((disagree & unlabelled).sum()),
                      champion_version="serving", challenger_version=f"fine-tune@{gate.size}",
                      alpha=self.gate.alpha, min_gain=self.gate.min_gain, budget=self.gate.budget,
                      direction="rollback" if watch else "promote", carry=gate.frames < CARRY_FRAMES)


def make_learner(name: str, pool: Pool, rng: np.random.Generator, *, audit_share: float = 0.1,
                 finetune_at: int = 100, gate: GateSettings | None = None, setfit_below: int = 400, seed: int = 0):
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
        return LadderLearner(pool, audit_share, finetune_at=finetune_at,
                             setfit_below=setfit_below, gate=gate or GateSettings(), rng=rng)
    raise ValueError(f"unknown learner {name!r}: use one of {', '.join(LEARNERS)}")
