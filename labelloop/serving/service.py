"""The backend's brain, free of any web framework: ``setup``, ``predict``, ``handle_event``, ``fit``.

:class:`ModelService` is a facade over collaborators that each own one job: the :class:`Store` (durable
state), the :class:`VersionRegistry` (what serves), the :class:`Trainer` and :class:`TrainingWorker`
(training off the request path), the :class:`Publisher` (pushing versions to Label Studio), the
:class:`Clients` (which Label Studio, with which key) and the prediction sources of
:mod:`labelloop.serving.predictors`. What a control kind means lives in :mod:`labelloop.labeling.kinds`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelloop.audit import audit_key, audit_rank, in_audit
from labelloop.encoder import PACKAGED_MODEL, Encoder, encoder_hidden_size, load_encoder
from labelloop.errors import ConfigError, LabelLoopError, ModelError, TaskDataError, UnsupportedConfigError
from labelloop.finetune.registry import RunRecord
from labelloop.gate import GateEvidence
from labelloop.labeling.kinds import ClassificationKind, answer_of, kind_of
from labelloop.labeling.schema import SUPPORTED, TaskSchema, cached_schema
from labelloop.labeling.tasks import Event, parse_project_id, task_text
from labelloop.models import Features
from labelloop.pool.background import Rescorer
from labelloop.serving import predictors
from labelloop.serving.annotations import ProjectAnnotations
from labelloop.serving.clients import Clients
from labelloop.serving.embeddings import EmbeddingCache
from labelloop.serving.ladder import Ladder
from labelloop.serving.ladder_state import Decision
from labelloop.serving.ladder_status import ladder_status
from labelloop.serving.llm_source import LLMSource
from labelloop.serving.metrics import Metrics
from labelloop.serving.publish import Publisher
from labelloop.serving.queue import place_audit, queue_order
from labelloop.serving.store import Store, VersionRecord
from labelloop.serving.training import Trainer, TrainingWorker
from labelloop.serving.versions import UNTRAINED_VERSION, Bundle, VersionRegistry
from labelloop.settings import LabelLoopSettings

log = logging.getLogger(__name__)

ANNOTATION_EVENTS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"}
DELETE_EVENTS = {"ANNOTATION_DELETED", "ANNOTATIONS_DELETED"}


class ModelService:
    """Serves predictions and trains models for any number of Label Studio projects."""

    def __init__(self, settings: LabelLoopSettings, store: Store | None = None, *, clients: Clients | None = None,
                 registry: VersionRegistry | None = None, publisher: Publisher | None = None,
                 trainer: Trainer | None = None) -> None:
        """Collaborators not given are built from ``settings`` on first use."""
        self.settings = settings
        self.store = store or Store(settings.home, instance=settings.instance)
        self.metrics = Metrics()
        self.clients = clients or Clients(settings, bindings=self.store)
        for name, given in (("registry", registry), ("publisher", publisher), ("trainer", trainer)):
            if given is not None:
                self.__dict__[name] = given  # takes the place of the cached property
        self.annotations = ProjectAnnotations(self.store, self.clients, audit_share=settings.audit_share)
        self.training_requested = threading.Event()
        self._warned: set[tuple[int | None, str]] = set()

    # -- collaborators, built on first use (the encoder takes seconds to load) --------------------

    @functools.cached_property
    def features(self) -> Features:
        s = self.settings

        def encoder() -> Encoder:
            return load_encoder(s.model, max_length=s.max_length, batch_size=s.batch_size)

        cache = EmbeddingCache(self.store, encoder, name=s.model or PACKAGED_MODEL, max_length=s.max_length)

        def cached(name: str, embed):
            return EmbeddingCache.of(self.store, embed, name=name, max_length=s.max_length).embed

        return Features(encoder, embed=cache.embed, hidden_size=lambda: encoder_hidden_size(s.model), cache=cached)

    @functools.cached_property
    def registry(self) -> VersionRegistry:
        return VersionRegistry(self.store, lambda: self.features, keep=self.settings.keep_versions)

    @functools.cached_property
    def llm(self) -> LLMSource:
        return LLMSource(self.settings, self.clients, self.annotations, self.features.embed, self.metrics)

    @functools.cached_property
    def publisher(self) -> Publisher:
        s = self.settings
        return Publisher(self.store, self.clients, lambda pid, tasks: self.predict(tasks, project=pid),
                         self.queue_order, keep=s.keep_versions, metrics=self.metrics, current=self.model_version,
                         rescorer=None if s.pool_rescore == "off" else Rescorer(s.home, engine=s.pool_rescore))

    @functools.cached_property
    def trainer(self) -> Trainer:
        return Trainer(self.registry, self.annotations, self.features, self.schema, metrics=self.metrics,
                       self_training=self.settings.self_training_from if self.settings.self_training else None)

    @functools.cached_property
    def ladder(self) -> Ladder:
        return Ladder(self.store, self.registry, self.annotations, self.features, self.schema, self.settings)

    def close(self) -> None:
        """Stop what this process started in the background: the ladder's fine-tunes and the pools' re-scoring
        still running."""
        if "ladder" in self.__dict__:
            self.ladder.stop()
        if "publisher" in self.__dict__ and self.publisher.rescorer is not None:
            self.publisher.rescorer.stop()

    def worker(self) -> TrainingWorker:
        s = self.settings
        return TrainingWorker(self.store, self.fit, self.publisher if s.push_predictions else None,
                              self.model_version, wake=self.training_requested, threads=s.training_threads,
                              retrain_interval=s.retrain_interval, metrics=self.metrics, tick=self.finetunes_finished)

    # -- protocol -------------------------------------------------------------------------------

    def setup(self, project: object, label_config: str, *, hostname: str | None = None,
              access_token: str | None = None) -> str:
        """Check the config can be served, remember how to reach Label Studio; return the model_version."""
        schema = self._servable(label_config)
        pid = parse_project_id(project)
        if pid is None:
            return UNTRAINED_VERSION
        stored = self.store.label_config(pid)
        if stored is None and len(self.store.projects()) >= self.settings.max_projects:
            # Each project keeps its config on disk: a stream of made-up project ids must not fill it.
            raise ConfigError(f"the backend serves {self.settings.max_projects} projects already "
                              "(LABELLOOP_MAX_PROJECTS): raise it to connect another one")
        self.clients.remember(pid, hostname, access_token)
        if stored != label_config:  # Label Studio calls /setup before every predict
            self.store.save_label_config(pid, label_config)
        return self._predictor(pid, schema, None).version

    def predict(self, tasks: Sequence[object], *, project: object = None, label_config: str | None = None,
                model_version: str | None = None, **_: object) -> list[dict[str, Any]]:
        """One Label Studio prediction per task, in order: ``{"result", "score", "model_version"}``.

        ``score`` is the model's confidence under the configured strategy (higher = surer). A task whose
        text can't be used gets ``{"result": [], "model_version", "error"}`` and the reason is logged.
        ``model_version`` asks for one of the project's stored versions instead of the one serving now.
        """
        started = time.perf_counter()
        pid = parse_project_id(project)
        if label_config is None and pid is not None:
            label_config = self.store.label_config(pid)
        if not label_config:
            raise ConfigError("No labeling config: send label_config, or connect the project so /setup stores it.")
        schema = self._servable(label_config)
        source = self._predictor(pid, schema, model_version)
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
        out = []
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

    def handle_event(self, event: Event) -> dict[str, Any]:
        """Persist what a webhook says and enqueue training; never trains in the caller's thread.

        Raises :class:`~labelloop.errors.AnnotationError` (nothing stored) when an annotation's result does
        not fit the project's labeling config.
        """
        pid = event.project_id
        if event.label_config is not None and event.label_config != self.store.label_config(pid):
            try:
                self._servable(event.label_config)
                self.store.save_label_config(pid, event.label_config)
            except UnsupportedConfigError as e:
                self._warn_once(pid, "webhook-config", f"project {pid}: a webhook sent a labeling config that can't "
                                f"be served, so it was not stored: {str(e).splitlines()[0]}")
        queued = False
        if event.action in ANNOTATION_EVENTS:
            config = self.store.label_config(pid)
            schema = cached_schema(config, self.settings.max_labels) if config else None
            for ann in event.annotations:  # check them all before storing any
                for spec in schema.controls if schema else ():
                    answer_of(spec, ann.result)
            count = 0
            for ann in event.annotations:
                count = self.store.upsert_annotation(pid, ann.task_id, ann.id, ann.data, ann.result,
                                                     cancelled=ann.cancelled)
            queued = self.settings.retrain_every > 0 and count >= self.settings.retrain_every
        elif event.action in DELETE_EVENTS:
            self.store.delete_annotations(pid, [a.id for a in event.annotations])
            queued = self.settings.retrain_every > 0
        elif event.action == "START_TRAINING":
            queued = True
        if queued:
            self.store.request_training(pid, event.action)
            self.training_requested.set()
        self.metrics.add(webhook_events=1)
        return {"status": "ok", "action": event.action, "training_queued": queued}

    def fit(self, project_id: int, *, force: bool = False) -> str | None:
        """Train on the project's latest annotations, then climb the ladder (judge finished fine-tunes, start
        the next one when due); returns the new model_version, or None. Unchanged training data trains nothing
        unless ``force`` (a lead pressed *Train*)."""
        version = self.trainer.fit(project_id, force=force)
        try:
            changed = self.ladder.step(project_id)
        except LabelLoopError as e:  # the head trained; a fine-tune problem must not undo that
            log.warning("project %s: the learning ladder could not step: %s", project_id, e)
            return version
        if changed is None and version is None and self.ladder.reordered(project_id):
            # A gate opened: its disagreements must reach the front of Label Studio's queue, and Label Studio
            # takes new scores only with a new model_version.
            version = self.trainer.fit(project_id, force=True)
        return changed or version

    def finetunes_finished(self) -> None:
        """Queue a training for each project whose background fine-tune has ended, so the gate opens on it."""
        for finetune in self.store.finetunes():
            # Ones at the gate already wait for disagreement labels, whose webhooks queue trainings themselves.
            if (not finetune.done and self.store.gate(finetune.project_id, finetune.run_id) is None
                    and self.ladder.run_ended(finetune)):
                self.store.request_training(finetune.project_id, "fine-tune finished")
                self.training_requested.set()

    def publish(self, project_id: int, version: str) -> int:
        """Push ``version``'s predictions and set it as the project's model_version in Label Studio, now (for a
        promotion or a rollback: calls may take as long as a big project needs)."""
        return self.publisher.publish(project_id, version, timeout=300.0)

    def model_version(self, project_id: int) -> str:
        """The ``model_version`` serving the project now (an LLM name when the LLM predicts)."""
        return self._predictor(project_id, self.schema(project_id), None).version

    def versions(self) -> list[str]:
        """Every servable version of every project, zero-shot first (for ``GET /versions``)."""
        return self.registry.names()

    def problems(self, project_id: int | None = None) -> dict[str, str]:
        """``{model_version: why it can't be served}`` for versions whose files are broken."""
        return self.registry.problems(project_id)

    def projects(self) -> list[int]:
        """Projects the backend has been connected to (it holds their labeling configs)."""
        return self.store.projects()

    def version_records(self, project_id: int) -> list[VersionRecord]:
        """The project's stored versions, oldest first."""
        return self.store.versions(project_id)

    def current_record(self, project_id: int) -> VersionRecord | None:
        """The stored version serving the project (None: zero-shot)."""
        return self.registry.record(project_id, self.registry.current(project_id).version)

    # -- what a lead reads and does (the CLI, the dashboard and the playground ask here) -------------

    def rollback(self, project_id: int) -> str:
        """Serve the version that served before the current one; returns it (the ladder decides and records it)."""
        return self.ladder.rollback(project_id)

    def promote_run(self, project_id: int, run: RunRecord, *, force: bool = False) -> tuple[str, GateEvidence | None, bool]:
        """A lead's promotion of a succeeded run, through the gate (:meth:`Ladder.promote_run`)."""
        return self.ladder.promote_run(project_id, run, force=force, by="lead")

    def ladder_status(self, project_id: int) -> dict[str, Any]:
        """Where the ladder stands: the serving rung and since when, the gates, the next fine-tune."""
        return ladder_status(self.ladder, project_id)

    def decisions(self, project_id: int) -> list[Decision]:
        """Every promotion, refusal, rollback and forced promotion of the project, oldest first, with evidence."""
        return self.store.decisions(project_id)

    def gate_evidence(self, project_id: int, run_id: str) -> GateEvidence | None:
        """Where the gate stands on a run (None: it has no gate)."""
        return self.ladder.gate_evidence(project_id, run_id)

    def served_first(self, project_id: int) -> tuple[set[int], float]:
        """The audit tasks a gate put at the front of the queue, and their share of the audit frame."""
        return self.ladder.served_first(project_id)

    def client_for(self, project_id: int, *, timeout: float | None = None):
        """A Label Studio client for the project with the key it was connected with (None: none on record)."""
        return self.clients.client_for(project_id, timeout=timeout)

    @property
    def encoder(self) -> Encoder:
        """The sentence encoder every head sits on (loaded on first use)."""
        return self.features.encoder

    def embed(self, texts: list[str]) -> NDArray[Any]:
        """The encoder's vectors for ``texts``, cached."""
        return self.features.embed(texts)

    def training_load(self) -> tuple[int, int]:
        """Trainings queued or running, and running now, in all processes sharing the state."""
        return self.store.pending_jobs(), len(self.store.running_jobs())

    def version_predictor(self, project_id: int, version: str | None = None, strategy: str | None = None
                          ) -> tuple[str, predictors.ModelPredictor]:
        """The project's stored ``version`` (default: the serving one) as a predictor, with the version it is."""
        bundle = self.registry.stored(project_id, version) if version else self.registry.current(project_id)
        return bundle.version, predictors.ModelPredictor(bundle, self.features, strategy or self.settings.strategy)

    def schema(self, project_id: int) -> TaskSchema:
        """The project's parsed labeling config, as stored on connect."""
        label_config = self.store.label_config(project_id)
        if not label_config:
            raise ModelError(f"Project {project_id} has no labeling config on record: connect the backend to it "
                             "first (Label Studio sends it on connect).")
        return cached_schema(label_config, self.settings.max_labels)

    def choice_probabilities(self, project_id: int, text: str, *, model_version: str | None = None
                             ) -> dict[str, dict[str, float]]:
        """Every label's probability for ``text``, per classification control (``from_name`` first)."""
        schema = self.schema(project_id)
        source = self._predictor(project_id, schema, model_version, mode="model")
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
        key = self.schema(project_id).controls[0].value_key
        ordered = queue_order([str(d.get(key, "")) for d in data], scores, self.features.embed,
                              batch=self.settings.queue_batch, diversity=self.settings.diversity, cold=cold)
        share = self.settings.audit_share
        keys = [audit_key(i, d) for i, d in zip(ids, data, strict=True)]
        audit = np.array([in_audit(project_id, k, share) for k in keys], dtype=bool)
        rank = np.array([audit_rank(project_id, k if k is not None else i) for k, i in zip(keys, ids, strict=True)])
        front = set(self.ladder.serve_first(project_id))
        return place_audit(ordered, np.zeros(len(ids), dtype=bool), audit, rank, share,
                           first=np.array([i in front for i in ids], dtype=bool))

    def llm_usage(self) -> dict[str, int] | None:
        """Tokens and requests the LLM has spent in this process; None if it was never used."""
        return self.llm.usage() if "llm" in self.__dict__ else None

    # -- internals ------------------------------------------------------------------------------

    def _servable(self, label_config: object) -> TaskSchema:
        if not isinstance(label_config, str):
            raise UnsupportedConfigError("The labeling config must be XML text.\n" + SUPPORTED)
        schema = cached_schema(label_config, self.settings.max_labels)
        if self.settings.predictor == "model" and any(not kind_of(c).trainable for c in schema.controls):
            raise UnsupportedConfigError(
                "<TextArea> responses are drafted by an LLM: start the backend with LABELLOOP_PREDICTOR=llm (the "
                "local SmolLM2, or an OpenAI-compatible server through LABELLOOP_LLM_BASE_URL).\n" + SUPPORTED)
        return schema

    def _predictor(self, pid: int | None, schema: TaskSchema, model_version: str | None, *, mode: str | None = None):
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
                                             warn=lambda m: self._warn_once(pid, m, f"project {pid}: {m}"))

        return predictors.choose(mode, model, lambda: self.llm.predictor(pid),
                                 annotated=lambda: bundle.n_annotations,
                                 cold_start_labels=self.settings.cold_start_labels)

    def _warn_once(self, pid: int | None, topic: str, message: str) -> None:
        if (pid, topic) not in self._warned:
            self._warned.add((pid, topic))
            log.warning("%s", message)
