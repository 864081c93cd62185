"""The learning ladder's policy, as pure functions: when the next fine-tune is due, which method tunes the
encoder and the run that does it, which pseudo-labels self-training adds, and what a gate verdict means for what serves.

The backend's :class:`~labelloop.serving.ladder.Ladder` and the simulation's ``auto`` learner
(:class:`~labelloop.al.learners.LadderLearner`) both call these, so ``labelloop al simulate --learner auto``
measures the policy the backend runs. The gate's statistics live in :mod:`labelloop.gate`.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from labelloop.finetune.config import RunConfig

log = logging.getLogger(__name__)

MIN_PER_LABEL = 2  # a fine-tune needs every label: a model that never saw one can't serve the control
SELF_TRAINING_THRESHOLD = 0.9

# Audit frames one challenger may be judged on: a frame that runs out undecided carries its evidence over to the
# next (labelloop.gate) up to this many. Replayed on BBC News with frames of 150 (benchmarks/gate.py), 3 frames kept
# the power of carrying over without a cap for challengers 4.7 and 5.8 points better (1.00) and most of it for one
# 2.3 points better (0.87 against 1.00), and it keeps a challenger that rarely disagrees from turning the audit frame
# over with every batch for ever.
CARRY_FRAMES = 3

# Verdicts that settle a challenger; "hold" keeps judging it as disagreement labels come in.
FINAL_VERDICTS = frozenset({"promote", "futility", "refuse", "forced"})


def finetune_due(n_train: int, started: Sequence[int], label_counts: dict[str, int], *, finetune_at: int,
                 min_per_label: int = MIN_PER_LABEL) -> str | None:
    """Why no fine-tune is due at ``n_train`` training labels (None: one is due now).

    The first starts at ``finetune_at`` labels, the next each time the labels double (``started``: the label
    counts earlier fine-tunes started at), and only when every label has ``min_per_label`` examples
    (``label_counts``: training examples per label).
    """
    at = max(finetune_at, 2 * max(started)) if started else finetune_at
    if n_train < at:
        return f"at {at} training labels ({n_train} now)"
    missing = [label for label, n in label_counts.items() if n < min_per_label]
    if missing:
        return f"when every label has {min_per_label} training examples (missing: {', '.join(missing[:5])})"
    return None


def new_round_due(gate_states: Sequence[str]) -> bool:
    """Whether the audit frame has served: challengers were judged on it (``gate_states``: the state of each gate
    opened on the current round's frame) and none is judged or watched on it any more (``closed``, or ``carried``:
    its frame ran out undecided and its evidence goes on over the next). Its labels then join training and a fresh
    frame is drawn (:mod:`labelloop.audit`), so no gate label is wasted."""
    return bool(gate_states) and all(state in ("closed", "carried") for state in gate_states)


def finetune_method(n_train: int, *, setfit_below: int, has_setfit: bool = True) -> Literal["setfit", "full"]:
    """SetFit below ``setfit_below`` training labels (where it measured better), a full fine-tune from there."""
    return "setfit" if n_train < setfit_below and has_setfit else "full"


def pseudo_labels(probs: np.ndarray, targets: np.ndarray, *, threshold: float = SELF_TRAINING_THRESHOLD
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Self-training's additions: rows of ``probs`` (shape (n_unlabeled, n_classes)) the head labels with
    probability ``>= threshold``, and their classes. None when the annotated ``targets`` show fewer than two
    labels: a head that saw one label is sure of everything."""
    if len(probs) == 0 or len(np.unique(np.asarray(targets))) < 2:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    sure = np.flatnonzero(probs.max(axis=1) >= threshold)
    return sure, probs[sure].argmax(axis=1)


def finetune_config(n_labels: int, train_file: Path, *, base_model: str = "", method: str = "full") -> RunConfig:
    """The run the ladder starts for ``n_labels`` training labels. ``full``: full fine-tuning of the encoder (it
    beat LoRA on the packaged MiniLM), about 150 optimiser steps whatever the label count (3 to 20 epochs).
    ``setfit``: SetFit with 10 pairs per text, as measured against it (README)."""
    if method == "setfit":
        return RunConfig(task="classification", train_file=str(train_file), base_model=base_model, method="setfit",
                         epochs=1.0, batch_size=16, max_length=128, save_steps=10_000)
    batch = 16
    epochs = float(min(20, max(3, math.ceil(150 * batch / max(n_labels, 1)))))
    return RunConfig(task="classification", train_file=str(train_file), base_model=base_model, method="full",
                     epochs=epochs, batch_size=batch, learning_rate=5e-5, max_length=128, save_steps=10_000)


def has_setfit() -> bool:
    if importlib.util.find_spec("setfit") is None:
        log.info("the setfit package is not installed (pip install 'labelloop[setfit]'): the ladder fully "
                 "fine-tunes instead")
        return False
    return True
