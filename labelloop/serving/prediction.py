"""What answers a prediction request: the project's labeling config, the source that predicts for it (the
serving version, a stored one, the LLM, or zero-shot), the predictions themselves, and the order of Label
Studio's queue. The facade, the publisher and the training worker all ask :class:`Predictions`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelloop.audit import audit_key
from labelloop.errors import ConfigError, ModelError, TaskDataError, UnsupportedConfigError
from labelloop.labeling.kinds import ClassificationKind, kind_of
from labelloop.labeling.schema import SUPPORTED, TaskSchema, cached_schema
from labelloop.labeling.tasks import task_text
from labelloop.models import Features
from labelloop.serving import predictors
from labelloop.serving.ladder import Ladder
from labelloop.serving.llm_source import LLMSource
from labelloop.serving.metrics import Metrics
from labelloop.serving.queue import place_audit, queue_order
from labelloop.serving.store import Store
from labelloop.serving.versions import UNTRAINED_VERSION, Bundle, VersionRegistry
from labelloop.settings import LabelLoopSettings

log = logging.getLogger(__name__)


class ProjectSchemas:
    """Each project's parsed labeling config, as stored on connect; and whether a config can be served."""

    def __init__(self, store: Store, settings: LabelLoopSettings) -> None:
        self.store = store
        self.settings = settings

    def __call__(self, project_id: int) -> TaskSchema:
        schema = self.find(project_id)
        if schema is None:
            raise ModelError(f"Project {project_id} has no labeling config on record: connect the backend to it "
                             "first (Label Studio sends it on connect).")
        return schema

    def config(self, project_id: int) -> str | None:
        """The project's labeling config as stored on connect (None: none on record)."""
        return self.store.label_config(project_id)

    def find(self, project_id: int) -> TaskSchema | None:
        """The project's parsed config (None: none on record)."""
        label_config = self.config(project_id)
        return cached_schema(label_config, self.settings.max_labels) if label_config else None

    def servable(self, label_config: object) -> TaskSchema:
        """The parsed config; :class:`~labelloop.errors.UnsupportedConfigError` (saying what to do) when this
        backend can't serve it."""
        if not isinstance(label_config, str):
            raise UnsupportedConfigError("The labeling config must be XML text.\n" + SUPPORTED)
        schema = cached_schema(label_config, self.settings.max_labels)
        if self.settings.predictor == "model" and any(not kind_of(c).trainable for c in schema.controls):
            raise UnsupportedConfigError(
                "<TextArea> responses are drafted by an LLM: start the backend with LABELLOOP_PREDICTOR=llm (the "
                "local SmolLM2, or an OpenAI-compatible server through LABELLOOP_LLM_BASE_URL).\n" + SUPPORTED)
        return schema


