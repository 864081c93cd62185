"""The backend against a real Label Studio: connect, pre-annotate, learn from annotations, re-order the queue."""

from __future__ import annotations

import json

import httpx
import pytest
from label_studio_sdk.label_interface import LabelInterface

from labelloop.errors import ConfigError
from labelloop.studio import lsclient
from labelloop.studio.projects import connect_backend
from tests.integration.conftest import wait_for

SENTIMENT = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""
NER = """<View><Labels name="label" toName="text"><Label value="PER"/><Label value="LOC"/></Labels>
<Text name="text" value="$text"/></View>"""

POSITIVE = ["I loved every minute of it, truly wonderful.", "Brilliant acting and a moving story.",
            "A delightful, funny and warm film.", "One of the best things I have seen this year.",
            "Beautifully shot and deeply satisfying.", "Great fun, I would happily watch it again."]
NEGATIVE = ["Boring, slow and far too long.", "The worst film I have seen in years.",
            "Awful dialogue and wooden acting.", "A tedious mess with no redeeming qualities.",
            "I walked out halfway, it was that bad.", "Dull, predictable and badly edited."]
UNLABELED = ["It was fine, I suppose.", "The soundtrack is memorable but the plot drags.",
             "An uneven film with a few great scenes.", "Charming at times, irritating at others.",
             "Not what I expected.", "The ending surprised me."]

PEOPLE = ["Maria Lopez", "John Smith", "Anna Berg", "Tom Hale", "Luis Ortega", "Sara Kim"]
PLACES = ["Madrid", "London", "Oslo", "Berlin", "Lisbon", "Vienna"]


def ner_task(i: int) -> tuple[str, list[tuple[int, int, str]]]:
    person, place = PEOPLE[i % len(PEOPLE)], PLACES[(i * 5) % len(PLACES)]
    text = f"Yesterday {person} flew to {place} for a meeting."
    start = text.index(person)
    return text, [(start, start + len(person), "PER"), (text.index(place), text.index(place) + len(place), "LOC")]


def choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def spans(text: str, items) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}} for s, e, label in items]


def tasks_of(ls, project_id: int, **kwargs):
    return list(ls.tasks.list(project=project_id, fields="all", **kwargs))


def current_predictions(task, version: str) -> list[dict]:
    preds = [p if isinstance(p, dict) else p.model_dump() for p in task.predictions or []]
    return [p for p in preds if p["model_version"] == version]


def check_stored_predictions(ls, project_id: int, label_config: str, version: str) -> list:
    """Every open task has a valid prediction of ``version``: spans match the text, scores within [0, 1]. (An
    annotated task keeps the predictions it was labelled beside.) Returns every task."""
    interface = LabelInterface(label_config)
    tasks = tasks_of(ls, project_id)
    assert any(not t.is_labeled for t in tasks), "no open task to check"
    for task in tasks:
        if task.is_labeled:
            continue
        preds = current_predictions(task, version)
        assert len(preds) >= 1, f"task {task.id} has no prediction of {version}"
        pred = preds[-1]
        assert 0.0 <= pred["score"] <= 1.0
        assert interface.validate_prediction({"result": pred["result"]}), pred["result"]
        for region in pred["result"]:
            assert 0.0 <= region["score"] <= 1.0
            v = region.get("value", {})  # a relation has none
            if "start" in v:
                assert task.data["text"][v["start"] : v["end"]] == v["text"]
    return tasks


