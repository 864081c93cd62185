"""Compare model versions: the learning curve on the frozen test split, and every version on one text."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from labelloop.audit import AuditFrame, PastFrame, wilson_interval
from labelloop.errors import ConfigError


def learning_curve(service, project_id: int, test_records: list[dict], frame: AuditFrame | None = None
                   ) -> list[dict]:
    """Accuracy of every stored version of the project on ``test_records`` (``{"text", "label"}``), the labelled
    tasks of the audit ``frame`` (by default the current one). On an earlier frame (a
    :class:`~labelloop.audit.PastFrame`) only the versions trained before it ended are scored: its labels train
    the later ones.

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
    front, share = service.served_first(project_id, frame.round if frame is not None else None)
    first = np.array([r.get("task_id") in front for r in test_records], dtype=bool)
    weighted = bool(first.any()) and bool((~first).any()) and 0.0 < share < 1.0
    digest = hashlib.sha1(json.dumps([[[r["text"], r["label"]] for r in test_records],
                                      first.tolist() if weighted else None, share if weighted else None]
                                     ).encode()).hexdigest()[:16]
    tasks = [{"data": {control.value_key: r["text"]}} for r in test_records]
    gold = [str(r["label"]) for r in test_records]
    rows = []
    records = service.version_records(project_id)
    if isinstance(frame, PastFrame):
        records = [r for r in records if r.created_at < frame.ended_at]
    for record in [None, *records]:
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
