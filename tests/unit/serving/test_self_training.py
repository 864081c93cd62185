"""Self-training in the backend: which unlabeled texts it reads, and which of them join the annotated ones."""

import numpy as np

from labelloop.audit import in_audit
from labelloop.errors import LabelStudioUnavailableError
from labelloop.labeling.schema import parse_label_config
from labelloop.serving.annotations import ProjectAnnotations
from labelloop.serving.store import Store
from labelloop.serving.training import _SelfTraining
from labelloop.studio import lsclient

from .conftest import SENTIMENT, choice

SPEC = parse_label_config(SENTIMENT).controls[0]


class _OneClient:
    def client_for(self, project_id, *, timeout=None):
        return object()


def _pulled(tmp_path, monkeypatch, tasks, annotated, *, audit_share=0.0):
    """ProjectAnnotations after a pull that found ``tasks`` (id -> text), the ids in ``annotated`` labeled."""
    def fetch(client, project_id, *, retry=None, unlabeled=None):
        rows = [(i, 100 + i, {"text": t}, choice("Positive"), False) for i, t in tasks.items() if i in annotated]
        unlabeled.extend((i, {"text": t}) for i, t in tasks.items() if i not in annotated)
        return rows

    monkeypatch.setattr(lsclient, "fetch_annotations", fetch)
    annotations = ProjectAnnotations(Store(tmp_path), _OneClient(), audit_share=audit_share)
    annotations.pull(7)
    return annotations


def test_the_unlabeled_texts_are_the_pulled_tasks_without_an_annotation(tmp_path, monkeypatch):
    tasks = {i: f"review number {i}" for i in range(1, 11)}
    annotations = _pulled(tmp_path, monkeypatch, tasks, {1, 2})
    assert sorted(annotations.unlabeled_texts(7, SPEC)) == sorted(tasks[i] for i in range(3, 11))
    # a task annotated through a webhook after the pull is no longer unlabeled
    annotations.store.upsert_annotation(7, 3, 200, {"text": tasks[3]}, choice("Negative"), cancelled=False)
    assert tasks[3] not in annotations.unlabeled_texts(7, SPEC)
    # the same capped subset on every call
    assert annotations.unlabeled_texts(7, SPEC, limit=3) == annotations.unlabeled_texts(7, SPEC, limit=3)
    assert len(annotations.unlabeled_texts(7, SPEC, limit=3)) == 3


def test_audit_tasks_and_texts_of_audit_items_never_self_train(tmp_path, monkeypatch):
    tasks = {i: f"review number {i}" for i in range(1, 201)}
    annotated = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
    audit_labeled = [i for i in annotated if in_audit(7, i, 0.3)]
    assert audit_labeled, "the draw puts some labeled task in the audit split"
    tasks[150] = tasks[audit_labeled[0]]  # an unlabeled duplicate of an audit item's text
    annotations = _pulled(tmp_path, monkeypatch, tasks, annotated, audit_share=0.3)
    texts = set(annotations.unlabeled_texts(7, SPEC))
    assert texts
    assert not texts & {tasks[i] for i in tasks if in_audit(7, i, 0.3)}
    assert tasks[150] not in texts


def test_a_dead_label_studio_keeps_the_last_pulls_unlabeled_texts(tmp_path, monkeypatch):
    annotations = _pulled(tmp_path, monkeypatch, {1: "one", 2: "two"}, {1})

    def down(*args, **kwargs):
        raise LabelStudioUnavailableError("Label Studio at http://127.0.0.1:1 refused the connection")

    monkeypatch.setattr(lsclient, "fetch_annotations", down)
    annotations.pull(7)
    assert annotations.unlabeled_texts(7, SPEC) == ["two"]


class _Model:
    """Fixed probabilities per text; ``fit`` returns a model that remembers what it was fitted on."""

    def __init__(self, probs, fitted=None):
        self.probs = probs
        self.fitted = fitted

    def predict_proba(self, texts):
        return np.asarray([self.probs[t] for t in texts])

    def fit(self, texts, targets):
        return _Model(self.probs, (list(texts), np.asarray(targets).tolist()))


class _Learner:
    def __init__(self, model):
        self.model = model

    def fit_classifier(self, spec, texts, targets):
        return self.model.fit(texts, targets)

    def fit_tagger(self, spec, texts, spans):
        return ("tagger", texts)


def test_only_the_texts_the_head_is_sure_of_join_with_its_labels():
    probs = {"sure no": [0.05, 0.95], "unsure": [0.6, 0.4], "sure yes": [0.92, 0.08], "a": [0.5, 0.5]}
    learner = _SelfTraining(_Learner(_Model(probs)), ["sure no", "unsure", "sure yes"])
    model = learner.fit_classifier(SPEC, ["a", "b"], np.asarray([0, 1]))
    assert model.fitted == (["a", "b", "sure no", "sure yes"], [0, 1, 1, 0])


def test_with_nothing_sure_nothing_unlabeled_or_one_label_seen_the_head_is_the_annotated_ones_alone():
    probs = {"unsure": [0.6, 0.4], "sure": [0.99, 0.01]}
    for unlabeled in (["unsure"], []):
        model = _SelfTraining(_Learner(_Model(probs)), unlabeled).fit_classifier(SPEC, ["a", "b"], np.asarray([1, 0]))
        assert model.fitted == (["a", "b"], [1, 0])
    # with one label seen the head is sure of everything: no pseudo-labels
    model = _SelfTraining(_Learner(_Model(probs)), ["sure"]).fit_classifier(SPEC, ["a"], np.asarray([1]))
    assert model.fitted == (["a"], [1])
    assert _SelfTraining(_Learner(_Model(probs)), ["unsure"]).fit_tagger(SPEC, ["a"], [[]]) == ("tagger", ["a"])
