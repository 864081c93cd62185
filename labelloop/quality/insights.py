"""What a lead wants to know about a project: progress, agreement, likely label errors, duplicates, the queue.

The dashboard shows these; they are plain functions over task dicts (``{"id", "data", "annotations",
"predictions"}`` as Label Studio returns them) so they work the same from a notebook.

Label-error candidates come from confident learning (Northcutt et al., 2021) on out-of-fold probabilities
of the backend's own head over sentence vectors, through cleanlab (Apache-2.0 since 2.8; the
``labelloop[quality]`` extra) and its default rule.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from labelloop._optional import require
from labelloop.audit import AuditFrame
from labelloop.data.dataset import ExportConfig, annotation_value, build_dataset
from labelloop.labeling.kinds import kind_of
from labelloop.labeling.schema import ControlSpec, find_control
from labelloop.quality.dedup import duplicate_groups
from labelloop.studio import lsclient


def project_tasks(client, project_id: int, *, retry: lsclient.Retry | None = lsclient.DEFAULT_RETRY) -> list[dict]:
    """Every task of the project with its annotations and predictions, as plain dicts."""
    def plain(item) -> dict:
        return item if isinstance(item, dict) else item.model_dump(mode="json")

    return [{"id": t.id, "data": t.data or {}, "annotations": [plain(a) for a in t.annotations or []],
             "predictions": [plain(p) for p in t.predictions or []]}
            for t in lsclient.iter_tasks(client, project_id, fields="all", retry=retry)]


def task_url(label_studio_url: str, project_id: int, task_id: int) -> str:
    """The Label Studio page that opens ``task_id`` in the labeling stream."""
    return f"{label_studio_url.rstrip('/')}/projects/{project_id}/data?task={task_id}"


def _live(task: dict) -> list[dict]:
    return [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]


def _day(timestamp: str) -> str:
    return str(timestamp)[:10]


def _hour(timestamp: str) -> str:
    text = str(timestamp)
    return f"{text[:10]} {text[11:13]}:00" if len(text) >= 13 else text[:10]


def _cumulative(counts: Counter) -> list[dict]:
    total, rows = 0, []
    for key in sorted(counts):
        total += counts[key]
        rows.append({"date": key, "annotations": counts[key], "cumulative": total})
    return rows


def _value_name(value) -> str:
    if isinstance(value, tuple):
        return ", ".join(str(v) if not isinstance(v, tuple) else str(v[-1]) for v in value) or "(none)"
    return str(value)


# -- progress --------------------------------------------------------------------------------------


def progress(tasks: list[dict], control: ControlSpec, annotators: dict | None = None) -> dict:
    """Counts, annotations per day, label distribution and throughput per annotator.

    Returns ``{"tasks", "labeled", "annotations", "skipped", "per_day": [{"date", "annotations",
    "cumulative"}], "per_hour": [...the same, "date" is "YYYY-MM-DD HH:00"], "labels": {label: count},
    "annotators": [{"annotator", "annotations", "tasks", "median_seconds", "last"}]}``; labels count every
    live annotation (an entity type once per span).
    """
    annotators = annotators or {}
    kind = kind_of(control)
    per_day: Counter = Counter()
    per_hour: Counter = Counter()
    labels: Counter = Counter()
    by_person: dict[str, list[dict]] = defaultdict(list)
    skipped = 0
    for task in tasks:
        for ann in task.get("annotations") or []:
            if ann.get("was_cancelled"):
                skipped += 1
                continue
            per_day[_day(ann.get("created_at", ""))] += 1
            per_hour[_hour(ann.get("created_at", ""))] += 1
            who = ann.get("completed_by")
            who = who.get("id") if isinstance(who, dict) else who
            by_person[annotators.get(who, f"user {who}")].append({**ann, "task": task["id"]})
            value = annotation_value(ann.get("result") or [], control)
            if value is None:
                continue
            labels.update(kind.labels_in(control, value))
    days, hours = _cumulative(per_day), _cumulative(per_hour)
    people = []
    for name, anns in sorted(by_person.items(), key=lambda kv: -len(kv[1])):
        seconds = [float(a["lead_time"]) for a in anns if isinstance(a.get("lead_time"), (int, float))]
        people.append({"annotator": name, "annotations": len(anns), "tasks": len({a["task"] for a in anns}),
                       "median_seconds": float(np.median(seconds)) if seconds else None,
                       "last": max(str(a.get("created_at", "")) for a in anns)[:19].replace("T", " ")})
    return {"tasks": len(tasks), "labeled": sum(bool(_live(t)) for t in tasks),
            "annotations": sum(per_day.values()), "skipped": skipped, "per_day": days, "per_hour": hours,
            "labels": dict(labels.most_common()), "annotators": people}


# -- agreement -------------------------------------------------------------------------------------


def cohen_kappa(a: list, b: list) -> float:
    """Cohen's kappa of two raters over the same items (1 agreement, 0 chance, negative worse)."""
    if len(a) != len(b) or not a:
        raise ValueError("cohen_kappa needs two equally long, non-empty rating lists")
    observed = np.mean([x == y for x, y in zip(a, b, strict=True)])
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (len(a) ** 2)
    return 1.0 if expected == 1 else float((observed - expected) / (1 - expected))


