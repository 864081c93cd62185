"""Approval policies, conflicts, leak-free splits and the export report, on plain task dicts."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelloop.data.dataset import ExportConfig, build_dataset
from labelloop.errors import ConfigError
from labelloop.quality.dedup import content_key
from labelloop.templates import label_config

SENT = label_config("sentiment")
NER = label_config("ner", ["PER", "LOC"])
MULTI = label_config("multi-label", ["a", "b", "c"])
QA = label_config("prompt-response")


def choice(label, **extra):
    return {"result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                        "value": {"choices": [label]}}], **extra}


def task(i, text, *annotations):
    return {"id": i, "data": {"text": text}, "annotations": list(annotations)}


def test_policies_pick_what_counts_as_approved_and_report_conflicts():
    tasks = [
        task(1, "Loved it", choice("Positive"), choice("Positive")),
        task(2, "Hated it", choice("Negative"), choice("Positive")),
        task(3, "Fine I guess", choice("Neutral", ground_truth=True), choice("Positive")),
        task(4, "Cancelled one", choice("Positive", was_cancelled=True)),
        task(5, "Majority", choice("Negative"), choice("Negative"), choice("Positive")),
    ]
    train, test, report, _ = build_dataset(tasks, SENT, ExportConfig(policy="any", test_fraction=0.0))
    assert {r["task_id"]: r["label"] for r in train} == {1: "Positive"}
    assert set(report["conflicts"]) == {"2", "3", "5"}
    assert report["skipped"] == {"no annotation": 1}

    train, *_ = build_dataset(tasks, SENT, ExportConfig(policy="ground_truth", test_fraction=0.0))
    assert {r["task_id"]: r["label"] for r in train} == {3: "Neutral"}

    train, _, report, _ = build_dataset(tasks, SENT, ExportConfig(policy="agreement", min_agreement=2,
                                                                  test_fraction=0.0))
    assert {r["task_id"]: r["label"] for r in train} == {1: "Positive", 5: "Negative"}
    assert report["skipped"]["fewer than 2 annotators agree"] == 2

    with pytest.raises(ConfigError, match="policy must be one of"):
        ExportConfig(policy="vibes")


def test_reviewed_policy_uses_review_data():
    tasks = [task(1, "a", choice("Positive", review_result="accepted")), task(2, "b", choice("Negative"))]
    train, _, report, _ = build_dataset(tasks, SENT, ExportConfig(policy="reviewed", test_fraction=0.0))
    assert [r["task_id"] for r in train] == [1]
    assert report["skipped"] == {"no accepted review": 1}


def test_formats_for_multi_label_spans_and_prompt_response():
    multi = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["c", "a"]}}
    train, *_ = build_dataset([task(1, "x", {"result": [multi]})], MULTI, ExportConfig(test_fraction=0.0))
    assert train[0]["labels"] == ["a", "c"]
    span = {"from_name": "label", "to_name": "text", "type": "labels",
            "value": {"start": 0, "end": 4, "text": "Anna", "labels": ["PER"]}}
    train, *_ = build_dataset([task(1, "Anna runs", {"result": [span]})], NER, ExportConfig(test_fraction=0.0))
    assert train[0]["spans"] == [{"start": 0, "end": 4, "label": "PER"}]
    answer = {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": ["Paris."]}}
    train, *_ = build_dataset([task(1, "Capital of France?", {"result": [answer]})], QA, ExportConfig(test_fraction=0.0))
    assert train[0] == {"prompt": "Capital of France?", "response": "Paris.", "task_id": 1}


TEMPLATES = ["I really enjoyed {} and would watch it again soon", "A dull and tiresome evening with {} overall",
             "Nothing special about {} but nothing terrible either"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40), st.booleans()), min_size=5, max_size=60))
def test_splits_never_leak_duplicates_and_are_deterministic(rows):
    tasks = []
    for i, (t, k, shout) in enumerate(rows):
        text = TEMPLATES[t].format(f"film number {k}")
        tasks.append(task(i, text.upper() if shout else text, choice(["Positive", "Negative", "Neutral"][t])))
    config = ExportConfig(test_fraction=0.3)
    train, test, report, test_keys = build_dataset(tasks, SENT, config)
    assert report["leakage"]["test_texts_in_train"] == 0
    assert {content_key(r["text"]) for r in train}.isdisjoint({content_key(r["text"]) for r in test})
    assert len(train) + len(test) == len(tasks)
    again = build_dataset(list(reversed(tasks)), SENT, config)
    assert {r["task_id"] for r in again[1]} == {r["task_id"] for r in test}


def test_frozen_test_set_keeps_test_items_in_test():
    tasks = [task(i, f"Review number {i} says the plot was {'good' if i % 2 else 'bad'} overall.",
                  choice("Positive" if i % 2 else "Negative")) for i in range(40)]
    _, test, _, test_keys = build_dataset(tasks, SENT, ExportConfig(test_fraction=0.25))
    assert test
    # Later, with a different fraction (or salt), earlier test items stay in test.
    _, later_test, _, _ = build_dataset(tasks, SENT, ExportConfig(test_fraction=0.0, salt="other"), test_keys)
    assert {r["task_id"] for r in test} <= {r["task_id"] for r in later_test}


def test_report_counts_duplicates_and_agreement():
    tasks = [task(1, "Same text here", choice("Positive"), choice("Positive")),
             task(2, "same  text HERE", choice("Positive")),
             task(3, "Another one", choice("Negative"), choice("Positive"))]
    _, _, report, _ = build_dataset(tasks, SENT, ExportConfig(test_fraction=0.5))
    assert report["duplicates"]["exact"] == 1
    assert report["agreement"]["tasks_with_several_annotations"] == 2
    assert report["agreement"]["full_agreement"] == 0.5
    assert "fleiss_kappa" in report["agreement"]
    assert sum(report["labels"]["train"].values()) + sum(report["labels"]["test"].values()) == 2


def test_splitting_the_same_records_on_another_audit_frame_groups_duplicates_once(monkeypatch):
    import labelloop.data.dataset as dataset
    from labelloop.audit import AuditFrame

    calls = []
    real = dataset.duplicate_groups
    monkeypatch.setattr(dataset, "duplicate_groups", lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw))
    tasks = [task(i, f"Frame check {i}: the plot was {'good' if i % 2 else 'bad'} and the cast {i * 7}.",
                  choice("Positive" if i % 2 else "Negative")) for i in range(60)]
    config = ExportConfig(split="audit", audit_share=0.3)
    splits = [build_dataset(tasks, SENT, config, project_id=5, frame=AuditFrame(5, 0.3, r))[1] for r in (0, 1)]
    assert calls == [60]  # the second frame reused the grouping
    assert {r["task_id"] for r in splits[0]} != {r["task_id"] for r in splits[1]}