class Predictions:
    """Predicts for any project, names the ``model_version`` that serves it, and orders its queue."""

    def __init__(self, settings: LabelLoopSettings, schemas: ProjectSchemas, registry: VersionRegistry,
                 features: Features, llm: LLMSource, ladder: Ladder, metrics: Metrics) -> None:
        self.settings = settings
        self.schemas = schemas
        self.registry = registry
        self.features = features
        self.llm = llm
        self.ladder = ladder
        self.metrics = metrics
        self._warned: set[tuple[int | None, str]] = set()

    def predict(self, tasks: Sequence[object], project_id: int | None, label_config: str | None,
                model_version: str | None = None) -> list[dict[str, Any]]:
        """One Label Studio prediction per task, in order (see :meth:`ModelService.predict`)."""
        started = time.perf_counter()
        if label_config is None and project_id is not None:
            label_config = self.schemas.config(project_id)
        if not label_config:
            raise ConfigError("No labeling config: send label_config, or connect the project so /setup stores it.")
        schema = self.schemas.servable(label_config)
        source = self.source(project_id, schema, model_version)
        errors: list[str | None] = [None] * len(tasks)
        texts: dict[str, list[str | None]] = {}
        for key in schema.value_keys:
            texts[key] = []
            for i, task in enumerate(tasks):
                try:
                    texts[key].append(task_text(task, key, self.settings.max_text_chars))
                except TaskDataError as e:
                    texts[key].append(None)
                    errors[i] = errors[i] or str(e)
        results: list[list[dict[str, Any]]] = [[] for _ in tasks]
        scores: list[list[float]] = [[] for _ in tasks]
        for spec in schema.controls:
            rows = [i for i, t in enumerate(texts[spec.value_key]) if t is not None and errors[i] is None]
            column = [texts[spec.value_key][i] or "" for i in rows]
            made = kind_of(spec).predict(spec, source, column, self.settings.strategy,
                                         regions=[results[i] for i in rows]) if rows else None
            if made is None:  # nothing to predict, or no model for this control yet
                continue
            for i, p in zip(rows, made, strict=True):
                results[i] += p.regions
                if p.confidence is not None:
                    scores[i].append(p.confidence)
        out: list[dict[str, Any]] = []
        for i, task in enumerate(tasks):
            if errors[i] is not None:
                log.warning("no prediction for task %s: %s", task.get("id") if isinstance(task, dict) else None,
                            errors[i])
                out.append({"result": [], "model_version": source.version, "error": errors[i]})
            else:
                out.append({"result": results[i], "score": float(np.mean(scores[i])) if scores[i] else None,
                            "model_version": source.version})
        self.metrics.add(predict_requests=1, predicted_tasks=len(tasks), failed_tasks=sum(e is not None for e in errors),
                         predict_seconds=time.perf_counter() - started)
        return out

    def model_version(self, project_id: int) -> str:
        """The ``model_version`` serving the project now (an LLM name when the LLM predicts)."""
        return str(self.source(project_id, self.schemas(project_id), None).version)

    def choice_probabilities(self, project_id: int, text: str, *, model_version: str | None = None
                             ) -> dict[str, dict[str, float]]:
        """Every label's probability for ``text``, per classification control (``from_name`` first)."""
        schema = self.schemas(project_id)
        source = self.source(project_id, schema, model_version, mode="model")
        out = {}
        for spec in schema.controls:
            probs = source.class_probs(spec, [text]) if isinstance(kind_of(spec), ClassificationKind) else None
            if probs is not None:
                out[spec.from_name] = {label: float(p) for label, p in zip(spec.labels, probs[0], strict=True)}
        return out

    def queue_order(self, project_id: int, ids: list[int], data: list[dict[str, Any]], scores: NDArray[Any], *,
                    cold: bool) -> NDArray[Any]:
        """Scores for Label Studio's ascending queue of the open tasks ``ids`` (see
        :func:`labelloop.serving.queue.queue_order`; ``cold``: none of the project is labelled yet), with the
        audit split's tasks spread through it and those an open gate needs in front
        (:func:`labelloop.serving.queue.place_audit`)."""
        key = self.schemas(project_id).controls[0].value_key
        ordered = queue_order([str(d.get(key, "")) for d in data], scores, self.features.embed,
                              batch=self.settings.queue_batch, diversity=self.settings.diversity, cold=cold)
        frame = self.ladder.annotations.frame(project_id)
        keys = [audit_key(i, d) for i, d in zip(ids, data, strict=True)]
        audit = np.array([k in frame for k in keys], dtype=bool)
        rank = np.array([frame.rank(k if k is not None else i) for k, i in zip(keys, ids, strict=True)])
        front = set(self.ladder.serve_first(project_id))
        return place_audit(ordered, np.zeros(len(ids), dtype=bool), audit, rank, frame.share,
                           first=np.array([i in front for i in ids], dtype=bool))

    def source(self, pid: int | None, schema: TaskSchema, model_version: str | None, *,
               mode: str | None = None) -> predictors.Source:
        """The source that predicts for this request, named by the model_version it stands for.

        ``mode`` overrides ``LABELLOOP_PREDICTOR`` (``"model"``: the trained or zero-shot models alone)."""
        if model_version is not None and model_version == self.llm.version:
            return self.llm.predictor(pid)
        if model_version is not None:
            if pid is None and model_version != UNTRAINED_VERSION:
                raise ConfigError(f"model_version {model_version!r} needs the project it belongs to")
            bundle = self.registry.stored(pid, model_version) if pid is not None else Bundle(UNTRAINED_VERSION)
            return predictors.ModelPredictor(bundle, self.features, self.settings.strategy)
        bundle = self.registry.current(pid) if pid is not None else Bundle(UNTRAINED_VERSION)
        if not bundle.serves(schema):  # the labels changed since it was trained: zero-shot until the next training
            bundle = Bundle(UNTRAINED_VERSION)
        mode = mode or self.settings.predictor
        needs_llm = mode != "model"

        def model() -> predictors.ModelPredictor:
            return predictors.ModelPredictor(bundle, self.features, self.settings.strategy,
                                             drafter=(lambda: self.llm.predictor(pid)) if needs_llm else None,
                                             warn=lambda m: self.warn_once(pid, m, f"project {pid}: {m}"))

        return predictors.choose(mode, model, lambda: self.llm.predictor(pid),
                                 annotated=lambda: bundle.n_annotations,
                                 cold_start_labels=self.settings.cold_start_labels)

    def warn_once(self, pid: int | None, topic: str, message: str) -> None:
        if (pid, topic) not in self._warned:
            self._warned.add((pid, topic))
            log.warning("%s", message)

