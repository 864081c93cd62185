"""What a lead does to a project, as plain functions the CLI, the dashboard and the playground share.

Promote a run, roll back, export approved labels for training, augment them, and try a model version on
a text. Each takes its clients and services as arguments and returns what happened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from labelloop import lsclient
from labelloop.audit import wilson_interval
from labelloop.dataset import ExportConfig, annotation_value, build_dataset, export_dataset, load_frozen_test
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


def learning_curve(service, project_id: int, test_records: list[dict]) -> list[dict]:
    """Accuracy of every stored version of the project on ``test_records`` (``{"text", "label"}``).

    Rows ``{"model_version", "labels", "accuracy", "low", "high", "n_test", "created_at", "weighted"}`` in
    training order (``low``/``high``: the 95% interval of the accuracy); ``labels`` is how many annotated tasks the
    version learned from (0 for a promoted fine-tuned run). Where a gate put its disagreements first in the queue,
    those tasks are over-represented among the annotated ones: the accuracy is then weighted by their share of
    the audit frame (``weighted``: True), so the curve stays an estimate over the whole audit split. Scores are
    cached next to each version, keyed on the test set and those weights, so a page refresh costs nothing.
    """
    from labelloop.gate import stratified_accuracy
    from labelloop.serving.versions import UNTRAINED_VERSION

    schema = service.schema(project_id)
    control = schema.single_choice()
    if control is None or not test_records:
        return []
    front, share = service.served_first(project_id)
    first = np.array([r.get("task_id") in front for r in test_records], dtype=bool)
    weighted = bool(first.any()) and bool((~first).any()) and 0.0 < share < 1.0
    digest = hashlib.sha1(json.dumps([[[r["text"], r["label"]] for r in test_records],
                                      first.tolist() if weighted else None, share if weighted else None]
                                     ).encode()).hexdigest()[:16]
    tasks = [{"data": {control.value_key: r["text"]}} for r in test_records]
    gold = [str(r["label"]) for r in test_records]
    rows = []
    for record in [None, *service.version_records(project_id)]:
        # "curve2": rows that carry their 95% interval (older cached rows lack it)
        cache = record.path / f"curve2-{digest}.json" if record else None
        if cache is not None and cache.exists():
            rows.append(json.loads(cache.read_text()))
            continue
        version = record.model_version if record else UNTRAINED_VERSION
        preds = service.predict(tasks, project=project_id, model_version=version)
        chosen = [next((_label(r["value"]) for r in p["result"] if r["from_name"] == control.from_name), None)
                  for p in preds]
        right = np.array([c == g for c, g in zip(chosen, gold, strict=True)], dtype=bool)
        if weighted:
            estimate = stratified_accuracy(right[first], right[~first], share)
            accuracy, low, high = estimate.value, estimate.low, estimate.high
        else:
            accuracy = float(right.mean())
            low, high = wilson_interval(int(right.sum()), len(gold))
        row = {"model_version": version, "labels": record.n_annotations if record else 0,
               "accuracy": accuracy, "low": low, "high": high, "n_test": len(gold),
               "created_at": record.created_at if record else 0.0, "weighted": weighted}
        if cache is not None and record.path.exists():
            cache.write_text(json.dumps(row))
        rows.append(row)
    return rows


def _label(value: dict) -> str | None:
    """The class a Choices or Taxonomy region names, as exported datasets spell it."""
    if value.get("taxonomy"):
        return " / ".join(value["taxonomy"][0])
    return (value.get("choices") or [None])[0]


def export_for_training(client, project_id: int, settings, config: ExportConfig | None = None) -> dict:
    """Export approved labels to ``$LABELLOOP_HOME/exports/<project>/<time>/``, the audit split as the test split;
    returns the report with paths (``report["test_split"]["enough"]`` is False below the gate's minimum)."""
    out = Path(settings.home) / "exports" / str(project_id) / time.strftime("%Y%m%d-%H%M%S")
    config = with_audit_share(config or ExportConfig(), settings.audit_share)
    report = export_dataset(client, project_id, out, config, state_dir=settings.home, min_test=settings.min_audit)
    return {**report, "train_file": str(out / "train.jsonl"), "test_file": str(out / "test.jsonl")}


def with_audit_share(config: ExportConfig, share: float) -> ExportConfig:
    """``config`` with the backend's audit share where it names none."""
    return config if config.audit_share is not None else dataclasses.replace(config, audit_share=share)


def approved_records(tasks: list[dict], label_config: str, home: Path, project_id: int, *,
                     audit_share: float) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` records of the project's approved labels; test is the audit split (and any frozen one)."""
    train, test, _, _ = build_dataset(tasks, label_config, ExportConfig(audit_share=audit_share),
                                      load_frozen_test(home, project_id), project_id=project_id)
    return train, test


def augment_project(tasks: list[dict], label_config: str, home: Path, project_id: int, methods: list[str], *,
                    audit_share: float, n: int = 1, aug_p: float = 0.15, seed: int = 0, limit: int | None = None,
                    embed=None) -> dict:
    """Variants of the project's approved train records (test records are never augmented).

    Returns ``{"variants", "sources", "summary", "preview": [{"method", "source", "variant", "diff",
    "label"}]}``. ``limit`` caps the source records (for a quick preview). With ``embed`` (texts to
    sentence vectors), variants that strayed from their source are dropped (:class:`SimilarityFilter`).
    Nothing is written.
    """
    from labelloop.augment.cli import build_augmenters, word_diff
    from labelloop.augment.pipeline import SimilarityFilter, augment_records

    train, test = approved_records(tasks, label_config, home, project_id, audit_share=audit_share)
    if not train:
        raise ConfigError("no approved labels outside the test split yet: annotate some tasks first")
    sources = train[:limit] if limit else train
    augmenters = build_augmenters(methods, sources, aug_p=aug_p)
    variants, report = augment_records(sources, augmenters, n=n, seed=seed, test_records=test, progress=False,
                                       similarity=SimilarityFilter(embed) if embed is not None else None)
    by_id = {f"task {r['task_id']}": r for r in sources}
    rows = []
    for v in variants:
        source = by_id.get(v["provenance"]["source"], {})
        label = v.get("label") or ", ".join(v.get("labels", [])) or ", ".join(
            f"{v['text'][s['start']:s['end']]} ({s['label']})" for s in v.get("spans", []))
        rows.append({"method": v["provenance"]["method"], "source": source.get("text", ""), "variant": v["text"],
                     "diff": word_diff(source.get("text", ""), v["text"]), "label": label})
    return {"variants": variants, "sources": len(sources), "summary": report.summary(), "preview": rows}


def import_variants(client, project_id: int, variants: list[dict], label_config: str) -> int:
    """Add variants to the project as new tasks, each carrying its label as a prediction; returns how many."""
    from labelloop.augment.pipeline import variant_tasks

    tasks = variant_tasks(variants, label_config)
    for i in range(0, len(tasks), 500):
        lsclient.call("importing augmented tasks", client.projects.import_tasks, id=project_id,
                      request=tasks[i : i + 500], retry=None)
    return len(tasks)


def save_variants(home: Path, project_id: int, variants: list[dict]) -> Path:
    """Write variants to ``$LABELLOOP_HOME/augment/<project>/<time>.jsonl`` (the originals stay untouched)."""
    from labelloop.jsonl import write_jsonl

    path = Path(home) / "augment" / str(project_id) / (time.strftime("%Y%m%d-%H%M%S") + ".jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, variants)
    return path


def try_versions(service, project_id: int, text: str, versions: list[str]) -> list[dict]:
    """One prediction of ``text`` per model version of the project, for side-by-side comparison.

    Rows: ``{"model_version", "choices": {control: {label: probability}}, "spans": [{"start", "end",
    "label", "score", "text"}], "score"}``.
    """
    if not text or not text.strip():
        raise ConfigError("type a text to label")
    key = service.schema(project_id).controls[0].value_key
    out = []
    for version in versions:
        pred = service.predict([{"data": {key: text}}], project=project_id, model_version=version)[0]
        if "error" in pred:
            raise ConfigError(pred["error"])
        row = {"model_version": pred["model_version"], "spans": [], "score": pred["score"],
               "choices": service.choice_probabilities(project_id, text, model_version=version)}
        for r in pred["result"]:
            if r["type"] == "labels":
                v = r["value"]
                row["spans"].append({"start": v["start"], "end": v["end"], "label": v["labels"][0],
                                     "score": r.get("score"), "text": v["text"]})
        out.append(row)
    return out



@dataclass
class WeakLabels:
    """What weak supervision did to a project: per-LF statistics, the label model's accuracy on annotated
    tasks, and how many predictions were pushed."""

    model_version: str
    lf_stats: list[dict]
    label_model_accuracy: float | None
    majority_accuracy: float | None
    combiner: str
    n_gold: int
    covered: int
    n_tasks: int
    pushed: int
    reason: str = ""


def weak_label_project(service, client, project_id: int, rules, *, push: bool = True,
                       progress: bool = True) -> WeakLabels:
    """Apply ``rules`` (a :class:`~labelloop.weak.WeakRules`) to every task of the project, combine the votes with
    the label model and, with ``push``, store the result as predictions scored by confidence.

    Tasks no labeling function votes on get no prediction. The project's first single-choice control is labeled.
    """
    import numpy as np
    from tqdm import tqdm

    from labelloop.uncertainty import confidence
    from labelloop.weak import ABSTAIN, apply_lfs, combine_votes, lf_summary, probs_lf

    control = service.schema(project_id).single_choice()
    if control is None:
        raise ConfigError(f"project {project_id} has no single-label control (<Choices>, <Taxonomy> or <Rating>) "
                          "for weak labels")
    labels = list(control.labels)
    tasks = [t for t in lsclient.iter_tasks(client, project_id, fields="all")
             if isinstance((t.data or {}).get(control.value_key), str) and t.data[control.value_key].strip()]
    texts = [t.data[control.value_key] for t in tasks]
    lfs = rules.labeling_functions(labels)
    if rules.model:
        probs = np.stack([list(service.choice_probabilities(project_id, x)[control.from_name].values()) for x in
                          tqdm(texts, desc="model votes", disable=not progress)]) if texts else np.zeros((0, len(labels)))
        lfs.append(probs_lf("model", texts, probs, labels, threshold=rules.threshold))
    if rules.llm:
        with tqdm(total=len(texts), desc="LLM votes", disable=not progress) as bar:
            probs = service.llm.labeler(project_id).classify(texts, labels, guideline=service.llm.guideline(project_id),
                                                             progress=bar.update)
        lfs.append(probs_lf("llm", texts, probs, labels, threshold=rules.threshold))
    votes = apply_lfs(lfs, texts, labels)
    gold = np.full(len(tasks), ABSTAIN)
    for i, task in enumerate(tasks):
        for ann in task.annotations or []:
            value = annotation_value(ann.get("result"), control)
            if value in labels and not ann.get("was_cancelled"):
                gold[i] = labels.index(value)
    combined = combine_votes(votes, len(labels), gold)
    probs = combined.probs
    covered = (votes != ABSTAIN).any(axis=1)
    judged = covered & (gold != ABSTAIN)
    accuracy = combined.label_model_accuracy
    if accuracy is None and judged.any():
        accuracy = float((probs[judged].argmax(axis=1) == gold[judged]).mean())
    # Same rules, same version: a re-run adds nothing twice. Changed rules make a new version.
    digest = hashlib.sha1(json.dumps([asdict(rules), labels, service.llm.version if rules.llm else None],
                                     sort_keys=True).encode()).hexdigest()[:8]
    version = f"labelloop-weak-{digest}"
    pushed = 0
    if push and covered.any():
        done = lsclient.task_ids_with_version(client, project_id, version)
        covered_new = covered & np.array([t.id not in done for t in tasks])
        scores = confidence(probs, service.settings.strategy)
        rows = [{"task": tasks[i].id, "model_version": version, "score": float(scores[i]),
                 "result": [{"from_name": control.from_name, "to_name": control.to_name, "type": "choices",
                             "value": {"choices": [labels[int(probs[i].argmax())]]}, "score": float(probs[i].max())}]}
                for i in np.flatnonzero(covered_new)]
        pushed = lsclient.push_predictions(client, project_id, rows)
        lsclient.set_model_version(client, project_id, version)
    return WeakLabels(version, lf_summary(votes, [lf.name for lf in lfs], gold), accuracy, combined.majority_accuracy,
                      combined.combiner, int(judged.sum()), int(covered.sum()), len(tasks), pushed, combined.reason)