def test_classification_project_end_to_end(ls, label_studio, start_backend):
    # Credentials come only from what Label Studio sends in /setup; retraining waits for the Train button.
    backend = start_backend(LABELLOOP_RETRAIN_EVERY="0", LABELLOOP_KEEP_VERSIONS="2")
    project = ls.projects.create(title="sentiment", label_config=SENTIMENT, sampling="Uncertainty sampling")
    texts = POSITIVE + NEGATIVE + UNLABELED
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in texts])
    ml = connect_backend(ls, project.id, backend.url)

    # Label Studio's own "Retrieve predictions" action, served zero-shot.
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id, selected_items={"all": True, "excluded": []})
    wait_for(lambda: all(current_predictions(t, "labelloop-v0") for t in tasks_of(ls, project.id)),
             timeout=120, what="zero-shot predictions")
    check_stored_predictions(ls, project.id, SENTIMENT, "labelloop-v0")

    by_text = {t.data["text"]: t.id for t in tasks_of(ls, project.id)}
    for text in POSITIVE[:4] + NEGATIVE[:4]:
        ls.annotations.create(id=by_text[text], result=choice("Positive" if text in POSITIVE else "Negative"),
                              project=project.id)

    ls.ml.train(id=ml.id)
    wait_for(lambda: ls.projects.get(id=project.id).model_version == "labelloop-v1", timeout=180,
             what="the project's model_version to follow the retrained model")
    tasks = check_stored_predictions(ls, project.id, SENTIMENT, "labelloop-v1")
    # The retrain re-predicted only the open tasks: the annotated ones keep what they were labelled beside.
    assert all(not current_predictions(t, "labelloop-v1") and current_predictions(t, "labelloop-v0")
               for t in tasks if t.is_labeled)

    # The trained model labels the held-back examples correctly.
    for text in POSITIVE[4:] + NEGATIVE[4:]:
        task = next(t for t in tasks if t.data["text"] == text)
        chosen = current_predictions(task, "labelloop-v1")[-1]["result"][0]["value"]["choices"]
        assert chosen == ["Positive" if text in POSITIVE else "Negative"], text

    # The Data Manager lists the open tasks by ascending confidence, and sees the scores (not null).
    ordered = [t for t in ls.tasks.list(project=project.id, fields="all",
                                        query=json.dumps({"ordering": ["tasks:predictions_score"]})) if not t.is_labeled]
    listed_scores = [t.predictions_score for t in ordered]
    assert None not in listed_scores
    assert listed_scores == sorted(listed_scores)
    own_scores = {t.id: current_predictions(t, "labelloop-v1")[-1]["score"] for t in tasks if not t.is_labeled}
    assert ordered[0].id == min(own_scores, key=own_scores.get)

    # Interactive pre-annotation (the labeling stream's call) answers with the same version.
    r = httpx.post(backend.url + "/predict", json={"tasks": [{"id": 1, "data": {"text": UNLABELED[0]}}],
                                                   "project": f"{project.id}.0", "params": {"context": None}})
    assert r.json()["results"][0]["model_version"] == "labelloop-v1"
    assert "labelloop-v1" in httpx.get(backend.url + "/versions").json()["versions"]

    # Each retrain publishes a full set of predictions; older versions' are deleted (the newest two stay).
    for expected in ("labelloop-v2", "labelloop-v3"):
        ls.ml.train(id=ml.id)
        wait_for(lambda v=expected: ls.projects.get(id=project.id).model_version == v, timeout=180, what=expected)
    wait_for(lambda: set(lsclient.prediction_versions(ls, project.id)) == {"labelloop-v2", "labelloop-v3"},
             timeout=60, what="predictions of older versions to be pruned")
    assert len(tasks_of(ls, project.id)) == len(texts)


def test_ner_project_with_basic_auth_learns_from_webhooks(ls, label_studio, start_backend):
    auth = ("labelstudio", "b4sic-pass")
    backend = start_backend(LABELLOOP_BASIC_AUTH_USER=auth[0], LABELLOOP_BASIC_AUTH_PASS=auth[1],
                            LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token)
    assert httpx.get(backend.url + "/versions").status_code == 401
    project = ls.projects.create(title="ner", label_config=NER)
    samples = [ner_task(i) for i in range(12)]
    samples.append(("Paris London and Rome are on the list.", [(0, 5, "LOC"), (6, 12, "LOC"), (17, 21, "LOC")]))
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in samples])
    connect_backend(ls, project.id, backend.url, basic_auth=auth)
    hooks = [h for h in ls.webhooks.list(project=str(project.id)) if h.url == backend.url + "/webhook"]
    assert hooks and hooks[0].headers["Authorization"].startswith("Basic ")

    by_text = {t.data["text"]: t.id for t in tasks_of(ls, project.id)}
    for text, items in samples[:6] + samples[-1:]:
        ls.annotations.create(id=by_text[text], result=spans(text, items), project=project.id)
    # Every annotation webhook enqueues; trainings coalesce and the project follows the newest version.
    def settled():
        if "labelloop_training_queue 0" not in httpx.get(backend.url + "/metrics", auth=auth).text:
            return None
        newest = httpx.get(backend.url + "/versions", auth=auth).json()["versions"][-1]
        return newest if newest != "labelloop-v0" and ls.projects.get(id=project.id).model_version == newest else None

    version = wait_for(settled, timeout=240, what="the newest NER model_version in the project")
    tasks = check_stored_predictions(ls, project.id, NER, version)

    for text, items in samples[6:12]:
        task = next(t for t in tasks if t.data["text"] == text)
        found = {(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0])
                 for r in current_predictions(task, version)[-1]["result"]}
        assert set(items) <= found, (text, found)
    metrics = httpx.get(backend.url + "/metrics", auth=auth).text
    assert "labelloop_trainings_total 0" not in metrics


