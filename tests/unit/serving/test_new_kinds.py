"""A kind is one class: <Taxonomy> served zero-shot, trained and exported; spans over NFD text and zero-width
characters end to end."""

import pytest

from labelloop.data.dataset import ExportConfig, build_dataset

from .conftest import webhook

TAXONOMY = """<View><Text name="text" value="$text"/><Taxonomy name="topic" toName="text">
<Choice value="Sport"><Choice value="Tennis"/><Choice value="Football"/></Choice>
<Choice value="Cooking"><Choice value="Baking"/></Choice></Taxonomy></View>"""
NER = """<View><Text name="text" value="$text"/><Labels name="ents" toName="text"><Label value="PER"/></Labels></View>"""


def path_result(*path):
    return [{"from_name": "topic", "to_name": "text", "type": "taxonomy", "value": {"taxonomy": [list(path)]}}]


@pytest.mark.model
def test_taxonomy_is_zero_shot_then_trained_then_exported(client):
    assert client.post("/setup", json={"project": "9.1", "schema": TAXONOMY}).json()["model_version"] == "labelloop-v0"
    tasks = [{"id": 1, "data": {"text": "She won the match with a fast serve at Wimbledon"}},
             {"id": 2, "data": {"text": "Bake the bread dough in a hot oven"}}]
    results = client.post("/predict", json={"project": "9.1", "tasks": tasks}).json()["results"]
    for res in results:
        (region,) = res["result"]
        assert region["type"] == "taxonomy" and region["from_name"] == "topic" and 0 <= res["score"] <= 1
    assert results[0]["result"][0]["value"]["taxonomy"][0][0] == "Sport"
    assert results[1]["result"][0]["value"]["taxonomy"][0][0] == "Cooking"
    # Annotators file these texts under paths zero-shot would not guess: the trained head follows them.
    examples = [("The parcel came on a Tuesday.", ("Sport", "Football")), ("It weighs two kilos.", ("Cooking",)),
                ("The meeting starts at nine.", ("Sport", "Football")), ("The report has twelve pages.", ("Cooking",))]
    for i, (text, path) in enumerate(examples):
        assert webhook(client, 50 + i, 50 + i, text, path_result(*path), project=9).status_code == 200
    client.app.state.worker.run_pending()
    tasks = [{"id": i, "data": {"text": t}} for i, (t, _) in enumerate(examples)]
    results = client.post("/predict", json={"project": "9.1", "tasks": tasks}).json()["results"]
    assert [tuple(r["result"][0]["value"]["taxonomy"][0]) for r in results] == [p for _, p in examples]
    assert {r["model_version"] for r in results} == {"labelloop-v1"}
    ls_tasks = [{"id": i, "data": {"text": t}, "annotations": [{"id": i, "result": path_result(*p)}]}
                for i, (t, p) in enumerate(examples)]
    train, test, _, _ = build_dataset(ls_tasks, TAXONOMY, ExportConfig(test_fraction=0.0))
    assert sorted(r["label"] for r in train + test) == ["Cooking", "Cooking", "Sport / Football", "Sport / Football"]


@pytest.mark.model
def test_spans_keep_combining_marks_and_stop_at_zero_width_spaces(client):
    client.post("/setup", json={"project": "4.1", "schema": NER})
    nfd = "Zoe\u0308 met Anna"
    zwsp = "Zoe\u200bmet Anna"
    for i, text in enumerate([nfd, zwsp, "Zoe went home", "Anna sang"]):
        spans = [(0, 3, "PER")] if text.startswith("Zoe") else []
        spans += [(text.index("Anna"), text.index("Anna") + 4, "PER")] if "Anna" in text else []
        result = [{"from_name": "ents", "to_name": "text", "type": "labels",
                   "value": {"start": s, "end": e, "labels": [label]}} for s, e, label in spans]
        webhook(client, 70 + i, 70 + i, text, result, project=4)
    client.app.state.worker.run_pending()
    tasks = [{"id": 1, "data": {"text": nfd}}, {"id": 2, "data": {"text": zwsp}}]
    first, second = client.post("/predict", json={"project": "4.1", "tasks": tasks}).json()["results"]
    assert {r["value"]["text"] for r in first["result"]} >= {"Zoe\u0308"}
    assert all("\u200b" not in r["value"]["text"] for r in second["result"])
    assert "Zoe" in {r["value"]["text"] for r in second["result"]}
