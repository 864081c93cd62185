"""The backend's brain, free of any web framework: ``setup``, ``predict``, ``handle_event``, ``fit``.

:class:`ModelService` is a facade: it builds its collaborators once, each given the others it needs, and
answers by asking them; none of them calls back into it. The :class:`Store` (durable state), the
:class:`VersionRegistry` (what serves), :class:`Predictions` (what answers a request and orders the queue), the
:class:`Ladder` (fine-tunes, the gate, promotion and rollback), :class:`Learning` (the head's trainer, then the
ladder) run by the :class:`TrainingWorker`, the :class:`Publisher` (pushing versions to Label Studio) and the
:class:`Clients` (which Label Studio, with which key). What a control kind means lives in
:mod:`labelloop.labeling.kinds`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from numpy.typing import NDArray

from labelloop.encoder import PACKAGED_MODEL, Encoder, encoder_hidden_size, load_encoder
from labelloop.errors import ConfigError, UnsupportedConfigError
from labelloop.finetune.registry import RunRecord
from labelloop.gate import GateEvidence
from labelloop.labeling.kinds import answer_of
from labelloop.labeling.schema import TaskSchema
from labelloop.labeling.tasks import ANNOTATION_EVENTS, DELETE_EVENTS, Event, parse_project_id
from labelloop.models import Features
from labelloop.pool.background import Rescorer
from labelloop.pool.working_set import AutoRefill
from labelloop.serving import predictors
from labelloop.serving.annotations import ProjectAnnotations
from labelloop.serving.clients import Clients
from labelloop.serving.embeddings import EmbeddingCache
from labelloop.serving.ladder import Ladder
from labelloop.serving.ladder_state import Decision
from labelloop.serving.ladder_status import ladder_status
from labelloop.serving.learning import Learning
from labelloop.serving.llm_source import LLMSource
from labelloop.serving.metrics import Metrics
from labelloop.serving.prediction import Predictions, ProjectSchemas
from labelloop.serving.publish import Publisher
from labelloop.serving.store import Store, VersionRecord
from labelloop.serving.training import Trainer, TrainingWorker
from labelloop.serving.versions import UNTRAINED_VERSION, VersionRegistry
from labelloop.settings import LabelLoopSettings

log = logging.getLogger(__name__)



def _features(store: Store, settings: LabelLoopSettings) -> Features:
    """The encoder (loaded on first use) and the embedding caches every head sits on."""
    s = settings

    def encoder() -> Encoder:
        return load_encoder(s.model, max_length=s.max_length, batch_size=s.batch_size)

    cache = EmbeddingCache(store, encoder, name=s.model or PACKAGED_MODEL, max_length=s.max_length)

    def cached(name: str, embed: Callable[[list[str]], NDArray[Any]]) -> Callable[[list[str]], NDArray[Any]]:
        return EmbeddingCache.of(store, embed, name=name, max_length=s.max_length).embed

    return Features(encoder, embed=cache.embed, hidden_size=lambda: encoder_hidden_size(s.model), cache=cached)


class ModelService:
    """Serves predictions and trains models for any number of Label Studio projects."""

    def __init__(self, settings: LabelLoopSettings, store: Store | None = None, *,
                 clients: Clients | None = None) -> None:
        """The collaborators are built here, once, each given the others it needs; the encoder loads on first
        use."""
        self.settings = s = settings
        self.store = store or Store(settings.home, instance=settings.instance)
        self.metrics = Metrics()
        self.clients = clients or Clients(settings, bindings=self.store)
        self.annotations = ProjectAnnotations(self.store, self.clients, audit_share=settings.audit_share)
        self.schemas = ProjectSchemas(self.store, settings)
        self.features = _features(self.store, settings)
        self.registry = VersionRegistry(self.store, self.features, keep=settings.keep_versions)
        self.llm = LLMSource(settings, self.clients, self.annotations, self.features.embed, self.metrics)
        self.ladder = Ladder(self.store, self.registry, self.annotations, self.features, self.schemas, settings)
        self.predictions = Predictions(settings, self.schemas, self.registry, self.features, self.llm, self.ladder,
                                       self.metrics)
        self.trainer = Trainer(self.registry, self.annotations, self.features, self.schemas, metrics=self.metrics,
                               self_training=s.self_training_from if s.self_training else None)
        self.learning = Learning(self.store, self.trainer, self.ladder, threading.Event(),
                                 retrain_every=s.retrain_every)
        self.publisher = Publisher(
            self.store, self.clients, self.predictions, keep=s.keep_versions, metrics=self.metrics,
            rescorer=None if s.pool_rescore == "off" else Rescorer(s.home, engine=s.pool_rescore),
            refill=None if s.refill_at <= 0 else AutoRefill(s.home, size=s.working_set, at=s.refill_at,
                                                             audit_share=s.audit_share, instance=s.instance))

    def close(self) -> None:
        """Stop what this process started in the background: the ladder's fine-tunes and the pools' re-scoring
        still running."""
        self.ladder.stop()
        if self.publisher.rescorer is not None:
            self.publisher.rescorer.stop()

    def worker(self) -> TrainingWorker:
        s = self.settings
        return TrainingWorker(self.store, self.learning, self.publisher if s.push_predictions else None,
                              self.predictions, wake=self.learning.wake, threads=s.training_threads,
                              retrain_interval=s.retrain_interval, metrics=self.metrics)

    # -- protocol -------------------------------------------------------------------------------

    def setup(self, project: object, label_config: str, *, hostname: str | None = None,
              access_token: str | None = None) -> str:
        """Check the config can be served, remember how to reach Label Studio; return the model_version."""
        schema = self.schemas.servable(label_config)
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
        return str(self.predictions.source(pid, schema, None).version)

    def predict(self, tasks: Sequence[object], *, project: object = None, label_config: str | None = None,
                model_version: str | None = None, **_: object) -> list[dict[str, Any]]:
        """One Label Studio prediction per task, in order: ``{"result", "score", "model_version"}``.

        ``score`` is the model's confidence under the configured strategy (higher = surer). A task whose
        text can't be used gets ``{"result": [], "model_version", "error"}`` and the reason is logged.
        ``model_version`` asks for one of the project's stored versions instead of the one serving now.
        """
        return self.predictions.predict(tasks, parse_project_id(project), label_config, model_version)

    def handle_event(self, event: Event) -> dict[str, Any]:
        """Persist what a webhook says and enqueue training; never trains in the caller's thread.

        Raises :class:`~labelloop.errors.AnnotationError` (nothing stored) when an annotation's result does
        not fit the project's labeling config.
        """
        pid = event.project_id
        if event.label_config is not None and event.label_config != self.store.label_config(pid):
            try:
                self.schemas.servable(event.label_config)
                self.store.save_label_config(pid, event.label_config)
            except UnsupportedConfigError as e:
                self.predictions.warn_once(pid, "webhook-config", f"project {pid}: a webhook sent a labeling config that can't "
                                f"be served, so it was not stored: {str(e).splitlines()[0]}")
        count = 0
        if event.action in ANNOTATION_EVENTS:
            schema = self.schemas.find(pid)
            for ann in event.annotations:  # check them all before storing any
                for spec in schema.controls if schema else ():
                    answer_of(spec, ann.result)
            for ann in event.annotations:
                count = self.store.upsert_annotation(pid, ann.task_id, ann.id, ann.data, ann.result,
                                                     cancelled=ann.cancelled)
        elif event.action in DELETE_EVENTS:
            self.store.delete_annotations(pid, [a.id for a in event.annotations])
        queued = self.learning.after_event(pid, event.action, new_annotations=count)
        self.metrics.add(webhook_events=1)
        return {"status": "ok", "action": event.action, "training_queued": queued}

    def fit(self, project_id: int, *, force: bool = False) -> str | None:
        """Train on the project's latest annotations, then climb the ladder (:meth:`Learning.fit`); returns the
        new model_version, or None."""
        return self.learning.fit(project_id, force=force)

    def publish(self, project_id: int, version: str) -> int:
        """Push ``version``'s predictions and set it as the project's model_version in Label Studio, now (for a
        promotion or a rollback: calls may take as long as a big project needs)."""
        return self.publisher.publish(project_id, version, timeout=300.0)

    def model_version(self, project_id: int) -> str:
        """The ``model_version`` serving the project now (an LLM name when the LLM predicts)."""
        return self.predictions.model_version(project_id)

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

    def served_first(self, project_id: int, round: int | None = None) -> tuple[set[int], float]:
        """The audit tasks a gate put at the front of the queue, and their share of the audit frame (of an audit
        round; by default the current one)."""
        return self.ladder.served_first(project_id, round)

    def client_for(self, project_id: int, *, timeout: float | None = None) -> Any:
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
        return self.schemas(project_id)

    def choice_probabilities(self, project_id: int, text: str, *, model_version: str | None = None
                             ) -> dict[str, dict[str, float]]:
        """Every label's probability for ``text``, per classification control (``from_name`` first)."""
        return self.predictions.choice_probabilities(project_id, text, model_version=model_version)

    def queue_order(self, project_id: int, ids: list[int], data: list[dict[str, Any]], scores: NDArray[Any], *,
                    cold: bool) -> NDArray[Any]:
        """Scores for Label Studio's queue of the open tasks ``ids`` (:meth:`Predictions.queue_order`)."""
        return self.predictions.queue_order(project_id, ids, data, scores, cold=cold)

    def llm_usage(self) -> dict[str, int] | None:
        """Tokens and requests the LLM has spent in this process; None if it was never used."""
        return self.llm.usage()
