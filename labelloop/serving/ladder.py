"""The learning ladder: zero-shot (or the LLM), then a head retrained after each annotation, then a fine-tuned
encoder with a head that keeps retraining on it; each rung above the head promoted only through the gate.
Below ``LABELLOOP_SETFIT_BELOW`` training labels the encoder is tuned with SetFit, from there fully fine-tuned
(where each measured better; README).

:class:`Ladder` runs in the training worker, after each training and on its timer. With
``LABELLOOP_FINETUNE=auto`` it starts a full fine-tune of the encoder in a background process (low CPU
priority; the GPU when there is one) once ``LABELLOOP_FINETUNE_AT`` training labels are in and every label
has examples, then again each time the labels double. A finished fine-tune is the challenger: it is judged
against the serving champion on the same audit items (:func:`labelloop.audit.judge`) and promoted only when
it is better beyond the noise. A challenger that is ahead but not yet significant, or judged on too small an
audit split, is held and judged again as audit annotations arrive, until the next fine-tune supersedes it.
Every fine-tune, promotion, refusal and hold is recorded with its evidence (:meth:`Store.decisions`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from labelloop.audit import Evidence, judge
from labelloop.errors import LabelLoopError
from labelloop.finetune.config import RunConfig
from labelloop.finetune.registry import RunRegistry
from labelloop.labeling.kinds import export_value
from labelloop.labeling.schema import ControlSpec, TaskSchema
from labelloop.models import Features, TransformerModel, TunedHead
from labelloop.serving.annotations import ProjectAnnotations
from labelloop.serving.predictors import ModelPredictor
from labelloop.serving.store import Finetune, Store
from labelloop.serving.versions import VersionRegistry
from labelloop.settings import LabelLoopSettings

log = logging.getLogger(__name__)

MIN_PER_LABEL = 2  # a fine-tune needs every label: a model that never saw one can't serve the control


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


def _has_setfit() -> bool:
    import importlib.util

    if importlib.util.find_spec("setfit") is None:
        log.info("the setfit package is not installed (pip install 'labelloop[setfit]'): the ladder fully "
                 "fine-tunes instead")
        return False
    return True


class Ladder:
    """Starts background fine-tunes of a project's encoder and promotes them through the gate."""

    def __init__(self, store: Store, registry: VersionRegistry, annotations: ProjectAnnotations, features: Features,
                 schema: Callable[[int], TaskSchema], settings: LabelLoopSettings, *,
                 runs: RunRegistry | None = None,
                 run_config: Callable[..., RunConfig] = finetune_config) -> None:
        """``run_config(n_labels, train_file, base_model=..., method=...)`` describes each fine-tune (default:
        :func:`finetune_config`)."""
        self.store = store
        self.registry = registry
        self.annotations = annotations
        self.features = features
        self.schema = schema
        self.settings = settings
        self._runs = runs
        self.run_config = run_config

    @property
    def runs(self) -> RunRegistry:
        if self._runs is None:
            self._runs = RunRegistry(self.store.home)
        return self._runs

    # -- the gate ---------------------------------------------------------------------------------

    def audit_items(self, project_id: int, spec: ControlSpec) -> tuple[list[str], np.ndarray]:
        """Texts of the annotated audit tasks and their gold class indices into ``spec.labels``."""
        pairs = self.annotations.pairs(spec, self.annotations.audit_records(project_id))
        labels = list(spec.labels)
        kept = [(t, export_value(spec, a)) for t, a in pairs]
        kept = [(t, v) for t, v in kept if v in labels]
        return [t for t, _ in kept], np.array([labels.index(v) for _, v in kept], dtype=int)

    def judge(self, project_id: int, challenger, challenger_name: str) -> Evidence:
        """Evidence of ``challenger`` (a model with ``predict_proba(texts)``) against what serves now."""
        schema = self.schema(project_id)
        spec = schema.single_choice()
        if spec is None:
            raise LabelLoopError(f"project {project_id} has no single-choice classification control to judge on")
        texts, gold = self.audit_items(project_id, spec)
        champion = self.registry.current(project_id)
        source = ModelPredictor(champion, self.features, self.settings.strategy)
        if texts:
            champion_right = source.class_probs(spec, texts).argmax(axis=1) == gold
            challenger_right = challenger.predict_proba(texts).argmax(axis=1) == gold
        else:
            champion_right = challenger_right = np.zeros(0, dtype=bool)
        return judge(champion.version, challenger_name, champion_right, challenger_right,
                     min_audit=self.settings.min_audit, alpha=self.settings.gate_alpha)

    def judge_run(self, project_id: int, model_dir: Path, task: str) -> Evidence | None:
        """Evidence of a run's model against what serves now; None when the gate can't judge it (not a
        single-choice classifier of this project's gated control)."""
        spec = self.schema(project_id).single_choice()
        if spec is None or task != "classification":
            return None
        return self.judge(project_id, TransformerModel(model_dir, spec.labels), Path(model_dir).parent.name)

    # -- the schedule -----------------------------------------------------------------------------

    def step(self, project_id: int) -> str | None:
        """Judge finished fine-tunes and start the next one when due; returns a newly promoted version."""
        if self.settings.finetune == "off":
            return None
        schema = self.schema(project_id)
        spec = schema.single_choice()
        if spec is None:
            return None
        promoted = None
        for finetune in self.store.finetunes(project_id):
            if not finetune.done:
                promoted = self._settle(project_id, schema, finetune) or promoted
        pairs = self.annotations.pairs(spec, self.annotations.training_records(project_id))
        if self.next_due(project_id, pairs) is None and not any(
                not f.done and self._status(f) in ("queued", "running") for f in self.store.finetunes(project_id)):
            self._start(project_id, spec, pairs)
        return promoted

    def next_due(self, project_id: int, pairs: list | None = None) -> str | None:
        """Why no fine-tune is due now (None: one is due)."""
        if self.settings.finetune == "off":
            return "fine-tuning is off (LABELLOOP_FINETUNE=off)"
        spec = self.schema(project_id).single_choice()
        if spec is None:
            return "the project has no single-choice classification control"
        if pairs is None:
            pairs = self.annotations.pairs(spec, self.annotations.training_records(project_id))
        started = [f.labels for f in self.store.finetunes(project_id)]
        at = max(self.settings.finetune_at, 2 * max(started)) if started else self.settings.finetune_at
        if len(pairs) < at:
            return f"at {at} training labels ({len(pairs)} now)"
        counts = {label: 0 for label in spec.labels}
        for _, answer in pairs:
            value = export_value(spec, answer)
            if value in counts:
                counts[value] += 1
        missing = [label for label, n in counts.items() if n < MIN_PER_LABEL]
        if missing:
            return f"when every label has {MIN_PER_LABEL} training examples (missing: {', '.join(missing[:5])})"
        return None

    def run_ended(self, finetune: Finetune) -> bool:
        """Whether a fine-tune's run is over (succeeded, failed, cancelled, or gone) and waits to be settled."""
        return self._status(finetune) not in ("queued", "running")

    def _status(self, finetune: Finetune) -> str:
        try:
            return self.runs.get(finetune.run_id).status
        except LabelLoopError:
            return "missing"

    def _start(self, project_id: int, spec: ControlSpec, pairs: list) -> None:
        from labelloop.finetune.launch import start_run
        from labelloop.jsonl import write_jsonl

        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self.store.home / "ladder" / str(project_id) / f"{stamp}-{len(pairs)}"
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(folder / "train.jsonl", [{"text": t, "label": export_value(spec, a)} for t, a in pairs])
        for finetune in self.store.finetunes(project_id):
            if not finetune.done:  # a held challenger gives way to one trained on twice the labels
                self.store.update_finetune(project_id, finetune.run_id, done=True)
                self.store.add_decision(project_id, "superseded", None, finetune.run_id,
                                        {"reason": f"a fine-tune on {len(pairs)} labels replaces it"})
        method = "setfit" if len(pairs) < self.settings.setfit_below and _has_setfit() else "full"
        config = dataclasses.replace(self.run_config(len(pairs), folder / "train.jsonl", base_model=self.settings.model,
                                                     method=method), project=project_id)
        name = f"ladder-{self.settings.instance or 'p'}{project_id}-{len(pairs)}-{stamp}"
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        run = start_run(self.runs, config, name=name, niceness=10)
        self.store.add_finetune(project_id, run.run_id, len(pairs))
        self.store.add_decision(project_id, "finetune", self.registry.current(project_id).version, run.run_id,
                                {"labels": len(pairs), "epochs": config.epochs, "method": config.method})
        log.info("project %s: fine-tuning the encoder (%s) on %d labels in the background (run %s)", project_id,
                 config.method, len(pairs), run.run_id)

    def _settle(self, project_id: int, schema: TaskSchema, finetune: Finetune) -> str | None:
        status = self._status(finetune)
        if status in ("queued", "running"):
            return None
        champion = self.registry.current(project_id).version
        if status != "succeeded":
            error = self.runs.get(finetune.run_id).error if status != "missing" else "its run folder is gone"
            self.store.update_finetune(project_id, finetune.run_id, done=True)
            self.store.add_decision(project_id, "failed", champion, finetune.run_id, {"reason": f"{status}: {error}"})
            log.warning("project %s: fine-tune %s %s: %s", project_id, finetune.run_id, status, error)
            return None
        n_audit = len(self.annotations.audit_records(project_id))
        if finetune.judged_on == n_audit + 1:
            return None  # held, and no new audit annotation to judge it on
        run = self.runs.get(finetune.run_id)
        try:
            evidence = self.judge_run(project_id, run.model_dir, run.task)
            if evidence is None:
                raise LabelLoopError(f"run {run.run_id} does not classify the project's single-choice control")
        except LabelLoopError as e:
            self.store.update_finetune(project_id, finetune.run_id, done=True)
            self.store.add_decision(project_id, "failed", champion, finetune.run_id, {"reason": str(e)})
            return None
        self.store.update_finetune(project_id, finetune.run_id, judged_on=n_audit + 1,
                                   done=evidence.verdict != "hold")
        version = None
        if evidence.verdict == "promote":
            version = self.registry.promote(project_id, schema, run.model_dir, task="classification",
                                            encoder=self.features.encoder.name, n_annotations=finetune.labels)
            self.runs.record_promotion(project_id, finetune.run_id, version)
        self.store.add_decision(project_id, evidence.verdict, champion, version or finetune.run_id,
                                {**evidence.to_dict(), "run": finetune.run_id})
        log.info("project %s: fine-tune %s %s: %s", project_id, finetune.run_id,
                 {"promote": "promoted", "refuse": "refused", "hold": "held"}[evidence.verdict], evidence.reason)
        return version

    # -- what the dashboard shows -----------------------------------------------------------------

    def status(self, project_id: int) -> dict:
        """``{"rung", "model_version", "since", "next_finetune", "finetune_running", "audit": n}``."""
        bundle = self.registry.current(project_id)
        record = self.registry.record(project_id, bundle.version)
        spec = self.schema(project_id).single_choice()
        model = bundle.model(spec) if spec is not None else None
        rung = ("zero-shot" if record is None else
                "fine-tuned encoder + head" if isinstance(model, (TunedHead, TransformerModel)) else "head")
        running = [f.run_id for f in self.store.finetunes(project_id) if not f.done
                   and self._status(f) in ("queued", "running")]
        held = [f.run_id for f in self.store.finetunes(project_id) if not f.done and f.run_id not in running]
        why = self.next_due(project_id)
        return {"rung": rung, "model_version": bundle.version, "since": record.created_at if record else None,
                "next_finetune": "now" if why is None else why, "finetune_running": running, "held": held,
                "audit": len(self.annotations.audit_records(project_id))}
