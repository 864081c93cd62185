"""Pre-annotate a project in bulk from the running backend or the models on this machine, resumably."""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from tqdm import tqdm

from labelloop.errors import LabelLoopError, LabelStudioUnavailableError
from labelloop.retry import Retry
from labelloop.studio import lsclient

log = logging.getLogger(__name__)


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
