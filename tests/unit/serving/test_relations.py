"""Relations (coreference and other links): the config, answers, the mention-pair model served and trained on a
set built here (no coreference corpus ships in a package), link F1, MUC and B³, export, and the LLM's JSON."""

import json

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface

from labelloop.augment.pipeline import augment_records
from labelloop.data.dataset import ExportConfig, build_dataset
from labelloop.errors import AnnotationError, ConfigError, UnsupportedConfigError
from labelloop.labeling.kinds import answer_of
from labelloop.labeling.schema import RELATIONS, find_control, parse_label_config
from labelloop.llm import PromptTemplate, parse_links
from labelloop.relation_scores import coreference_scores, link_f1
from labelloop.relations import Links, candidate_pairs, chains, decode
from labelloop.spans import Span
from labelloop.templates import label_config

from .conftest import webhook

COREF = label_config("coreference", ["PER", "LOC"])
PEOPLE = [("Anna", "Berg", "she"), ("Tom", "Hale", "he"), ("Maria", "Lopez", "she"), ("Luis", "Ortega", "he"),
          ("Sara", "Kim", "she"), ("John", "Smith", "he"), ("Eva", "Nolan", "she"), ("Paul", "Grant", "he")]
PLACES = ["Oslo", "Madrid", "Vienna", "Lisbon", "Berlin", "Dublin"]


def story(k: int) -> tuple[str, list[tuple[int, int, str]], list[tuple[int, int]]]:
    """A text, its mentions (sorted) and its coreference links (later mention -> its antecedent)."""
    first, last, pronoun = PEOPLE[k % len(PEOPLE)]
    place = PLACES[(k * 5) % len(PLACES)]
    text = f"{first} {last} flew to {place} on Monday. In {place}, {last} said {pronoun} was tired."
    marks = [f"{first} {last}", place, place, last, pronoun]
    spans, at = [], 0
    for mention, label in zip(marks, ["PER", "LOC", "LOC", "PER", "PER"]):
        start = text.index(mention, at) if mention != pronoun else text.index(f" {pronoun} ", at) + 1
        spans.append((start, start + len(mention), label))
        at = start + len(mention)
    return text, spans, [(2, 1), (3, 0), (4, 3)]


