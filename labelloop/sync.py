"""Label Studio projects from scripts: create, connect the backend, pre-annotate in bulk.

Every function takes a ``label_studio_sdk.LabelStudio`` client (see :func:`labelloop.lsclient.make_client`).
"""

from __future__ import annotations

import csv
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from tqdm import tqdm

from labelloop import lsclient
from labelloop.dedup import NearDuplicateIndex, content_key
from labelloop.errors import ConfigError, LabelLoopError, LabelStudioError, LabelStudioUnavailableError
from labelloop.jsonl import iter_jsonl
from labelloop.retry import Retry

log = logging.getLogger(__name__)

SSRF_HELP = (
    "Label Studio refuses ML backends on loopback and private addresses by default. Start Label Studio with "
    "USE_DEFAULT_BANNED_SUBNETS=false (or ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false), or give "
    "the backend an address Label Studio may reach (e.g. its docker-compose service name)."
)


def probe_backend(url: str, *, basic_auth: tuple[str, str] | None = None, timeout: float = 10.0) -> bool:
    """Check that ``url`` is a LabelLoop backend before Label Studio is told to use it.

    Raises :class:`ConfigError` when something else answers there (Label Studio, the dashboard, another
    server). Returns False when nothing answers from here: Label Studio may still reach it from its own
    network (docker), so it is left to Label Studio to say.
    """
    lsclient.check_url(url, "the backend URL (--backend / --connect)")
    try:
        response = httpx.get(url.rstrip("/") + "/health", auth=basic_auth, timeout=timeout)
    except httpx.HTTPError:
        log.warning("no answer from %s from this machine; asking Label Studio to connect to it anyway", url)
        return False
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code == 200 and isinstance(answer, dict) and answer.get("model_class") == "LabelLoop":
        return True
    what = "a web page" if response.text.lstrip()[:1] == "<" else f"HTTP {response.status_code}"
    raise ConfigError(f"{url} is not a LabelLoop backend (its /health answered {what}): pass the address "
                      "`labelloop backend` listens on (default http://127.0.0.1:9090), not Label Studio's or "
                      "the dashboard's")


def delete_project(client, project_id: int) -> None:
    """Remove a project (used to undo one this tool just created)."""
    lsclient.call(f"deleting project {project_id}", client.projects.delete, id=project_id, retry=lsclient.BEST_EFFORT)


def connect_backend(client, project_id: int, backend_url: str, *, title: str = "LabelLoop",
                    basic_auth: tuple[str, str] | None = None, interactive: bool = True):
    """Connect the ML backend at ``backend_url`` to a project; returns the SDK's ML backend object.

    With ``basic_auth`` the connection and the webhook Label Studio creates for it both carry the credentials.
    """
    check_backend_serves(client, project_id, backend_url, basic_auth=basic_auth)
    kwargs: dict[str, Any] = {"project": project_id, "url": backend_url.rstrip("/"), "title": title,
                              "is_interactive": interactive}
    if basic_auth:
        kwargs.update(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0], basic_auth_pass=basic_auth[1])
    try:
        backend = lsclient.call(f"connecting the ML backend {backend_url}", client.ml.create, **kwargs)
    except LabelStudioError as e:
        if "reserved network address" in str(e) or "banned" in str(e).lower():
            raise LabelStudioError(f"{e}\n{SSRF_HELP}") from e
        raise
    if basic_auth:
        lsclient.ensure_webhook_auth(client, project_id, lsclient.basic_auth_header(*basic_auth))
    return backend


def check_backend_serves(client, project_id: int, backend_url: str, *,
                         basic_auth: tuple[str, str] | None = None) -> None:
    """Ask the backend whether it can serve the project's labeling config before Label Studio does: Label Studio
    shows only a generic "doesn't look like a valid ML backend", while the backend says what to change. A
    backend this machine can't reach (an address only Label Studio's network knows) is left to Label Studio."""
    project = lsclient.call(f"reading project {project_id}", client.projects.get, id=project_id)
    config = getattr(project, "label_config", None)
    if not isinstance(config, str) or not config.strip():
        return
    try:
        response = httpx.post(backend_url.rstrip("/") + "/setup", json={"project": str(project_id), "schema": config},
                              auth=basic_auth, timeout=60)
    except httpx.HTTPError:
        return
    try:
        error = response.json().get("error") if response.status_code >= 400 else None
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str):
        raise ConfigError(f"the backend at {backend_url} can't serve project {project_id}: {error}")


