"""Publishing a model version to Label Studio, so its queue follows the model.

After a training every task still open is re-scored (an annotated task keeps the predictions it was
labelled beside: re-predicting it would change nothing annotators see), the predictions are imported in
bulk and the project's ``model_version`` is set (Label Studio accepts that only once predictions of the
version exist, so the order matters). Older versions' predictions beyond the newest ``keep`` are then deleted, so a project
does not collect a full set per retrain. Calls use short timeouts; a publish that fails is recorded and
retried with back-off until Label Studio answers, and a newer version replaces an older one still owed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from labelloop.errors import LabelLoopError
from labelloop.pool.background import Rescorer
from labelloop.pool.working_set import AutoRefill
from labelloop.serving.clients import Clients
from labelloop.serving.metrics import Metrics
from labelloop.serving.store import Store
from labelloop.studio import lsclient

log = logging.getLogger(__name__)

OURS = re.compile(r"labelloop-v(\d+)(\+.*)?$")
RETRY_WAITS = (5.0, 15.0, 60.0, 300.0)
# A publish under way is owed for this long: if its process dies, another retries it then, never meanwhile.
PUBLISH_LEASE = 600.0
REFILL_CHECK = 30.0  # seconds between two looks at whether a pool's project needs refilling


class Predicts(Protocol):
    """What the publisher needs of :class:`labelloop.serving.prediction.Predictions`."""

    def predict(self, tasks: Sequence[object], project_id: int | None, label_config: str | None,
                model_version: str | None = None) -> list[dict[str, Any]]:
        """Label Studio predictions for ``[{"id", "data"}]``, one per task."""

    def queue_order(self, project_id: int, ids: list[int], data: list[dict[str, Any]], scores: NDArray[Any], *,
                    cold: bool) -> NDArray[Any]:
        """The queue's scores for the open tasks from their confidences (``cold``: none is labelled yet)."""

    def model_version(self, project_id: int) -> str:
        """What serves the project now."""