def result(text, spans, links, *, direction="right"):
    regions = [{"id": f"r{k}", "from_name": "mention", "to_name": "text", "type": "labels",
                "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}} for k, (s, e, label) in enumerate(spans)]
    return regions + [{"from_id": f"r{i}", "to_id": f"r{j}", "type": "relation", "direction": direction,
                       "labels": ["coref"]} for i, j in links]


def test_the_coreference_template_links_the_regions_of_its_labels_control():
    schema = parse_label_config(COREF)
    labels, relations = schema.controls
    assert (labels.kind, relations.kind, relations.from_name) == ("labels", "relations", RELATIONS)
    assert relations.to_name == "mention" and relations.labels == ("coref",)
    assert find_control(COREF).kind == "relations"  # its export carries the spans too
    assert find_control(COREF, "mention").kind == "labels"
    plain = parse_label_config(COREF.replace('<Relation value="coref"/>', "")).controls[1]
    assert plain.kind == "relations" and plain.labels == ("",)  # links drawn with no label
    no_spans = '<View><Relations><Relation value="r"/></Relations><Choices name="c" toName="text">' \
               '<Choice value="A"/></Choices><Text name="text" value="$text"/></View>'
    with pytest.raises(UnsupportedConfigError, match="links regions of a <Labels> control"):
        parse_label_config(no_spans)


def test_an_answer_is_the_sorted_spans_and_links_between_their_indices():
    text, spans, links = story(0)
    spec = parse_label_config(COREF).controls[1]
    shuffled = result(text, spans, links)
    shuffled = shuffled[3:5] + shuffled[:3] + shuffled[5:]  # region order in a result is not span order
    answer = answer_of(spec, shuffled)
    assert answer.spans == tuple(Span(s, e, label) for s, e, label in spans)
    assert answer.links == ((2, 1, "coref"), (3, 0, "coref"), (4, 3, "coref"))
    left = answer_of(spec, result(text, spans, [(1, 2)], direction="left"))  # an arrow drawn backwards
    assert left.links == ((2, 1, "coref"),)
    dangling = result(text, spans, links) + [{"from_id": "r0", "to_id": "gone", "type": "relation",
                                               "direction": "right", "labels": ["coref"]}]
    with pytest.raises(AnnotationError, match="no 'mention' region with that id"):
        answer_of(spec, dangling)


def test_link_f1_muc_and_b_cubed_on_textbook_cases():
    gold = [Links(tuple(Span(k, k + 1, "PER") for k in range(4)), ((1, 0, "coref"), (2, 1, "coref")))]
    assert chains(4, gold[0].links) == [{0, 1, 2}, {3}]
    predicted = [[(0, 1, "coref")]]  # the reverse of a gold link counts; one link missed
    f = link_f1(gold, predicted)
    assert (f["precision"], f["recall"]) == (1.0, 0.5)
    scores = coreference_scores(gold, predicted)
    assert scores["muc"]["precision"] == 1.0 and scores["muc"]["recall"] == pytest.approx(0.5)
    assert scores["b_cubed"]["precision"] == 1.0 and scores["b_cubed"]["recall"] == pytest.approx(2 / 3)
    perfect = coreference_scores(gold, [[(1, 0, "coref"), (2, 0, "coref")]])  # other links, same chains
    assert perfect["muc"]["f1"] == perfect["b_cubed"]["f1"] == 1.0
    assert link_f1(gold, [[]])["f1"] == 0.0


def test_decoding_keeps_the_surer_direction_and_pairs_stay_within_reach():
    pairs = [(0, 1), (1, 0)]
    probs = np.array([[0.3, 0.7], [0.1, 0.9]])
    (link,) = decode(pairs, probs, ["coref"])
    assert (link.source, link.target, link.score) == (1, 0, 0.9)
    assert len(candidate_pairs(40)) < 40 * 39  # far mentions are never paired
    assert (0, 1) in candidate_pairs(2) and (1, 0) in candidate_pairs(2)


def test_links_are_decoded_into_consistent_chains():
    from labelloop.relations import decode_chains

    text = "Anna Berg met Tom Hale. Berg said she was tired, and he left."
    names = ["Anna Berg", "Tom Hale", "Berg", "she", "he"]
    spans = [Span(text.index(n), text.index(n) + len(n), "PER") for n in names]
    pairs = candidate_pairs(len(spans))
    p = {(2, 0): 0.9, (2, 1): 0.6, (3, 1): 0.8, (3, 2): 0.7, (4, 3): 0.9, (4, 1): 0.2}
    probs = np.array([[1 - p.get((max(i, j), min(i, j)), 0.0), p.get((max(i, j), min(i, j)), 0.0)]
                      for i, j in pairs])
    links = decode_chains(text, spans, pairs, probs, 1, "coref")
    got = sorted(map(sorted, chains(len(spans), [(x.source, x.target, x.label) for x in links])))
    # "Berg" is not "Tom Hale"; "she" joins one chain (Hale's, the likelier); "he" may share no chain with "she"
    assert got == [[0, 2], [1, 3], [4]]
    assert all(x.target < x.source for x in links) and len({x.source for x in links}) == len(links)
    # learned from annotations: a mention with "Tom" takes "he"; so "she" joins Berg, and "he" the less likely Hale
    informed = decode_chains(text, spans, pairs, probs, 1, "coref", agreement={"tom": "he"})
    assert sorted(map(sorted, chains(len(spans), [(x.source, x.target, x.label) for x in informed]))) == [
        [0, 2, 3], [1, 4]]


def test_the_pronouns_a_name_takes_are_learned_from_annotated_chains():
    from labelloop.relations import agreement_lexicon

    stories = [story(k) for k in range(16)]
    texts = [t for t, _, _ in stories]
    answers = [Links(tuple(Span(*s) for s in spans), tuple((i, j, "coref") for i, j in links))
               for _, spans, links in stories]
    lexicon = agreement_lexicon(texts, answers, ["coref"])
    assert lexicon["anna"] == lexicon["berg"] == "she" and lexicon["tom"] == "he"
    assert "oslo" not in lexicon and agreement_lexicon(texts, answers, []) == {}


@pytest.mark.model
def test_a_project_with_plain_links_learns_them_and_predicts_links_without_a_label(client):
    plain = COREF.replace('<Relation value="coref"/>', "")
    assert client.post("/setup", json={"project": "9.1", "schema": plain}).status_code == 200
    stories = [story(k) for k in range(24)]
    for k, (text, spans, links) in enumerate(stories[:18]):
        drawn = [{key: v for key, v in r.items() if key != "labels" or r["type"] != "relation"}
                 for r in result(text, spans, links)]  # relations drawn with no label
        assert webhook(client, 600 + k, 600 + k, text, drawn, project=9).status_code == 200
    client.app.state.worker.run_pending()
    tasks = [{"id": 950 + k, "data": {"text": t}} for k, (t, _, _) in enumerate(stories[18:])]
    results = client.post("/predict", json={"project": "9.1", "tasks": tasks}).json()["results"]
    made = [r for res in results for r in res["result"] if r["type"] == "relation"]
    assert len(made) >= len(tasks) and all("labels" not in r for r in made)
    interface = LabelInterface(plain)
    assert all(interface.validate_prediction({"result": res["result"]}) for res in results)


@pytest.mark.model
def test_a_coreference_project_learns_links_and_predicts_them_between_its_predicted_spans(client):
    assert client.post("/setup", json={"project": "8.1", "schema": COREF}).status_code == 200
    stories = [story(k) for k in range(24)]
    for k, (text, spans, links) in enumerate(stories[:18]):
        assert webhook(client, 500 + k, 500 + k, text, result(text, spans, links), project=8).status_code == 200
    client.app.state.worker.run_pending()
    service = client.app.state.service
    spec = parse_label_config(COREF).controls[1]
    linker = service.registry.current(8).model(spec)
    held = stories[18:]
    gold = [Links(tuple(Span(*s) for s in spans), tuple((i, j, "coref") for i, j in links)) for _, spans, links in held]
    found = linker.predict_links([t for t, _, _ in held], [list(g.spans) for g in gold])
    scores = link_f1(gold, [[(x.source, x.target, x.label) for x in links] for links, _ in found])
    assert scores["f1"] > 0.8, scores
    tasks = [{"id": 900 + k, "data": {"text": t}} for k, (t, _, _) in enumerate(held)]
    results = client.post("/predict", json={"project": "8.1", "tasks": tasks}).json()["results"]
    interface = LabelInterface(COREF)
    relations = 0
    for res in results:
        ids = {r["id"] for r in res["result"] if r["type"] == "labels"}
        for r in res["result"]:
            if r["type"] == "relation":
                relations += 1
                assert r["from_id"] in ids and r["to_id"] in ids and r["labels"] == ["coref"] and 0 < r["score"] <= 1
        assert interface.validate_prediction({"result": res["result"]}), res["result"]
    assert relations >= len(held)  # links between the spans the tagger predicted in the same result
    meta = json.loads((service.store.models_dir / "8" / "labelloop-v1" / "meta.json").read_text())
    assert {c["type"] for c in meta["controls"]} == {"labels", "links"}
    folder = service.store.models_dir / "8" / "labelloop-v1"
    loaded = service.features.load(folder, next(c for c in meta["controls"] if c["type"] == "links"))
    again = loaded.predict_links([t for t, _, _ in held], [list(g.spans) for g in gold])
    assert [links for links, _ in again] == [links for links, _ in found]


def test_relations_export_with_their_spans_and_augmentation_refuses_them():
    text, spans, links = story(3)
    tasks = [{"id": 1, "data": {"text": text}, "annotations": [{"id": 1, "result": result(text, spans, links)}]}]
    train, test, report, _ = build_dataset(tasks, COREF, ExportConfig(test_fraction=0.0))
    (record,) = train + test
    assert record["spans"] == [{"start": s, "end": e, "label": label} for s, e, label in spans]
    assert record["relations"] == [{"from": i, "to": j, "label": "coref"} for i, j in links]
    assert report["labels"]["train"] == {"LOC": 2, "PER": 3, "coref": 3}
    with pytest.raises(ConfigError, match="relations can't be augmented"):
        augment_records([record], [], progress=False)


def test_the_llm_sees_numbered_mentions_and_its_links_are_checked():
    text, spans, _ = story(1)
    prompt = PromptTemplate().render_relations(text, [Span(*s) for s in spans], ["coref"])
    assert "[1: Tom Hale] flew to [2: Dublin]" in prompt and "[5: he]" in prompt
    answer = 'Sure: {"links": [{"from": 4, "to": 1, "label": "coref"}, {"from": 9, "to": 1, "label": "coref"}, ' \
             '{"from": 2, "to": 3, "label": "works_for"}, {"from": 5, "to": 4}]}'
    links, dropped = parse_links(answer, 5, ["coref"])
    assert links == [(3, 0, "coref"), (4, 3, "coref")] and dropped == 2
    assert parse_links("no JSON here", 5, ["coref"]) == ([], 0)


def test_the_llm_links_mentions_by_number_back_to_the_callers_spans():
    import httpx

    from labelloop.llm import LLMLabeler, OpenAIEndpoint

    prompts = []

    def server(request):
        prompts.append(json.loads(request.content)["messages"][-1]["content"])
        answer = '{"links": [{"from": 4, "to": 1, "label": "coref"}, {"from": 5, "to": 4, "label": "coref"}]}'
        return httpx.Response(200, json={"choices": [{"message": {"content": answer}}],
                                         "usage": {"prompt_tokens": 9, "completion_tokens": 9}})

    llm = OpenAIEndpoint("http://127.0.0.1:1/v1", "m", http=httpx.Client(transport=httpx.MockTransport(server)))
    text, spans, _ = story(2)
    given = [Span(*s) for s in reversed(spans)]  # the caller's order is not the text's
    (answer,) = LLMLabeler(llm).relate([text], [given], ["coref"])
    assert "[1: Maria Lopez]" in prompts[0]
    assert {(given[x.source].start, given[x.target].start) for x in answer.links} == {
        (spans[3][0], spans[0][0]), (spans[4][0], spans[3][0])}
    (alone,) = LLMLabeler(llm).relate(["Just Oslo."], [[Span(5, 9, "LOC")]], ["coref"])
    assert alone.links == [] and len(prompts) == 1  # one mention: nothing to ask


@pytest.mark.model
def test_the_audit_split_scores_links_on_gold_mentions(make_client, caplog):
    client = make_client(audit_share=0.5)
    client.post("/setup", json={"project": "3.1", "schema": COREF})
    for k in range(30):
        text, spans, links = story(k)
        webhook(client, 700 + k, 700 + k, text, result(text, spans, links), project=3)
    with caplog.at_level("INFO", logger="labelloop.serving.training"):
        client.app.state.worker.run_pending()
    service = client.app.state.service
    meta = json.loads((service.store.models_dir / "3" / "labelloop-v1" / "meta.json").read_text())
    scored = meta["audit"][RELATIONS]
    assert scored["tasks"] == len(service.annotations.audit_records(3)) > 0
    assert scored["gold_links"] == 3 * scored["tasks"] and 0 <= scored["muc"]["f1"] <= 1
    assert "link F1" in caplog.text and "MUC F1" in caplog.text


def test_annotators_agree_link_by_link():
    from labelloop.data.dataset import agreement_stats

    text, spans, links = story(0)
    one, other = result(text, spans, links), result(text, spans, links[:2])
    stats = agreement_stats([{"id": 1, "data": {"text": text}, "annotations": [{"result": one}, {"result": other}]}],
                            parse_label_config(COREF).controls[1])
    assert stats["full_agreement"] == 0.0 and stats["link_f1"] == pytest.approx(2 * 2 / (3 + 2))


@pytest.mark.model
def test_a_task_with_one_mention_trains_the_tagger_and_leaves_the_links_for_later(client, caplog):
    client.post("/setup", json={"project": "2.1", "schema": COREF})
    text = "Anna Berg slept."
    webhook(client, 801, 801, text, result(text, [(0, 9, "PER")], []), project=2)
    with caplog.at_level("WARNING", logger="labelloop.serving.training"):
        client.app.state.worker.run_pending()
    service = client.app.state.service
    labels, relations = parse_label_config(COREF).controls
    bundle = service.registry.current(2)
    assert bundle.version == "labelloop-v1" and bundle.model(labels) is not None and bundle.model(relations) is None
    assert "@relations not trained: no pair of mentions" in caplog.text
