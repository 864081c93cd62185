"""Promote a run past the gate, or roll a project back."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.errors import ConfigError
from labelloop.finetune.registry import RunRegistry
from labelloop.gate import GateEvidence


@dataclass
class Promotion:
    project_id: int
    model_version: str
    run_id: str | None
    stored_predictions: int
    evidence: GateEvidence | None = None
    forced: bool = False

    def message(self) -> str:
        what = f"run {self.run_id} as {self.model_version}" if self.run_id else self.model_version
        pushed = (f"; pushed {self.stored_predictions} predictions and set the project's model_version"
                  if self.stored_predictions else
                  "; Label Studio not updated (set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to push predictions)")
        gate = ""
        if self.evidence is not None:
            gate = f" ({'forced past the gate' if self.forced else 'gate'}: {self.evidence.reason})"
        elif self.run_id:
            gate = " (not judged by the gate: it judges single-choice classification runs)"
        return f"project {self.project_id} now serves {what}{pushed}{gate}"


def promote_run(service, registry: RunRegistry, run_id: str, project_id: int, *, publish: bool = True,
                force: bool = False) -> Promotion:
    """Serve a succeeded run's model for the project under a new model_version, then publish it.

    A classification run meets the gate (:meth:`~labelloop.serving.ladder.Ladder.judge_run`): its audit tasks
    where it and the serving model disagree go to the front of the queue, and it is promoted when the evidence
    says it is better. Until then it is not promoted (:class:`~labelloop.errors.GateRefusedError`, recorded),
    unless ``force``; the gate keeps judging it as those tasks are labelled and promotes it by itself. A forced
    promotion is recorded as such.
    """
    run = registry.get(run_id)
    if run.status != "succeeded" or not run.model_dir.exists():
        raise ConfigError(f"run {run_id} is {run.status}; only a succeeded run with a saved model can be promoted")
    version, evidence, refused = service.promote_run(project_id, run, force=force)
    stored = service.publish(project_id, version) if publish else 0
    return Promotion(project_id, version, run_id, stored, evidence, refused)


def rollback_project(service, project_id: int, *, publish: bool = True) -> Promotion:
    """Serve the project's previous model version again, then publish it."""
    version = service.rollback(project_id)
    stored = service.publish(project_id, version) if publish else 0
    return Promotion(project_id, version, None, stored)