class Predictor(Protocol):
    """Where pre-annotations come from: the running backend, or the models on this machine."""

    def model_version(self, project_id: int, label_config: str) -> str: ...

    def predict(self, tasks: list[dict], project_id: int, label_config: str) -> list[dict]: ...


class BackendPredictor:
    """Predictions from a running LabelLoop backend over HTTP (what Label Studio itself sees)."""

    def __init__(self, url: str, *, basic_auth: tuple[str, str] | None = None, timeout: float = 600) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), auth=basic_auth, timeout=timeout)

    def _post(self, path: str, payload: dict) -> dict:
        try:
            response = self._http.post(path, json=payload)
        except httpx.HTTPError as e:
            raise LabelLoopError(f"The backend at {self._http.base_url} did not answer ({type(e).__name__}); "
                                 "is `labelloop backend` running?") from e
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code == 200 and isinstance(answer, dict):
            return answer
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):  # the backend's own error
            raise LabelLoopError(f"The backend answered HTTP {response.status_code}: {answer['error']}")
        what = "a web page" if response.text.lstrip()[:1] == "<" else f"HTTP {response.status_code}"
        raise LabelLoopError(f"{self._http.base_url} answered {path} with {what}, not as a LabelLoop backend: "
                             "pass --backend the address `labelloop backend` listens on (default "
                             "http://127.0.0.1:9090)")

    def model_version(self, project_id: int, label_config: str) -> str:
        return self._post("/setup", {"project": str(project_id), "schema": label_config})["model_version"]

    def predict(self, tasks: list[dict], project_id: int, label_config: str) -> list[dict]:
        return self._post("/predict", {"tasks": tasks, "project": str(project_id), "label_config": label_config})["results"]


class LocalPredictor:
    """Predictions from the models under ``$LABELLOOP_HOME``, in this process (no server needed)."""

    def __init__(self, service) -> None:
        self.service = service

    def model_version(self, project_id: int, label_config: str) -> str:
        return self.service.setup(project_id, label_config)

    def predict(self, tasks: list[dict], project_id: int, label_config: str) -> list[dict]:
        return self.service.predict(tasks, project=project_id, label_config=label_config)


@dataclass
class PreannotateReport:
    """What a pre-annotation run did."""

    model_version: str
    already_done: int = 0
    predicted: int = 0
    stored: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    restarts: int = 0
    seconds: float = 0.0


def preannotate(client, project_id: int, predictor: Predictor, *, only_unlabeled: bool = False,
                batch_size: int = 1000, chunk: int = 1000, progress: bool = True, max_restarts: int = 5,
                set_version: bool = True) -> PreannotateReport:
    """Predict every task (or every unlabeled one) and store the predictions with ``import_predictions``.

    Much faster than Label Studio's "Retrieve predictions" action, which saves predictions one by one
    and times out on big projects. Idempotent: tasks that already hold a prediction of the current
    ``model_version`` are skipped, so a run that was killed, or that lost Label Studio halfway,
    continues where it stopped without duplicates. Listing, predicting and pushing overlap. Finally
    sets the project's ``model_version`` so Label Studio's scores and sorting use these predictions.
    """
    started = time.perf_counter()
    project = lsclient.call("reading the project", client.projects.get, id=project_id)
    version = predictor.model_version(project_id, project.label_config)
    report = PreannotateReport(version)
    filters = [lsclient.UNLABELED] if only_unlabeled else None
    # A restarting Label Studio is down for tens of seconds (migrations, workers): waits of 2, 4, 8, 16, 30 s
    # give it about a minute in all before the run reports it gone.
    resume_waits = iter(Retry(attempts=max_restarts + 1, base=2.0, cap=30.0, jitter=0.0).waits())
    with tqdm(desc=f"pre-annotating ({version})", unit="task", disable=not progress,
              total=None if only_unlabeled else project.task_number) as bar:
        while True:
            try:
                done = lsclient.task_ids_with_version(client, project_id, version)
                if report.restarts == 0:
                    report.already_done = len(done)
                bar.n = len(done)
                bar.refresh()
                _preannotate_pass(client, project_id, project.label_config, predictor, version, done, filters,
                                  batch_size, chunk, report, bar)
                break
            except LabelStudioUnavailableError as e:
                if report.restarts >= max_restarts:
                    raise
                report.restarts += 1
                wait = next(resume_waits)
                log.warning("Label Studio went away (%s); resuming from what it has stored in %.0fs", e, wait)
                time.sleep(wait)
    if set_version and (report.stored or report.already_done):
        lsclient.set_model_version(client, project_id, version)
    report.seconds = time.perf_counter() - started
    return report


