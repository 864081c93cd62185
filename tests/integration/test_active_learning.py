"""The active-learning loop against a real Label Studio: cold start, annotate, retrain, re-ordered queue."""

from __future__ import annotations

import itertools
import json
import time

import httpx

from labelloop.studio.projects import connect_backend, setup_uncertainty_queue
from tests.integration.conftest import wait_for
from tests.integration.test_backend_label_studio import SENTIMENT, choice, current_predictions, tasks_of

GOOD = ["wonderful", "delightful", "brilliant", "lovely", "superb"]
BAD = ["dreadful", "boring", "awful", "miserable", "tedious"]
THINGS = ["film", "soundtrack", "ending", "cast"]


def reviews():
    rows = []
    for (adj, thing), label in itertools.chain(
        zip(itertools.product(GOOD, THINGS), itertools.repeat("Positive")),
        zip(itertools.product(BAD, THINGS), itertools.repeat("Negative")),
    ):
        rows.append((f"The {thing} was {adj}, honestly.", label))
    return rows  # 40 texts, half of each label, interleaved below


def scores_of(ls, project_id, version):
    return {t.id: current_predictions(t, version)[-1]["score"] for t in tasks_of(ls, project_id)
            if current_predictions(t, version)}


def test_queue_follows_the_model_as_annotators_label(ls, label_studio, start_backend):
    backend = start_backend(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token,
                            LABELLOOP_QUEUE_BATCH="5", LABELLOOP_SELF_TRAINING_FROM="10")
    rows = reviews()
    rows = [r for pair in zip(rows[:20], rows[20:]) for r in pair]
    project = ls.projects.create(title="active learning", label_config=SENTIMENT)
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in rows])
    ml = connect_backend(ls, project.id, backend.url)
    view = setup_uncertainty_queue(ls, project.id)
    assert ls.projects.get(id=project.id).sampling == "Uncertainty sampling"
    assert setup_uncertainty_queue(ls, project.id).id == view.id  # idempotent

    # Cold start: the Train button with no labels publishes the zero-shot model's coverage-first queue.
    ls.ml.train(id=ml.id)
    wait_for(lambda: ls.projects.get(id=project.id).model_version == "labelloop-v0", timeout=120,
             what="the cold-start queue")
    cold = scores_of(ls, project.id, "labelloop-v0")
    assert len(cold) == len(rows) and all(0.0 <= s <= 1.0 for s in cold.values())

    # Annotators label 20 tasks; each webhook is stored and acknowledged while training runs behind.
    by_text = {t.data["text"]: t.id for t in tasks_of(ls, project.id)}
    labeled = set()
    round_trips = []
    for text, label in rows[:20]:
        annotation = ls.annotations.create(id=by_text[text], result=choice(label), project=project.id)
        labeled.add(by_text[text])
        started = time.perf_counter()
        r = httpx.post(backend.url + "/webhook", json={
            "action": "ANNOTATION_UPDATED", "project": {"id": project.id},
            "task": {"id": by_text[text], "data": {"text": text}},
            "annotation": {"id": annotation.id, "task": by_text[text], "result": choice(label)}})
        round_trips.append(time.perf_counter() - started)
        assert r.status_code == 200
    assert max(round_trips) < 1.0, round_trips  # Label Studio gives up on a webhook after 1 s

    def settled():
        if "labelloop_training_queue 0" not in httpx.get(backend.url + "/metrics").text:
            return None
        newest = httpx.get(backend.url + "/versions").json()["versions"][-1]
        return newest if newest != "labelloop-v0" and ls.projects.get(id=project.id).model_version == newest else None

    version = wait_for(settled, timeout=300, what="the retrained model_version in the project")
    # the pull before training kept the 20 unlabeled tasks, and the head it was sure of joined them
    assert "self-training: " in backend.log.read_text(), backend.log.read_text()[-2000:]
    trained = scores_of(ls, project.id, version)
    unlabeled = [tid for tid in trained if tid not in labeled]
    assert len(unlabeled) == 20
    assert any(abs(trained[t] - cold[t]) > 1e-6 for t in unlabeled)

    # The trained model got the held-back reviews right.
    tasks = {t.id: t for t in tasks_of(ls, project.id)}
    for text, label in rows[20:]:
        pred = current_predictions(tasks[by_text[text]], version)[-1]
        assert pred["result"][0]["value"]["choices"] == [label], text

    # The saved tab lists unlabeled tasks, least confident first.
    listed = list(ls.tasks.list(project=project.id, view=view.id, fields="all"))
    assert {t.id for t in listed} == set(unlabeled)
    assert listed[0].id == min(unlabeled, key=trained.get)
    ordered = list(ls.tasks.list(project=project.id, fields="all",
                                 query=json.dumps({"ordering": ["tasks:predictions_score"]})))
    assert ordered[0].id == min(trained, key=trained.get)