def pairwise_kappa(tasks: list[dict], control: ControlSpec, *, min_shared: int = 2,
                   annotators: dict | None = None) -> list[dict]:
    """Cohen's kappa for each pair of annotators with at least ``min_shared`` tasks in common.

    Each annotator's latest annotation of a task counts. Rows: ``{"pair", "shared", "kappa", "agreement"}``,
    least agreeing pair first.
    """
    annotators = annotators or {}
    ratings: dict[object, dict[int, object]] = defaultdict(dict)
    for task in tasks:
        for ann in sorted(_live(task), key=lambda a: str(a.get("created_at", ""))):
            who = ann.get("completed_by")
            who = who.get("id") if isinstance(who, dict) else who
            value = annotation_value(ann.get("result") or [], control)
            if value is not None:
                ratings[who][task["id"]] = value
    rows = []
    for u, v in combinations(sorted(ratings, key=str), 2):
        shared = sorted(set(ratings[u]) & set(ratings[v]))
        if len(shared) < min_shared:
            continue
        a, b = [ratings[u][t] for t in shared], [ratings[v][t] for t in shared]
        rows.append({"pair": f"{annotators.get(u, f'user {u}')} / {annotators.get(v, f'user {v}')}",
                     "shared": len(shared), "kappa": cohen_kappa(a, b),
                     "agreement": float(np.mean([x == y for x, y in zip(a, b, strict=True)]))})
    return sorted(rows, key=lambda r: r["kappa"])


# -- label errors ----------------------------------------------------------------------------------