class Publisher:
    """Pushes versions of the store's projects to Label Studio, predicted by ``predictions``."""

    def __init__(self, store: Store, clients: Clients, predictions: Predicts, *, keep: int = 3,
                 metrics: Metrics | None = None, rescorer: Rescorer | None = None,
                 refill: AutoRefill | None = None) -> None:
        self.store = store
        self.clients = clients
        self.predictions = predictions
        self.keep = keep
        self.metrics = metrics or Metrics()
        self.rescorer = rescorer  # re-scores a project's pool (beyond Label Studio's working set) once a version serves
        self.refill = refill  # tops a pool's project up before a publish, once annotators have drained it
        self._refill_warned: set[tuple[int, str]] = set()
        self._refill_checked: dict[int, float] = {}  # project -> when refill_due last looked at it (monotonic)
        self._failures: dict[int, int] = {}
        self._publishing: set[int] = set()  # projects with a publish under way in this process
        self._lock = threading.Lock()

    def publish(self, project_id: int, version: str, *, chunk: int = 256, timeout: float | None = None) -> int:
        """Push ``version`` now; returns how many predictions were stored (0: no Label Studio known).

        ``timeout`` (seconds per call) defaults to the short one of background work; a lead who waits on a
        promotion can afford a longer one.

        Raises :class:`~labelloop.errors.LabelStudioError` when Label Studio fails; the version is then
        owed and :meth:`retry_due` tries again later.
        """
        client = self.clients.client_for(project_id, timeout=timeout)
        if client is None:
            log.warning("project %s: %s trained, but no Label Studio address and token are known; set "
                        "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY so scores and queue order follow it",
                        project_id, version)
            return 0
        with self._lock:
            self._publishing.add(project_id)
        self.store.set_publish_pending(project_id, version, after=time.time() + PUBLISH_LEASE)
        try:
            stored = self._push(client, project_id, version, chunk)
        except LabelLoopError as e:
            failures = self._failures.get(project_id, 0)
            self._failures[project_id] = failures + 1
            wait = RETRY_WAITS[min(failures, len(RETRY_WAITS) - 1)]
            self.store.set_publish_pending(project_id, version, error=str(e), after=time.time() + wait)
            self.metrics.add(publish_failures=1)
            log.warning("project %s: publishing %s failed (%s); retrying in %.0fs", project_id, version, e, wait)
            raise
        finally:
            with self._lock:
                self._publishing.discard(project_id)
        self._failures.pop(project_id, None)
        self.store.set_publish_pending(project_id, None)
        self.store.set_published(project_id, version)
        self.metrics.add(publishes=1)
        return stored

    def retry_due(self) -> None:
        """Publish what is owed and due: the version serving now."""
        for project_id, _owed in self.store.publishes_due(time.time()):
            with self._lock:
                if project_id in self._publishing:  # under way in this process: not owed twice
                    continue
            try:
                self.publish(project_id, self.predictions.model_version(project_id))
            except LabelLoopError:
                pass  # logged and rescheduled by publish

    def refill_due(self) -> None:
        """Refill the pools' projects that annotators drained while nothing was published (a project retrained
        only on the Train button): each is looked at once per 30 s, and one that needs it gets a publish of the
        version serving it, which refills it first and predicts what it brought."""
        if self.refill is None:
            return
        for project_id in self.store.projects():
            last = self._refill_checked.get(project_id)
            with self._lock:
                if (last is not None and time.monotonic() - last < REFILL_CHECK) or project_id in self._publishing:
                    continue
            self._refill_checked[project_id] = time.monotonic()
            if not self.refill.has_pool(project_id):
                continue
            client = self.clients.client_for(project_id)
            if client is None:
                continue
            try:
                if self.refill.needed(client, project_id, self.store.label_config(project_id)):
                    self.publish(project_id, self.predictions.model_version(project_id))
            except LabelLoopError as e:  # a publish that failed is owed and logged; a count that failed, here
                log.debug("project %s: checking its working set failed: %s", project_id, e)

    def _push(self, client: Any, project_id: int, version: str, chunk: int) -> int:
        if self.refill is not None:  # first, so the texts it brings are predicted by this version with the rest
            self._top_up(client, project_id)
        # What a retrain can still change for annotators: the open tasks. Label Studio filters them, so a project
        # whose labelled tasks pile up (a pool's working set) is not listed whole on every publish.
        tasks = [t for t in lsclient.iter_tasks(client, project_id, page_size=1000, include="id,data,is_labeled",
                                                filters=[lsclient.OPEN], retry=lsclient.BEST_EFFORT)
                 if not t.is_labeled]
        # A task that holds this version's prediction already (a rollback to a version still stored, a publish
        # retried after it failed half-way) is not given a second one.
        held = lsclient.task_ids_with_version(client, project_id, version) if tasks else set()
        preds: list[dict[str, Any]] = []
        for i in range(0, len(tasks), chunk):
            preds += self.predictions.predict([{"id": t.id, "data": t.data} for t in tasks[i : i + chunk]], project_id, None)
        ok = [i for i, p in enumerate(preds) if "error" not in p and p["model_version"] == version]
        if not ok:
            return 0
        scores = self.predictions.queue_order(
            project_id, [tasks[i].id for i in ok], [tasks[i].data for i in ok],
            np.array([preds[i]["score"] if preds[i]["score"] is not None else 0.0 for i in ok]),
            cold=not lsclient.any_task(client, project_id, [lsclient.COMPLETED], retry=lsclient.BEST_EFFORT),
        )
        rows = [{"task": tasks[i].id, "result": preds[i]["result"], "score": float(score), "model_version": version}
                for i, score in zip(ok, scores, strict=True) if tasks[i].id not in held]
        stored = lsclient.push_predictions(client, project_id, rows)
        if self.predictions.model_version(project_id) != version:
            # what serves now: a publish that another one overtook does not set it back
            # A promotion or rollback (here or in another process) changed what serves while we pushed: its
            # own publish sets the project's model_version, and this one must not set it back.
            log.info("project %s: %s no longer serves; its predictions are stored, model_version left alone",
                     project_id, version)
            return stored
        lsclient.set_model_version(client, project_id, version)
        log.info("project %s: pushed %d predictions of %s", project_id, stored, version)
        self._prune(client, project_id, version)
        if self.rescorer is not None:
            self.rescorer.start(project_id, version)
        return stored

    def _top_up(self, client: Any, project_id: int) -> None:
        """Refill the project's working set from its pool when annotators have drained it (best effort: a refill
        that fails is logged, once per reason, and the publish goes on)."""
        assert self.refill is not None
        try:
            done = self.refill(client, project_id, self.store.label_config(project_id))
        except Exception as e:  # a damaged pool file as much as Label Studio: the publish must still go out
            if (project_id, str(e)) not in self._refill_warned:
                self._refill_warned.add((project_id, str(e)))
                log.warning("project %s: the working set was not refilled from the pool: %s", project_id, e,
                            exc_info=not isinstance(e, (LabelLoopError, OSError)))
            return
        if done is not None and done.imported:
            self.metrics.add(refilled_tasks=done.imported)
            log.info("project %s: %d pool tasks imported (%d audit; %d were open)", project_id, done.imported,
                     done.audit, done.open_before)

    def _prune(self, client: Any, project_id: int, version: str) -> None:
        """Delete the predictions of our versions older than the newest ``keep`` (best effort)."""
        if self.keep <= 0:
            return
        try:
            stored = lsclient.prediction_versions(client, project_id)
            ours = sorted((int(m.group(1)), v) for v in stored if (m := OURS.match(v)) and v != version)
            for _, old in ours[: max(0, len(ours) - (self.keep - 1))]:
                lsclient.delete_prediction_version(client, project_id, old)
                self.metrics.add(pruned_versions=1)
        except LabelLoopError as e:
            log.warning("project %s: old predictions were not pruned: %s", project_id, e)
