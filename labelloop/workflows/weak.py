"""Weak labels from keyword rules, calibrated and pushed as predictions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from labelloop.data.dataset import annotation_value
from labelloop.errors import ConfigError
from labelloop.studio import lsclient


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
    """Apply ``rules`` (a :class:`~labelloop.quality.weak.WeakRules`) to every task of the project, combine the votes with
    the label model and, with ``push``, store the result as predictions scored by confidence.

    Tasks no labeling function votes on get no prediction. The project's first single-choice control is labeled.
    """
    from tqdm import tqdm

    from labelloop.al.uncertainty import confidence
    from labelloop.quality.weak import ABSTAIN, apply_lfs, combine_votes, lf_summary, probs_lf

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