def out_of_fold_probs(x: np.ndarray, y: np.ndarray, fit: Callable[[np.ndarray, np.ndarray], Callable],
                      *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Probabilities (n, n_classes) for each row from a model that never saw it.

    ``fit(x_train, y_train)`` returns a function mapping vectors to probabilities. Folds are stratified
    round-robin per class, so every class is in every training fold when it has ``folds`` examples.
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        fold[idx] = np.arange(len(idx)) % folds
    probs = None
    for k in range(folds):
        test = fold == k
        if not test.any() or test.all():
            continue
        predict = fit(x[~test], y[~test])
        p = predict(x[test])
        if probs is None:
            probs = np.zeros((len(y), p.shape[1]))
        probs[test] = p
    if probs is None:
        raise ValueError("out_of_fold_probs needs at least two examples")
    return probs


def find_label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices of likely mislabeled rows, most suspicious first (ascending self-confidence).

    ``labels`` (n,) are given class indices, ``probs`` (n, k) out-of-fold probabilities. This is cleanlab's
    confident learning with its default rule (prune by noise rate), which recovered more planted errors
    than the plain off-diagonal rule in our side-by-side measurement (``benchmarks/label_issues.py``).

    It runs in this process (``n_jobs=1``): cleanlab's default forks a worker pool, and a fork of a process with
    threads (a Streamlit server, torch) can inherit a held lock and hang for good.
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    cleanlab_filter = require("cleanlab.filter", "quality")
    found = cleanlab_filter.find_label_issues(labels, probs, return_indices_ranked_by="self_confidence",
                                              n_jobs=1)
    return np.asarray(found, dtype=np.int64)


@dataclass
class LabelIssue:
    task_id: int
    text: str
    given: str
    suggested: str
    self_confidence: float
    suggested_probability: float


def label_issue_candidates(tasks: list[dict], label_config: str, encoder, *, folds: int = 5) -> list[LabelIssue]:
    """Single-choice annotations that out-of-fold predictions confidently disagree with, worst first.

    The classifier is the backend's: a linear head over ``encoder`` vectors anchored to zero-shot label
    names. Needs ``2 * folds`` approved tasks of two labels or more; returns an empty list before that.
    """
    from labelloop.models import ChoicesModel

    control = find_control(label_config)
    if not kind_of(control).single_label(control):
        return []
    train, test, _, _ = build_dataset(tasks, label_config, ExportConfig(test_fraction=0.0))
    records = train + test
    names = sorted({r["label"] for r in records})
    if len(records) < 2 * folds or len(names) < 2:
        return []
    y = np.array([names.index(r["label"]) for r in records])
    prior = ChoicesModel.zero_shot(encoder, names)
    probs = out_of_fold_probs(encoder.embed([r["text"] for r in records]), y,
                              lambda x, t: prior.fit(x, t).predict_proba, folds=folds)
    out = []
    for i in find_label_issues(y, probs):
        j = int(probs[i].argmax())
        out.append(LabelIssue(int(records[i]["task_id"]), records[i]["text"], names[y[i]], names[j],
                              float(probs[i, y[i]]), float(probs[i, j])))
    return out


# -- duplicates and leakage ------------------------------------------------------------------------


def duplicate_report(tasks: list[dict], label_config: str, *, project_id: int | None, audit_share: float | None,
                     threshold: float = 0.7, frozen_test: set[str] | frozenset[str] = frozenset(),
                     frame: AuditFrame | None = None) -> dict:
    """Groups of exact or near-duplicate tasks, and the leakage check of the approved train/test split: the
    split export and the gate use (the project's audit ``frame``; by default its first, at ``audit_share``).

    ``{"groups": [{"task_ids", "text", "size"}], "split": {"train", "test"}, "test_texts_in_train",
    "duplicates": {...}}``; largest groups first.
    """
    control = find_control(label_config)
    texts, ids = [], []
    for task in tasks:
        text = (task.get("data") or {}).get(control.value_key)
        if isinstance(text, str) and text.strip():
            texts.append(text)
            ids.append(task["id"])
    groups: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(duplicate_groups(texts, threshold=threshold) if texts else []):
        groups[int(g)].append(i)
    rows = [{"task_ids": [ids[i] for i in members], "text": texts[members[0]], "size": len(members)}
            for members in groups.values() if len(members) > 1]
    _, _, report, _ = build_dataset(tasks, label_config, ExportConfig(near_duplicate_threshold=threshold,
                                                                      audit_share=audit_share),
                                    set(frozen_test), project_id=project_id, frame=frame)
    return {"groups": sorted(rows, key=lambda r: -r["size"]), "split": report["exported"],
            "test_texts_in_train": report["leakage"]["test_texts_in_train"], "duplicates": report["duplicates"]}


# -- the queue -------------------------------------------------------------------------------------


def queue_preview(tasks: list[dict], model_version: str | None, control: ControlSpec, *, n: int = 10) -> list[dict]:
    """The next unlabeled tasks as Label Studio's uncertainty queue serves them: lowest score first.

    Rows: ``{"task_id", "text", "prediction", "score"}``. Only predictions of ``model_version`` count (the
    one the project points at); tasks without one come last.
    """
    rows = []
    for task in tasks:
        if _live(task):
            continue
        preds = [p for p in task.get("predictions") or [] if not model_version or p.get("model_version") == model_version]
        pred = preds[-1] if preds else None
        value = annotation_value(pred.get("result"), control) if pred else None
        rows.append({"task_id": task["id"], "text": str((task.get("data") or {}).get(control.value_key, ""))[:300],
                     "prediction": _value_name(value) if value is not None else "",
                     "score": float(pred["score"]) if pred and pred.get("score") is not None else None})
    rows.sort(key=lambda r: (r["score"] is None, r["score"] if r["score"] is not None else 0.0, r["task_id"]))
    return rows[:n]

