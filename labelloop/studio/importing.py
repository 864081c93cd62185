"""Tasks into a Label Studio project: read a file of texts and import them, skipping exact and near duplicates."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from labelloop.data.jsonl import iter_jsonl
from labelloop.errors import ConfigError, LabelStudioError
from labelloop.quality.dedup import NearDuplicateIndex, content_key
from labelloop.studio import lsclient


def read_tasks(path: str | Path, *, text_field: str = "text") -> list[dict]:
    """Task data from JSONL (objects, or ``{"data": {...}}``), CSV (a header row) or plain text (a task per line).

    Every task must carry a non-empty ``text_field``; the error names the line that does not.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    rows: list[tuple[int, object]] = []
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; check the path (JSONL, CSV, TSV or plain text, a task per line)")
    with open(path, encoding="utf-8", newline="") as f:
        if suffix in (".jsonl", ".ndjson"):
            rows = [(n, obj.get("data") if isinstance(obj, dict) and isinstance(obj.get("data"), dict) else obj)
                    for n, obj in iter_jsonl(path)]
        elif suffix in (".csv", ".tsv"):
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            if reader.fieldnames is None:
                raise ConfigError(f"{path} is empty: it needs a header row with a {text_field!r} column, then a "
                                  "task per row")
            if text_field not in reader.fieldnames:
                raise ConfigError(f"{path}: no {text_field!r} column (columns: {reader.fieldnames}); use --text-field")
            rows = [(n, dict(row)) for n, row in enumerate(reader, 2)]
        elif suffix in (".txt", ""):
            rows = [(n, {text_field: line.rstrip("\r\n")}) for n, line in enumerate(f, 1) if line.strip()]
        else:
            raise ConfigError(f"{path}: unknown file type {suffix!r}; use .jsonl, .csv, .tsv or .txt")
    if not rows:
        raise ConfigError(f"{path} holds no tasks: add a task per line (a row after the header for CSV), each with "
                          f"its text in the {text_field!r} field")
    tasks = []
    for n, data in rows:
        if not isinstance(data, dict) or not isinstance(data.get(text_field), str) or not data[text_field].strip():
            raise ConfigError(f"{path}:{n}: the {text_field!r} field is missing or empty; every task needs its text "
                              "there (or name the field that holds it with --text-field)")
        tasks.append(data)
    return tasks


@dataclass
class ImportReport:
    """What an import did; duplicates map a row number to what it duplicates (a row or a task id)."""

    read: int = 0
    imported: int = 0
    exact: dict[int, str] = field(default_factory=dict)
    near: dict[int, str] = field(default_factory=dict)
    duplicates: str = "skip"

    def summary(self) -> str:
        verb = {"skip": "skipped", "flag": "imported with data.duplicate_of", "keep": "imported"}[self.duplicates]
        lines = [f"read {self.read} tasks, imported {self.imported}; exact duplicates: {len(self.exact)}, "
                 f"near duplicates: {len(self.near)} ({verb})"]
        for kind, found in (("exact", self.exact), ("near", self.near)):
            lines += [f"  row {row}: {kind} duplicate of {what}" for row, what in list(found.items())[:10]]
        return "\n".join(lines)


def import_tasks(client, project_id: int, tasks: Sequence[dict], *, text_field: str = "text",
                 duplicates: str = "skip", threshold: float = 0.7, chunk: int = 1000,
                 progress: bool = True) -> ImportReport:
    """Import task data in chunks, finding exact and near duplicates within the batch and in the project.

    ``duplicates``: ``"skip"`` leaves them out, ``"flag"`` imports them with ``data.duplicate_of``, ``"keep"``
    imports them as they are; all are reported. With ``"skip"``, re-running an import that was cut off
    imports only what is missing.
    """
    if duplicates not in ("skip", "flag", "keep"):
        raise ConfigError(f"duplicates must be skip, flag or keep, not {duplicates!r}")
    report = ImportReport(read=len(tasks), duplicates=duplicates)
    keys: dict[str, str] = {}
    index = NearDuplicateIndex(threshold)
    for task in lsclient.iter_tasks(client, project_id, page_size=1000, include="id,data"):
        text = task.data.get(text_field)
        if isinstance(text, str):
            keys.setdefault(content_key(text), f"task {task.id}")
            index.add(f"task {task.id}", text)
    to_import = []
    for row, data in enumerate(tasks, 1):
        text = data[text_field]
        key = content_key(text)
        found = keys.get(key)
        kind: dict[int, str] | None = report.exact
        if found is None:
            near = index.find(text)
            found, kind = (str(near[0][0]), report.near) if near else (None, None)
        if found is None:
            keys[key] = f"row {row}"
            index.add(f"row {row}", text)
        elif kind is not None:
            kind[row] = found
            if duplicates == "skip":
                continue
            if duplicates == "flag":
                data = {**data, "duplicate_of": found}
        to_import.append(data)
    with tqdm(total=len(to_import), desc="importing", unit="task", disable=not progress) as bar:
        for i in range(0, len(to_import), chunk):
            part = to_import[i : i + chunk]
            try:
                lsclient.call("importing tasks", client.projects.import_tasks, id=project_id, request=part, retry=None)
            except LabelStudioError as e:
                raise LabelStudioError(f"{e}\n{report.imported} of {len(to_import)} tasks were imported before this; "
                                       "run the same import again: the ones already in the project are skipped.") from e
            report.imported += len(part)
            bar.update(len(part))
    return report