def _preannotate_pass(client, project_id, label_config, predictor, version, done, filters, batch_size, chunk,
                      report: PreannotateReport, bar) -> None:
    tasks: queue.Queue = queue.Queue(maxsize=4 * batch_size)
    stop = threading.Event()

    def fetch() -> None:
        try:
            for task in lsclient.iter_tasks(client, project_id, filters=filters, page_size=1000, include="id,data"):
                if task.id not in done:
                    while not stop.is_set():
                        try:
                            tasks.put({"id": task.id, "data": task.data}, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                if stop.is_set():
                    return
            tasks.put(None)
        except BaseException as e:  # handed to the main thread, which raises it
            tasks.put(e)

    def push(rows: list[dict]) -> int:
        return lsclient.push_predictions(client, project_id, rows, chunk=chunk)

    def finish(future) -> None:
        stored = future.result()
        report.stored += stored
        bar.update(stored)

    fetcher = threading.Thread(target=fetch, daemon=True)
    fetcher.start()
    pending: list[dict] = []
    with ThreadPoolExecutor(max_workers=1) as pusher:
        in_flight = None
        try:
            finished = False
            while not finished:
                batch: list = []
                while len(batch) < batch_size:
                    item = tasks.get()
                    if isinstance(item, BaseException):
                        raise item
                    if item is None:
                        finished = True
                        break
                    batch.append(item)
                if batch:
                    for task, pred in zip(batch, predictor.predict(batch, project_id, label_config), strict=True):
                        if "error" in pred:
                            report.failed[task["id"]] = pred["error"]
                            continue
                        pending.append({"task": task["id"], "result": pred["result"], "score": pred["score"],
                                        "model_version": pred["model_version"]})
                    report.predicted += len(batch)
                if len(pending) >= chunk or (finished and pending):
                    if in_flight is not None:
                        finish(in_flight)  # one push at a time, overlapping the next predictions
                    in_flight, pending = pusher.submit(push, pending), []
            if in_flight is not None:
                finish(in_flight)
        finally:
            stop.set()


def create_project(client, title: str, label_config: str, tasks: Sequence[dict] = (), *,
                   uncertainty_sampling: bool = True, description: str = ""):
    """Create a project (optionally serving the least confident task first) and import ``tasks``."""
    kwargs: dict[str, Any] = {"title": title, "label_config": label_config, "description": description}
    if uncertainty_sampling:
        kwargs["sampling"] = "Uncertainty sampling"
    project = lsclient.call(f"creating project {title!r}", client.projects.create, **kwargs)
    if tasks:
        lsclient.call("importing tasks", client.projects.import_tasks, id=project.id, request=list(tasks))
    return project


QUEUE_VIEW_TITLE = "Least confident first"


def setup_uncertainty_queue(client, project_id: int, *, title: str = QUEUE_VIEW_TITLE):
    """Serve the least confident task next, and save a Data Manager tab listing unlabeled tasks that way.

    Sets the project's sampling to "Uncertainty sampling" (the labeling stream then takes the task with
    the lowest prediction score) and creates, once, a tab sorted by ascending prediction score.
    """
    lsclient.call("setting uncertainty sampling", client.projects.update, id=project_id,
                  sampling="Uncertainty sampling")
    for view in lsclient.call("listing Data Manager tabs", client.views.list, project=project_id):
        if (view.data or {}).get("title") == title:
            return view
    data = {
        "title": title,
        "ordering": ["tasks:predictions_score"],
        "filters": {"conjunction": "and", "items": [lsclient.UNLABELED]},
    }
    return lsclient.call("creating a Data Manager tab", client.views.create, project=project_id, data=data)


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
