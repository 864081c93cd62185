"""Approved annotations out of Label Studio as leak-free train/test datasets.

:func:`build_dataset` is pure (task dicts in, records, splits and a report out); :func:`export_dataset`
reads a project through the SDK and writes ``train.jsonl``, ``test.jsonl`` and ``report.json`` (plus a
Hugging Face ``datasets`` copy when that package is installed). Record formats match what training reads:
``{"text", "label"}``, ``{"text", "labels"}``, ``{"text", "spans": [{"start", "end", "label"}]}`` (with
``"relations": [{"from", "to", "label"}]`` between span indices, for a project with ``<Relations>``),
``{"text", "tokens", "tags"}`` (a tag per word, null where no annotator tagged it; see :mod:`labelloop.wordtags`)
and ``{"prompt", "response"}``.

The test split is the project's audit split (:mod:`labelloop.audit`: a fixed random share of tasks, decided
per task, that the backend never trains on), so exported test sets, learning curves and the promotion gate
measure on the same unbiased items. Exact and near duplicates form one group and land on one side (a group
with an audit task is test), and a group that was ever in the test split stays there (the frozen test set,
kept under ``$LABELLOOP_HOME/exports/<project>/frozen_test.json``). A test split smaller than the gate's
minimum is written but never frozen, and the report says so. ``split="content"`` hashes duplicate groups
instead, for data that never went through the backend.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from labelloop._optional import require
from labelloop.audit import DEFAULT_AUDIT_SHARE, MIN_AUDIT, AuditFrame, audit_key, stored_frame
from labelloop.config import ConfigMixin
from labelloop.data.jsonl import write_jsonl
from labelloop.errors import AnnotationError, ConfigError, MissingExtraError
from labelloop.labeling.kinds import answer_of, export_value, kind_of
from labelloop.labeling.kinds.base import pairwise_agreement
from labelloop.labeling.schema import ControlSpec, find_control
from labelloop.quality.dedup import content_key, duplicate_groups
from labelloop.studio import lsclient

Policy = Literal["any", "ground_truth", "agreement", "reviewed"]


@dataclass
class ExportConfig(ConfigMixin):
    """How approved labels are chosen and split."""

    config_name = "export"

    policy: Policy = field(default="any", metadata={"help": "which annotations count as approved: any, ground_truth, "
                                                             "agreement or reviewed"})
    min_agreement: int = field(default=2, metadata={"help": "annotators who must agree, for policy=agreement"})
    control: str | None = field(default=None, metadata={"help": "from_name of the control to export"})
    split: Literal["audit", "content"] = field(default="audit", metadata={
        "help": "test split: audit (the backend's audit tasks, the unbiased one) or content (a hash of each "
                "duplicate group, for data the backend never saw)"})
    audit_share: float | None = field(default=None, metadata={
        "help": "share of tasks in the audit split; empty: the backend's LABELLOOP_AUDIT_SHARE"})
    test_fraction: float = field(default=0.2, metadata={"help": "share of duplicate groups in the test split, for "
                                                                "split=content"})
    near_duplicate_threshold: float = field(default=0.7, metadata={"help": "shingle Jaccard for near duplicates"})
    salt: str = field(default="labelloop", metadata={"help": "changes which groups are test; keep it fixed"})

    def __post_init__(self) -> None:
        self.check_choices()
        if self.min_agreement < 1:
            raise ConfigError("min_agreement must be at least 1")
        if not 0.0 <= self.test_fraction < 1.0 or not 0.0 <= (self.audit_share or 0.0) < 1.0:
            raise ConfigError("test_fraction and audit_share must be in [0, 1)")


def annotation_value(result: list, control: ControlSpec):
    """A hashable value of one annotation for ``control``, or None when it did not label it (or is malformed)."""
    try:
        answer = answer_of(control, result or [])
    except AnnotationError:
        return None
    return None if answer is None else export_value(control, answer)


def _reviewed(annotation: dict) -> bool:
    if annotation.get("review_result") == "accepted":
        return True
    return any(r.get("accepted") for r in annotation.get("reviews") or [] if isinstance(r, dict))


def resolve(annotations: list[dict], control: ControlSpec, config: ExportConfig) -> tuple[object, str | None]:
    """``(value, None)`` when the task is approved under the policy, else ``(None, reason)``.

    Disagreement is a reason ("conflict: ..."), never settled silently.
    """
    live = [a for a in annotations if not a.get("was_cancelled")]
    if config.policy == "ground_truth":
        live = [a for a in live if a.get("ground_truth")]
    elif config.policy == "reviewed":
        live = [a for a in live if _reviewed(a)]
    values = [v for v in (annotation_value(a.get("result") or [], control) for a in live) if v is not None]
    if not values:
        return None, {"any": "no annotation", "ground_truth": "no ground truth annotation",
                      "reviewed": "no accepted review", "agreement": "no annotation"}[config.policy]
    votes = Counter(values).most_common()
    if config.policy == "agreement":
        if votes[0][1] < config.min_agreement:
            return None, f"fewer than {config.min_agreement} annotators agree"
        if len(votes) > 1 and votes[1][1] == votes[0][1]:
            return None, "conflict: tied majority"
        return votes[0][0], None
    if len(votes) > 1:
        return None, f"conflict: {len(values)} annotations disagree"
    return votes[0][0], None


def _record(text: str, value, control: ControlSpec) -> dict:
    return kind_of(control).record(control, text, value)


def agreement_stats(tasks: list[dict], control: ControlSpec) -> dict:
    """Agreement among tasks with two or more annotations: full-agreement share, pairwise agreement and the
    kind's own measures (:meth:`~labelloop.labeling.kinds.ControlKind.agreement`): Fleiss' kappa for
    single-label classification, the share of words tagged alike for word tags, link F1 for relations (a
    sentence or a text matched whole is rare there)."""
    multi, texts = [], []
    for task in tasks:
        values = [annotation_value(a.get("result") or [], control) for a in task.get("annotations") or []
                  if not a.get("was_cancelled")]
        values = [v for v in values if v is not None]
        if len(values) >= 2:
            multi.append(values)
            texts.append(str((task.get("data") or {}).get(control.value_key, "")))
    out: dict[str, Any] = {"tasks_with_several_annotations": len(multi)}
    if not multi:
        return out
    out["full_agreement"] = float(np.mean([len(set(v)) == 1 for v in multi]))
    out["pairwise_agreement"] = pairwise_agreement(multi)
    out.update(kind_of(control).agreement(control, texts, multi))
    return out


def _in_test(group_key: str, salt: str, fraction: float) -> bool:
    h = int(hashlib.sha256(f"{salt}\x00{group_key}".encode()).hexdigest()[:12], 16)
    return h / float(1 << 48) < fraction


@functools.lru_cache(maxsize=2)
def _groups(texts: tuple[str, ...], threshold: float) -> np.ndarray:
    """Duplicate groups of ``texts``, kept for the next call on the same texts: the dashboard splits one project's
    records on several audit frames in a row, and the grouping does not depend on the frame."""
    groups = duplicate_groups(list(texts), threshold=threshold)
    groups.setflags(write=False)
    return groups


def build_dataset(tasks: list[dict], label_config: str, config: ExportConfig,
                  frozen_test: set[str] | frozenset[str] = frozenset(), *, project_id: int | None = None,
                  frame: AuditFrame | None = None) -> tuple[list[dict], list[dict], dict, set[str]]:
    """Approved records split into ``(train, test, report, test_keys)`` from tasks with annotations.

    ``frozen_test`` holds content keys that were test in earlier exports; their groups stay test. With
    ``split="audit"`` and a ``project_id``, a group is test when one of its tasks is in the audit ``frame`` (the
    backend's current one, :func:`labelloop.audit.stored_frame`; by default the first, at the config's share).
    """
    control = find_control(label_config, config.control)
    records: list[tuple] = []
    skipped: Counter = Counter()
    conflicts: dict = {}
    for task in tasks:
        text = (task.get("data") or {}).get(control.value_key)
        if not isinstance(text, str) or not text.strip():
            skipped["no text"] += 1
            continue
        value, reason = resolve(task.get("annotations") or [], control, config)
        if reason is None:
            records.append((audit_key(task.get("id"), task.get("data")), text, value, task.get("id")))
        elif reason.startswith("conflict"):
            conflicts[task.get("id")] = reason
        else:
            skipped[reason] += 1
    texts = [t for _, t, _, _ in records]
    groups = _groups(tuple(texts), config.near_duplicate_threshold)
    keys = [content_key(t) for t in texts]
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(int(g), []).append(i)
    train: list[dict] = []
    test: list[dict] = []
    test_keys = set(frozen_test)
    if config.split == "audit" and project_id is not None and frame is None:
        frame = AuditFrame(project_id, DEFAULT_AUDIT_SHARE if config.audit_share is None else config.audit_share)
    for idx in members.values():
        group_keys = {keys[i] for i in idx}
        if config.split == "audit" and frame is not None:
            chosen = any(records[i][0] in frame for i in idx)
        else:
            chosen = _in_test(min(group_keys), config.salt, config.test_fraction)
        is_test = bool(group_keys & frozen_test) or chosen
        for i in idx:
            (test if is_test else train).append({**_record(texts[i], records[i][2], control), "task_id": records[i][3]})
        if is_test:
            test_keys |= group_keys
    train_keys = {content_key(str(r.get("text", r.get("prompt")))) for r in train}
    exact_dupes = len(texts) - len(set(keys))
    report = {
        "policy": asdict(config),
        "control": asdict(control),
        "tasks": len(tasks),
        "exported": {"train": len(train), "test": len(test)},
        "labels": {"train": _label_counts(train), "test": _label_counts(test)},
        "skipped": dict(skipped),
        "conflicts": {str(k): v for k, v in conflicts.items()},
        "duplicates": {"exact": exact_dupes, "near": len(texts) - len(members) - exact_dupes,
                       "groups_with_duplicates": sum(len(m) > 1 for m in members.values())},
        "leakage": {"test_texts_in_train": len(train_keys & {content_key(str(r.get("text", r.get("prompt"))))
                                                              for r in test})},
        "agreement": agreement_stats(tasks, control),
    }
    return train, test, report, test_keys


def _label_counts(records: list[dict]) -> dict:
    counts: Counter = Counter()
    for r in records:
        if "label" in r:
            counts[r["label"]] += 1
        elif "labels" in r:
            counts.update(r["labels"])
        elif "spans" in r:
            counts.update(s["label"] for s in r["spans"])
            counts.update(x["label"] for x in r.get("relations", ()))
        elif "tags" in r:
            counts.update(t for t in r["tags"] if t is not None)
        else:
            counts["response"] += 1
    return dict(sorted(counts.items()))


def export_dataset(client, project_id: int, out: Path, config: ExportConfig, *, state_dir: Path,
                   min_test: int = MIN_AUDIT, instance: str = "") -> dict:
    """Write ``train.jsonl``, ``test.jsonl`` and ``report.json`` for a project; returns the report.

    ``report["test_split"]`` says how many test items there are and whether that reaches ``min_test`` (the
    gate's minimum); a smaller test split is not frozen, so later exports can grow it.
    """
    project = lsclient.call("reading the project", client.projects.get, id=project_id)
    tasks = [{"id": t.id, "data": t.data, "annotations": t.annotations or []}
             for t in lsclient.iter_tasks(client, project_id, fields="all")]
    share = DEFAULT_AUDIT_SHARE if config.audit_share is None else config.audit_share
    train, test, report, test_keys = build_dataset(tasks, project.label_config, config,
                                                   load_frozen_test(state_dir, project_id), project_id=project_id,
                                                   frame=stored_frame(state_dir, project_id, share, instance=instance))
    if report["leakage"]["test_texts_in_train"]:
        raise ConfigError(f"leakage check failed: {report['leakage']} (a bug: please report it)")
    if not train and not test:
        why = f"; skipped: {report['skipped']}" if report["skipped"] else ""
        raise ConfigError(f"project {project_id} has nothing to export: {len(tasks)} tasks, none with a usable "
                          f"annotation{why}. Annotate tasks in Label Studio (and check that the labeling config "
                          "is the one they were annotated with), then export again; nothing was written")
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        write_jsonl(out / f"{name}.jsonl", rows)
    enough = len(test) >= min_test
    report.update(project_id=project_id, exported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  test_split={"n": len(test), "minimum": min_test, "enough": enough, "frozen": enough,
                              "what": config.split})
    try:
        datasets = require("datasets", "train")
    except MissingExtraError as e:  # the JSONL files are the export; the Hugging Face copy is a convenience
        report["huggingface"] = f"not written: {e}"
    else:
        datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in
                              (("train", train), ("test", test)) if rows}).save_to_disk(str(out / "hf"))
        report["huggingface"] = str(out / "hf")
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if enough:
        save_frozen_test(state_dir, project_id, test_keys)
    return report


def frozen_test_path(state_dir: Path, project_id: int) -> Path:
    return Path(state_dir) / "exports" / str(project_id) / "frozen_test.json"


def load_frozen_test(state_dir: Path, project_id: int) -> set[str]:
    """Content keys of the project's frozen test split (empty before the first export or freeze)."""
    path = frozen_test_path(state_dir, project_id)
    return set(json.loads(path.read_text())) if path.exists() else set()


def save_frozen_test(state_dir: Path, project_id: int, keys: set[str]) -> None:
    path = frozen_test_path(state_dir, project_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(sorted(keys)))
    tmp.replace(path)