def test_unreachable_backend_and_bad_config_are_explained(ls, start_backend):
    backend = start_backend()
    project = ls.projects.create(title="images", label_config='<View><Image name="img" value="$image"/>'
                                 '<RectangleLabels name="box" toName="img"><Label value="Car"/></RectangleLabels></View>')
    with pytest.raises(ConfigError) as error:  # the backend's own reason, not Label Studio's generic 422
        connect_backend(ls, project.id, backend.url)
    assert f"can't serve project {project.id}" in str(error.value) and "RectangleLabels" in str(error.value)
    assert not list(ls.ml.list(project=project.id))  # Label Studio was never asked to connect it
    log = backend.log.read_text()
    assert "RectangleLabels" in log and "not supported" in log
    with pytest.raises(lsclient.LabelStudioError):
        connect_backend(ls, project.id, "http://127.0.0.1:9")


RATING = """<View><Text name="text" value="$text"/><Rating name="stars" toName="text" maxRating="3"/></View>"""


def test_a_rating_project_is_pre_annotated_and_learns_its_stars(ls, label_studio, start_backend):
    backend = start_backend(LABELLOOP_RETRAIN_EVERY="0")
    project = ls.projects.create(title="stars", label_config=RATING, sampling="Uncertainty sampling")
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in POSITIVE + NEGATIVE + UNLABELED])
    ml = connect_backend(ls, project.id, backend.url)
    by_text = {t.data["text"]: t.id for t in tasks_of(ls, project.id)}
    for text in POSITIVE[:4] + NEGATIVE[:4]:
        ls.annotations.create(id=by_text[text], project=project.id, result=[
            {"from_name": "stars", "to_name": "text", "type": "rating",
             "value": {"rating": 3 if text in POSITIVE else 1}}])
    ls.ml.train(id=ml.id)
    wait_for(lambda: ls.projects.get(id=project.id).model_version == "labelloop-v1", timeout=180,
             what="the trained rating model's predictions")
    tasks = check_stored_predictions(ls, project.id, RATING, "labelloop-v1")  # Label Studio's own validation
    got = {}
    for text in POSITIVE[4:] + NEGATIVE[4:]:
        task = next(t for t in tasks if t.data["text"] == text)
        (region,) = current_predictions(task, "labelloop-v1")[-1]["result"]
        assert region["type"] == "rating"
        got[text] = region["value"]["rating"]
    # Eight annotations and star names that say nothing to the encoder: 3 of the 4 held back (11% by chance)...
    assert sum(got[t] == (3 if t in POSITIVE else 1) for t in got) >= 3, got
    # ...and the annotated texts themselves, asked of the backend as Label Studio asks.
    taught = POSITIVE[:4] + NEGATIVE[:4]
    r = httpx.post(backend.url + "/predict", json={"tasks": [{"id": by_text[t], "data": {"text": t}} for t in taught],
                                                   "project": f"{project.id}.0", "label_config": RATING})
    stars = [p["result"][0]["value"]["rating"] for p in r.json()["results"]]
    assert stars == [3] * 4 + [1] * 4
