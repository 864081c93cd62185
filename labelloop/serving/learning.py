"""When a project trains and what a training does: the one place that queues trainings (after webhooks, on the
timer, when a background fine-tune ends), and the training itself: retrain the head on the latest annotations,
then let the ladder step (settle finished fine-tunes at the gate, start the next one when due). The training
worker runs it; nothing else trains."""

from __future__ import annotations

import logging
import threading

from labelloop.errors import LabelLoopError
from labelloop.labeling.tasks import ANNOTATION_EVENTS, DELETE_EVENTS
from labelloop.serving.ladder import Ladder
from labelloop.serving.store import Store
from labelloop.serving.training import Trainer

log = logging.getLogger(__name__)


class Learning:
    """The head's trainer and the ladder, run one after the other for a project."""

    def __init__(self, store: Store, trainer: Trainer, ladder: Ladder, wake: threading.Event, *,
                 retrain_every: int = 1) -> None:
        """``retrain_every``: new annotations of a project that queue its training (0: only a lead's *Train*, the
        timer and finished fine-tunes do)."""
        self.store = store
        self.trainer = trainer
        self.ladder = ladder
        self.wake = wake  # set when a training is queued, so the worker starts it at once
        self.retrain_every = retrain_every

    def fit(self, project_id: int, *, force: bool = False) -> str | None:
        """Train on the project's latest annotations, then climb the ladder; returns the new model_version, or
        None. Unchanged training data trains nothing unless ``force`` (a lead pressed *Train*)."""
        version = self.trainer.fit(project_id, force=force)
        try:
            changed = self.ladder.step(project_id)
        except LabelLoopError as e:  # the head trained; a fine-tune problem must not undo that
            log.warning("project %s: the learning ladder could not step: %s", project_id, e)
            return version
        if changed is None and version is None and self.ladder.reordered(project_id):
            # A gate opened: its disagreements must reach the front of Label Studio's queue, and Label Studio
            # takes new scores only with a new model_version.
            version = self.trainer.fit(project_id, force=True)
        return changed or version

    def after_event(self, project_id: int, action: str, *, new_annotations: int = 0) -> bool:
        """Queue a training if a webhook's ``action`` calls for one (``new_annotations``: annotations of the
        project not trained on yet, after it); whether it did. A lead's *Train* always trains; annotations once
        ``retrain_every`` new ones are in; a deletion whenever retraining follows annotations."""
        queued = (action == "START_TRAINING"
                  or (action in ANNOTATION_EVENTS and self.retrain_every > 0 and new_annotations >= self.retrain_every)
                  or (action in DELETE_EVENTS and self.retrain_every > 0))
        if queued:
            self.request(project_id, action)
        return queued

    def on_timer(self) -> None:
        """The worker's retraining timer: queue a training for each project with annotations not trained on."""
        for project_id in self.store.projects_with_new_annotations():
            self.request(project_id, "timer")

    def request(self, project_id: int, reason: str) -> None:
        """Queue a training of the project (coalesced with one already queued) and wake the worker."""
        self.store.request_training(project_id, reason)
        self.wake.set()

    def finetunes_finished(self) -> None:
        """Queue a training for each project whose background fine-tune has ended, so the gate opens on it."""
        for finetune in self.store.finetunes():
            # Ones at the gate already wait for disagreement labels, whose webhooks queue trainings themselves.
            if (not finetune.done and self.store.gate(finetune.project_id, finetune.run_id) is None
                    and self.ladder.run_ended(finetune)):
                self.request(finetune.project_id, "fine-tune finished")
