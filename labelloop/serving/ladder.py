"""The learning ladder: zero-shot (or the LLM), then a head retrained after each annotation, then a fine-tuned
encoder with a head that keeps retraining on it; each rung above the head promoted only through the gate.
Below ``LABELLOOP_SETFIT_BELOW`` training labels the encoder is tuned with SetFit, from there fully fine-tuned
(where each measured better; README). When and how is decided by :mod:`labelloop.policy`, which the
simulation calls too.

:class:`Ladder` runs in the training worker, after each training and on its timer. With
``LABELLOOP_FINETUNE=auto`` it starts a fine-tune of the encoder in a background process (low CPU priority;
the GPU when there is one) once ``LABELLOOP_FINETUNE_AT`` training labels are in and every label has
examples, then again each time the labels double. A finished fine-tune is the challenger. The gate
(:mod:`labelloop.gate`) freezes the serving champion, lets both predict every audit task, and the audit tasks
where they disagree go to the front of the queue in a random order (:meth:`Ladder.serve_first`); each of their
labels updates the evidence, until the challenger is promoted, stopped for futility, or refused when its label
budget is spent; when the frame's disagreements run out first, its evidence carries over to the next frame.
After a promotion the same test watches the other way on new disagreement labels and rolls back to the champion
it replaced when that one proves better. One challenger is judged per audit frame: once it is settled (or gives
way to a newer one, or is carried over), the frame's labels join training and a fresh frame is drawn
(:mod:`labelloop.audit`). Every fine-tune, verdict, promotion, rollback and new frame is recorded once, with its
evidence (:meth:`Store.decisions`), and every promotion goes through :meth:`Ladder.promote`. Where the ladder
stands, for the dashboard and the CLI, is :func:`labelloop.serving.ladder_status.ladder_status`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelloop.audit import audit_key
from labelloop.errors import GateRefusedError, LabelLoopError
from labelloop.finetune.config import RunConfig
from labelloop.finetune.registry import RunRecord, RunRegistry
from labelloop.gate import GateEvidence, decide
from labelloop.labeling.kinds import export_value
from labelloop.labeling.schema import ControlSpec, TaskSchema
from labelloop.models import Features, TransformerModel
from labelloop.policy import (
    CARRY_FRAMES,
    FINAL_VERDICTS,
    MIN_PER_LABEL,
    finetune_config,
    finetune_due,
    finetune_method,
    has_setfit,
    new_round_due,
)
from labelloop.processes import alive, stop_groups
from labelloop.serving.annotations import ProjectAnnotations
from labelloop.serving.ladder_state import Finetune, Gate
from labelloop.serving.predictors import ModelPredictor
from labelloop.serving.store import Store
from labelloop.serving.versions import UNTRAINED_VERSION, VersionRegistry
from labelloop.settings import LabelLoopSettings

log = logging.getLogger(__name__)

__all__ = ["MIN_PER_LABEL", "Ladder"]


class Ladder:
    """Starts background fine-tunes of a project's encoder, judges them at the gate, promotes and rolls back."""

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
        self._children: dict[str, int] = {}  # run_id -> PID of the fine-tunes this process started
        self._reordered: set[int] = set()  # projects whose queue front changed (a gate opened) since asked

    @property
    def runs(self) -> RunRegistry:
        if self._runs is None:
            self._runs = RunRegistry(self.store.home)
        return self._runs

    # -- the gate ---------------------------------------------------------------------------------

    def open_gate(self, project_id: int, spec: ControlSpec, challenger: Any, name: str, run_id: str) -> Gate:
        """Freeze the serving champion and let it and ``challenger`` (``predict_proba(texts)``) predict every
        audit task: the frame the gate judges ``run_id`` on.

        One challenger per frame: one still judged gives way to this newer one (superseded), a rollback watch
        ends, and their frame's labels join training before a fresh frame is drawn for this one. So no label of
        the frame was served first for another pair of models, and the disagreements this gate counts are a
        uniform sample of its own."""
        for other in self.store.gates(project_id, states=("open", "carried", "watch")):
            if other.run_id == run_id:
                continue
            if other.state in ("open", "carried"):
                self._supersede(project_id, other.run_id, other.champion, f"{name} is judged in its place")
            else:
                self.store.update_gate(project_id, other.run_id, state="closed")
                self.store.add_decision(project_id, "keep", other.champion, other.promoted,
                                        {"reason": f"the rollback watch ends: {name} is ready to be judged against "
                                                   f"{other.promoted}", "run": other.run_id})
        self._next_round(project_id)
        tasks = self.annotations.audit_tasks(project_id, spec)
        frame = self.annotations.frame(project_id)
        champion = self.registry.current(project_id)
        texts = [t for _, t in tasks]
        if texts:
            ours = ModelPredictor(champion, self.features, self.settings.strategy).class_probs(spec, texts).argmax(1)
            theirs = np.asarray(challenger.predict_proba(texts)).argmax(axis=1)
        else:
            ours = theirs = np.zeros(0, dtype=int)
        self.store.open_gate(project_id, run_id, champion.version, name,
                             [(task_id, int(a), int(b)) for (task_id, _), a, b in zip(tasks, ours, theirs, strict=True)],
                             round=frame.round)
        gate = self.store.gate(project_id, run_id)
        assert gate is not None
        disagree = int((ours != theirs).sum())
        if disagree:
            self._reordered.add(project_id)
        log.info("project %s: the gate judges %s against %s: they disagree on %d of %d audit tasks, which go to the "
                 "front of the queue", project_id, name, champion.version, disagree, len(tasks))
        return gate

    def evidence(self, project_id: int, spec: ControlSpec, gate: Gate) -> GateEvidence:
        """The gate's verdict on ``gate`` from the audit labels so far (the rollback test for a promoted one);
        ``details["frames"]`` says how many audit frames it has been judged on."""
        items = self.store.gate_items(project_id, gate.run_id)
        answers = self.annotations.answers(project_id, spec, {i.task_id for i in items})
        labels = list(spec.labels)
        gold = {t: labels.index(v) for t, a in answers.items() if (v := export_value(spec, a)) in labels}
        watch = gate.state == "watch"
        counted = [i for i in items if i.task_id in gold and not (watch and i.before_promotion)]
        disagreements = sum(i.disagree for i in items)
        remaining = sum(i.disagree and i.task_id not in gold for i in items)
        frames = 1 + sum(d.action == "carry" and d.challenger == gate.run_id for d in self.store.decisions(project_id))
        evidence = decide(np.array([gold[i.task_id] == i.champion for i in counted], dtype=bool),
                      np.array([gold[i.task_id] == i.challenger for i in counted], dtype=bool),
                      np.array([i.disagree for i in counted], dtype=bool),
                      p_disagree=disagreements / len(items) if items else 0.0, frame=len(items),
                      disagreements=disagreements, remaining=remaining, champion_version=gate.champion,
                      challenger_version=gate.promoted or gate.challenger, alpha=self.settings.gate_alpha,
                      min_gain=self.settings.gate_min_gain, budget=self.settings.gate_budget,
                      direction="rollback" if watch else "promote", carry=frames < CARRY_FRAMES)
        evidence.details["frames"] = frames
        return evidence

    def serve_first(self, project_id: int) -> list[int]:
        """Unlabelled audit tasks where an open gate's (or a rollback watch's) two models disagree, in a uniformly
        random order: the queue serves them before anything else."""
        answered = {r.task_id for r in self.store.latest_annotations(project_id)}  # in this frame or one before
        frame = self.annotations.frame(project_id)
        out: dict[int, None] = {}
        for gate in self.store.gates(project_id, states=("open", "watch")):
            for item in self.store.gate_items(project_id, gate.run_id):
                if item.disagree and item.task_id not in answered:
                    out[item.task_id] = None
        return sorted(out, key=frame.rank)

    def served_first(self, project_id: int, round: int | None = None) -> tuple[set[int], float]:
        """The audit tasks the gate of an audit round (by default the current one) put at the front of the queue
        (its disagreements), and their share of its frame: annotators label these before the others, so an accuracy
        over the annotated audit tasks weighs them by that share, not by how many got labelled
        (:func:`labelloop.gate.stratified_accuracy`)."""
        front: set[int] = set()
        frame: set[int] = set()
        wanted = self.annotations.frame(project_id).round if round is None else round
        for gate in self.store.gates(project_id):
            if gate.round != wanted:
                continue
            for item in self.store.gate_items(project_id, gate.run_id):
                frame.add(item.task_id)
                if item.disagree:
                    front.add(item.task_id)
        return front, len(front) / len(frame) if frame else 0.0

    def gate_evidence(self, project_id: int, run_id: str) -> GateEvidence | None:
        """Where the gate stands on a run, without opening a gate for it (None: it has none)."""
        spec = self.schema(project_id).single_choice()
        gate = self.store.gate(project_id, run_id)
        return self.evidence(project_id, spec, gate) if spec is not None and gate is not None else None

    def reordered(self, project_id: int) -> bool:
        """Whether a gate opened for the project since the last call (its queue has a new front)."""
        if project_id in self._reordered:
            self._reordered.discard(project_id)
            return True
        return False

    def judge_run(self, project_id: int, run: RunRecord) -> GateEvidence | None:
        """Where the gate stands on a run (opening its gate, and entering it as a challenger, if it has none);
        None when the gate can't judge it (not a classifier of the project's single-choice control)."""
        spec = self.schema(project_id).single_choice()
        if spec is None or run.task != "classification":
            return None
        gate = self.store.gate(project_id, run.run_id)
        if gate is None or gate.state == "closed":
            if not any(f.run_id == run.run_id for f in self.store.finetunes(project_id)):
                self.store.add_finetune(project_id, run.run_id, int(run.summary.get("train_examples", 0) or 0))
            self.store.update_finetune(project_id, run.run_id, done=False)
            gate = self.open_gate(project_id, spec, TransformerModel(run.model_dir, spec.labels), run.run_id,
                                  run.run_id)
        return self.evidence(project_id, spec, gate)

    def promote_run(self, project_id: int, run: RunRecord, *, force: bool = False, by: str = "lead"
                    ) -> tuple[str, GateEvidence | None, bool]:
        """A lead's promotion of a succeeded run: the gate judges it first (:meth:`judge_run`). Refused or still
        judging, it is not promoted unless ``force``: the refusal is recorded and :class:`GateRefusedError`
        says why (the gate keeps judging a held run and promotes it by itself). Returns ``(version, evidence,
        forced)``, ``forced`` when the promotion went past the gate."""
        evidence = self.judge_run(project_id, run)
        refused = evidence is not None and evidence.verdict != "promote"
        if evidence is not None and refused and not force:
            self.store.add_decision(project_id, "refuse" if evidence.verdict != "hold" else "hold",
                                    evidence.champion_version, run.run_id,
                                    {**evidence.to_dict(), "run": run.run_id, "by": by})
            later = (" The gate keeps judging it: its disagreement tasks are served first, and it is promoted when "
                     "the evidence is there." if evidence.verdict == "hold" else "")
            raise GateRefusedError(f"run {run.run_id} was not promoted: {evidence.reason}.{later} Promote it anyway "
                                   "with --force (the override is recorded).", evidence)
        if evidence is not None:
            evidence.forced = refused
        return self.promote(project_id, run, evidence=evidence, forced=refused, by=by), evidence, refused

    def promote(self, project_id: int, run: RunRecord, *, evidence: GateEvidence | None, forced: bool = False,
                by: str = "gate", n_annotations: int = 0) -> str:
        """The one promotion: serve the run's model under a new version, record it with its evidence, and (for a
        run the gate judged) keep watching it against the champion it replaced. Returns the new version."""
        schema = self.schema(project_id)
        champion = self.registry.current(project_id).version
        version = self.registry.promote(project_id, schema, run.model_dir, task=run.task,
                                        encoder=self.features.encoder.name, n_annotations=n_annotations)
        self.runs.record_promotion(project_id, run.run_id, version)
        self._end_watches(project_id)  # a newer promotion ends older watches
        if any(f.run_id == run.run_id for f in self.store.finetunes(project_id)):
            self.store.update_finetune(project_id, run.run_id, done=True)
        gate = self.store.gate(project_id, run.run_id)
        if gate is not None and gate.state != "closed":
            spec = schema.single_choice()
            items = {i.task_id for i in self.store.gate_items(project_id, run.run_id)}
            counted = list(self.annotations.answers(project_id, spec, items)) if spec is not None else []
            # A rollback needs a stored champion to return to; a zero-shot one has nothing to watch against.
            watch = gate.champion != UNTRAINED_VERSION
            self.store.update_gate(project_id, run.run_id, promoted=version, counted=counted,
                                   state="watch" if watch else "closed")
        record = evidence.to_dict() if evidence is not None else {"reason": "not judged by the gate"}
        self.store.add_decision(project_id, "forced" if forced else "promote", champion, version,
                                {**record, "run": run.run_id, "by": by})
        log.info("project %s: %s promoted as %s (%s)", project_id, run.run_id, version,
                 "forced past the gate" if forced else evidence.reason if evidence is not None else "not judged")
        return version

    # -- the schedule -----------------------------------------------------------------------------

    def step(self, project_id: int) -> str | None:
        """Judge challengers and rollback watches, start the next fine-tune when due; returns a version that
        now serves because of it (a promotion or a rollback)."""
        schema = self.schema(project_id)
        spec = schema.single_choice()
        if spec is None:
            return None
        changed = None
        for finetune in self.store.finetunes(project_id):
            if not finetune.done:
                changed = self._settle(project_id, spec, finetune) or changed
        changed = self._watch(project_id, spec) or changed
        if self.settings.finetune != "off":
            pairs = self.annotations.pairs(spec, self.annotations.training_records(project_id))
            if self.next_due(project_id, pairs) is None and not any(not f.done and self.run_status(f) in
                                                                    ("queued", "running")
                                                                    for f in self.store.finetunes(project_id)):
                self._start(project_id, spec, pairs)
        self._next_round(project_id)
        return changed

    def _next_round(self, project_id: int) -> None:
        """Once every challenger judged on the current audit frame is settled or carried over, its labels join
        training and a fresh frame is drawn over the tasks still unlabelled (:mod:`labelloop.audit`); a carried
        challenger then goes on over it (also one whose frame was drawn just before the backend stopped)."""
        frame = self.annotations.frame(project_id)
        current = frame.round
        gates = [g for g in self.store.gates(project_id) if g.round == frame.round]
        if new_round_due([g.state for g in gates]):
            labelled = {str(key) for r in self.store.latest_annotations(project_id)
                        if (key := audit_key(r.task_id, r.data)) is not None}
            audit = len(self.annotations.audit_records(project_id))
            reason = (f"every challenger judged on audit frame {frame.round} is settled or carried over: its {audit} "
                      f"labels join training, and a fresh frame is drawn over the tasks not labelled yet")
            current = self.store.new_audit_round(project_id, labelled, reason)
            self.store.add_decision(project_id, "new frame", self.registry.current(project_id).version, None,
                                    {"reason": reason, "round": current, "released": audit,
                                     "labelled": len(labelled)})
            self._reordered.add(project_id)  # the queue spreads the new frame's tasks
            log.info("project %s: audit frame %d: %s", project_id, current, reason)
        for carried in self.store.gates(project_id, states=("carried",)):
            if carried.round < current:
                self._carry_over(project_id, carried, current)

    def _carry_over(self, project_id: int, gate: Gate, round: int) -> None:
        """A challenger whose frame ran out undecided goes on over the fresh frame of ``round``: its frozen
        champion and it predict the new audit tasks, and the bettors' wealth goes on over their disagreements
        (:mod:`labelloop.gate`). Refused when it can't: a frame with no disagreement has nothing more to judge."""
        spec = self.schema(project_id).single_choice()
        tasks = self.annotations.audit_tasks(project_id, spec) if spec is not None else []
        texts = [t for _, t in tasks]
        try:
            if spec is None:
                raise LabelLoopError("the project has no single-choice classification control any more")
            ours, theirs = self._frozen_classes(project_id, spec, gate, texts)
            if not (ours != theirs).any():
                raise LabelLoopError(f"the fresh audit frame ({len(texts)} tasks) holds no task where {gate.champion} "
                                     f"and {gate.challenger} disagree: nothing more to judge them on")
        except (LabelLoopError, OSError) as e:  # a run folder gone, a version that no longer loads
            self.store.update_gate(project_id, gate.run_id, state="closed")
            self.store.update_finetune(project_id, gate.run_id, done=True)
            self.store.add_decision(project_id, "refuse", gate.champion, gate.run_id,
                                    {"reason": f"its evidence could not carry over: {e}", "run": gate.run_id})
            log.info("project %s: fine-tune %s refused: its evidence could not carry over: %s", project_id,
                     gate.run_id, e)
            return
        self.store.extend_gate(project_id, gate.run_id,
                               [(task_id, int(a), int(b)) for (task_id, _), a, b in zip(tasks, ours, theirs, strict=True)],
                               round=round)
        log.info("project %s: the gate goes on judging %s against %s on audit frame %d: they disagree on %d of its "
                 "%d tasks", project_id, gate.challenger, gate.champion, round, int((ours != theirs).sum()), len(tasks))

    def _frozen_classes(self, project_id: int, spec: ControlSpec, gate: Gate, texts: list[str]
                        ) -> tuple[NDArray[Any], NDArray[Any]]:
        """The classes a gate's frozen champion and its challenger predict for ``texts``, each shape (n,)."""
        if not texts:
            return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
        champion = self.registry.stored(project_id, gate.champion)
        ours = ModelPredictor(champion, self.features, self.settings.strategy).class_probs(spec, texts).argmax(1)
        challenger = TransformerModel(self.runs.get(gate.run_id).model_dir, spec.labels)
        return ours, np.asarray(challenger.predict_proba(texts)).argmax(axis=1)

    def next_due(self, project_id: int, pairs: list[Any] | None = None) -> str | None:
        """Why no fine-tune is due now (None: one is due)."""
        if self.settings.finetune == "off":
            return "fine-tuning is off (LABELLOOP_FINETUNE=off)"
        spec = self.schema(project_id).single_choice()
        if spec is None:
            return "the project has no single-choice classification control"
        if pairs is None:
            pairs = self.annotations.pairs(spec, self.annotations.training_records(project_id))
        counts = dict.fromkeys(spec.labels, 0)
        for _, answer in pairs:
            value = export_value(spec, answer)
            if value in counts:
                counts[value] += 1
        # A fine-tune cancelled (the backend stopped under it) does not count: it starts again at its label count.
        started = [f.labels for f in self.store.finetunes(project_id) if self.run_status(f) != "cancelled"]
        return finetune_due(len(pairs), started, counts, finetune_at=self.settings.finetune_at)

    def run_ended(self, finetune: Finetune) -> bool:
        """Whether a fine-tune's run is over (succeeded, failed, cancelled, or gone) and waits to be settled."""
        return self.run_status(finetune) not in ("queued", "running")

    def run_status(self, finetune: Finetune) -> str:
        """Its run's status in the run registry (``missing`` when the run is gone)."""
        try:
            return self.runs.get(finetune.run_id).status
        except LabelLoopError:
            return "missing"

    def _start(self, project_id: int, spec: ControlSpec, pairs: list[Any]) -> None:
        from labelloop.data.jsonl import write_jsonl
        from labelloop.finetune.launch import start_run

        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self.store.home / "ladder" / str(project_id) / f"{stamp}-{len(pairs)}"
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(folder / "train.jsonl", [{"text": t, "label": export_value(spec, a)} for t, a in pairs])
        for finetune in self.store.finetunes(project_id):
            if not finetune.done:  # a held challenger gives way to one trained on twice the labels
                self._supersede(project_id, finetune.run_id, None, f"a fine-tune on {len(pairs)} labels replaces it")
        method = finetune_method(len(pairs), setfit_below=self.settings.setfit_below,
                                 has_setfit=self.settings.setfit_below > len(pairs) and has_setfit())
        config = dataclasses.replace(self.run_config(len(pairs), folder / "train.jsonl", base_model=self.settings.model,
                                                     method=method), project=project_id)
        name = f"ladder-{self.settings.instance or 'p'}{project_id}-{len(pairs)}-{stamp}"
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        run = start_run(self.runs, config, name=name, niceness=10)
        self._children[run.run_id] = int((run.folder / "pid").read_text())
        self.store.add_finetune(project_id, run.run_id, len(pairs))
        self.store.add_decision(project_id, "finetune", self.registry.current(project_id).version, run.run_id,
                                {"labels": len(pairs), "epochs": config.epochs, "method": config.method})
        log.info("project %s: fine-tuning the encoder (%s) on %d labels in the background (run %s)", project_id,
                 config.method, len(pairs), run.run_id)

    def _settle(self, project_id: int, spec: ControlSpec, finetune: Finetune) -> str | None:
        status = self.run_status(finetune)
        if status in ("queued", "running"):
            return None
        champion = self.registry.current(project_id).version
        if status != "succeeded":
            error = self.runs.get(finetune.run_id).error if status != "missing" else "its run folder is gone"
            self.store.update_finetune(project_id, finetune.run_id, done=True)
            self.store.add_decision(project_id, "failed", champion, finetune.run_id, {"reason": f"{status}: {error}"})
            log.warning("project %s: fine-tune %s %s: %s", project_id, finetune.run_id, status, error)
            return None
        run = self.runs.get(finetune.run_id)
        try:
            if run.task != "classification":
                raise LabelLoopError(f"run {run.run_id} does not classify the project's single-choice control")
            gate = self.store.gate(project_id, finetune.run_id)
            if gate is None:
                gate = self.open_gate(project_id, spec, TransformerModel(run.model_dir, spec.labels),
                                      finetune.run_id, finetune.run_id)
            if gate.state == "carried":
                return None  # its carry is recorded; the next frame (self._next_round) takes it on
            evidence = self.evidence(project_id, spec, gate)
        except LabelLoopError as e:
            self.store.update_finetune(project_id, finetune.run_id, done=True)
            self.store.add_decision(project_id, "failed", champion, finetune.run_id, {"reason": str(e)})
            return None
        if evidence.verdict == "hold" and evidence.labels == gate.labels_seen:
            return None  # no new disagreement label since the last verdict
        self.store.update_gate(project_id, finetune.run_id, labels_seen=evidence.labels)
        if evidence.verdict == "promote":
            return self.promote(project_id, run, evidence=evidence, n_annotations=finetune.labels)
        if evidence.verdict in FINAL_VERDICTS:
            self.store.update_finetune(project_id, finetune.run_id, done=True)
            self.store.update_gate(project_id, finetune.run_id, state="closed")
        elif evidence.verdict == "carry":  # judged on on the next frame (self._next_round draws it)
            self.store.update_gate(project_id, finetune.run_id, state="carried")
        self.store.add_decision(project_id, evidence.verdict, gate.champion, finetune.run_id,
                                {**evidence.to_dict(), "run": finetune.run_id})
        log.info("project %s: fine-tune %s %s: %s", project_id, finetune.run_id,
                 {"futility": "stopped for futility", "refuse": "refused", "hold": "held",
                  "carry": "carried over"}[evidence.verdict], evidence.reason)
        return None

    def rollback(self, project_id: int) -> str:
        """A lead's rollback: serve the version that served before the current one, end any rollback watch (the
        lead decided), and record it; returns the version serving now."""
        before = self.registry.current(project_id).version
        version = self.registry.rollback(project_id)
        self._end_watches(project_id)
        self.store.add_decision(project_id, "rollback", before, version, {"reason": "rolled back by a lead"})
        return version

    def _supersede(self, project_id: int, run_id: str, champion: str | None, reason: str) -> None:
        """A held challenger gives way to a newer one: settled, its gate closed, and recorded."""
        self.store.update_finetune(project_id, run_id, done=True)
        self.store.update_gate(project_id, run_id, state="closed")  # no gate yet: nothing to close
        self.store.add_decision(project_id, "superseded", champion, run_id, {"reason": reason})

    def _end_watches(self, project_id: int) -> None:
        for watched in self.store.gates(project_id, states=("watch",)):
            self.store.update_gate(project_id, watched.run_id, state="closed")

    def _watch(self, project_id: int, spec: ControlSpec) -> str | None:
        """The rollback test on each promoted challenger still watched; returns the champion it rolled back to."""
        rolled = None
        for gate in self.store.gates(project_id, states=("watch",)):
            evidence = self.evidence(project_id, spec, gate)
            if evidence.labels == gate.labels_seen and evidence.verdict == "hold":
                continue
            self.store.update_gate(project_id, gate.run_id, labels_seen=evidence.labels)
            if evidence.verdict == "hold":
                continue  # recorded only when it settles: a watch is quiet while the promotion holds
            self.store.update_gate(project_id, gate.run_id, state="closed")
            if evidence.verdict == "rollback":
                try:
                    self.registry.serve(project_id, gate.champion)
                except LabelLoopError as e:
                    evidence.reason += f"; but {gate.champion} can't serve again ({e})"
                    evidence.verdict = "keep"
                else:
                    rolled = gate.champion
            self.store.add_decision(project_id, evidence.verdict, gate.champion, gate.promoted,
                                    {**evidence.to_dict(), "run": gate.run_id})
            log.info("project %s: %s", project_id, evidence.reason if evidence.verdict == "rollback" else
                     f"the rollback watch on {gate.promoted} ends: {evidence.reason}")
        return rolled

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the fine-tunes this process started and that still run (the backend is shutting down): each is
        asked to cancel (it saves a checkpoint), then terminated, then killed, by the PID it was started with.
        A fine-tune cancelled so starts again, at the same label count, when the backend is back."""
        from labelloop.finetune.launch import cancel_run

        live = {}
        for run_id, pid in self._children.items():
            if alive(pid):
                try:
                    cancel_run(self.runs, run_id)
                except LabelLoopError:
                    pass  # ended meanwhile, or never registered: it still gets the signals below
                live[run_id] = pid
        stopped = list(live)
        stop_groups({f"fine-tune {run_id}": pid for run_id, pid in live.items()}, timeout=timeout)
        for run_id in stopped:
            try:
                if self.runs.get(run_id).status != "succeeded":
                    self.runs.set_status(run_id, "cancelled", error="the backend stopped while it trained; the "
                                                                    "ladder starts it again when the backend is back")
            except LabelLoopError:
                pass
        self._children.clear()
