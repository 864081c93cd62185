import numpy as np
import pytest

from labelloop.labeling.schema import ControlSpec
from labelloop.quality import insights

CONTROL = ControlSpec("choices", "sentiment", "text", "text", ("Positive", "Negative"))
CONFIG = """<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""


def ann(label, who=1, day="2026-01-01", lead=2.0, cancelled=False):
    return {"result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                        "value": {"choices": [label]}}] if label else [],
            "completed_by": who, "created_at": f"{day}T10:00:00Z", "lead_time": lead, "was_cancelled": cancelled}


def test_cohen_kappa_matches_hand_computation():
    # 10 items, observed agreement 0.7; rater a says yes 5 times, rater b 6: expected 0.5*0.6 + 0.5*0.4 = 0.5
    a = ["y"] * 5 + ["n"] * 5
    b = ["y"] * 4 + ["n"] + ["y"] * 2 + ["n"] * 3
    assert insights.cohen_kappa(a, b) == pytest.approx((0.7 - 0.5) / 0.5)
    assert insights.cohen_kappa(a, a) == 1.0
    with pytest.raises(ValueError):
        insights.cohen_kappa([], [])


def test_progress_counts_days_labels_and_annotators():
    tasks = [{"id": 1, "data": {"text": "a"}, "annotations": [ann("Positive", 1, "2026-01-01"), ann("Negative", 2,
                                                                                                 "2026-01-02", 4.0)]},
             {"id": 2, "data": {"text": "b"}, "annotations": [ann(None, 1, cancelled=True)]},
             {"id": 3, "data": {"text": "c"}, "annotations": []}]
    out = insights.progress(tasks, CONTROL, {1: "ann@x", 2: "bob@x"})
    assert (out["tasks"], out["labeled"], out["annotations"], out["skipped"]) == (3, 1, 2, 1)
    assert out["per_day"] == [{"date": "2026-01-01", "annotations": 1, "cumulative": 1},
                              {"date": "2026-01-02", "annotations": 1, "cumulative": 2}]
    assert out["labels"] == {"Positive": 1, "Negative": 1}
    assert {p["annotator"]: p["median_seconds"] for p in out["annotators"]} == {"ann@x": 2.0, "bob@x": 4.0}


def test_pairwise_kappa_uses_each_annotators_latest_label():
    tasks = []
    for i, (x, y) in enumerate([("Positive", "Positive"), ("Negative", "Negative"), ("Positive", "Negative"),
                                ("Negative", "Negative")]):
        tasks.append({"id": i, "annotations": [ann("Negative", 1, "2026-01-01"), ann(x, 1, "2026-01-02"),
                                               ann(y, 2, "2026-01-02")]})
    rows = insights.pairwise_kappa(tasks, CONTROL, annotators={1: "ann", 2: "bob"})
    assert len(rows) == 1 and rows[0]["pair"] == "ann / bob" and rows[0]["shared"] == 4
    assert rows[0]["agreement"] == 0.75
    assert rows[0]["kappa"] == pytest.approx(insights.cohen_kappa(["Positive", "Negative", "Positive", "Negative"],
                                                                  ["Positive", "Negative", "Negative", "Negative"]))


def test_confident_learning_finds_planted_flips(monkeypatch):
    import multiprocessing

    def no_fork(*args, **kwargs):
        raise AssertionError("a server process must never fork a worker pool (a held lock hangs the fork)")

    monkeypatch.setattr(multiprocessing, "Pool", no_fork)
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 300)
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), y_true] = 0.9
    probs += rng.uniform(0, 0.05, probs.shape)
    probs /= probs.sum(axis=1, keepdims=True)
    given = y_true.copy()
    flipped = rng.choice(300, 15, replace=False)
    given[flipped] = (y_true[flipped] + 1) % 3
    found = insights.find_label_issues(given, probs)
    assert set(found) == set(flipped)  # clean probabilities: every planted error, and nothing else
    self_conf = probs[found, given[found]]
    assert (np.diff(self_conf) >= 0).all()  # most suspicious first


def test_out_of_fold_never_predicts_a_row_it_trained_on():
    x = np.arange(20, dtype=float)[:, None]
    y = np.array([0, 1] * 10)
    seen = []

    def fit(xt, yt):
        seen.append(set(xt[:, 0]))
        return lambda xs: np.column_stack([np.isin(xs[:, 0], xt[:, 0]), ~np.isin(xs[:, 0], xt[:, 0])]).astype(float)

    probs = insights.out_of_fold_probs(x, y, fit, folds=5)
    assert len(seen) == 5 and (probs[:, 1] == 1).all()  # every row was out of the model that scored it


def test_queue_preview_orders_like_uncertainty_sampling():
    def pred(score, version="v2", label="Positive"):
        return {"model_version": version, "score": score, "result": ann(label)["result"]}

    tasks = [{"id": 1, "data": {"text": "a"}, "annotations": [], "predictions": [pred(0.9)]},
             {"id": 2, "data": {"text": "b"}, "annotations": [], "predictions": [pred(0.2, label="Negative")]},
             {"id": 3, "data": {"text": "c"}, "annotations": [ann("Positive")], "predictions": [pred(0.1)]},
             {"id": 4, "data": {"text": "d"}, "annotations": [], "predictions": [pred(0.05, version="v1")]}]
    rows = insights.queue_preview(tasks, "v2", CONTROL)
    assert [r["task_id"] for r in rows] == [2, 1, 4]
    assert rows[0]["prediction"] == "Negative" and rows[2]["score"] is None


def test_duplicate_report_groups_and_checks_leakage():
    tasks = [{"id": i, "data": {"text": t}, "annotations": [ann("Positive")]}
             for i, t in enumerate(["Is the charger in the box?", "is the charger in the box ?", "Another text",
                                    "Something else entirely"])]
    report = insights.duplicate_report(tasks, CONFIG, project_id=None, audit_share=None)
    assert [g["task_ids"] for g in report["groups"]] == [[0, 1]]
    assert report["test_texts_in_train"] == 0
    assert report["split"]["train"] + report["split"]["test"] == 4


def test_the_quality_pages_split_is_the_audit_split_export_and_the_gate_use():
    from labelloop.audit import in_audit
    from labelloop.data.dataset import ExportConfig, build_dataset

    tasks = [{"id": i, "data": {"text": f"text number {i} about topic {i * 7}"}, "annotations": [ann("Positive")]}
             for i in range(1, 61)]
    report = insights.duplicate_report(tasks, CONFIG, project_id=5, audit_share=0.3)
    audit = sum(in_audit(5, i, 0.3) for i in range(1, 61))
    assert report["split"] == {"train": 60 - audit, "test": audit}
    _, _, exported, _ = build_dataset(tasks, CONFIG, ExportConfig(audit_share=0.3), project_id=5)
    assert exported["exported"] == report["split"]


def test_progress_buckets_by_hour_for_a_timeline_within_one_day():
    tasks = [{"id": i, "data": {"text": str(i)}, "annotations": [ann("Positive", 1, when)]}
             for i, when in enumerate(["2026-01-01T09:15:00Z", "2026-01-01T09:40:00Z", "2026-01-01T11:02:00Z"])]
    out = insights.progress(tasks, CONTROL)
    assert len(out["per_day"]) == 1
    assert out["per_hour"] == [{"date": "2026-01-01 09:00", "annotations": 2, "cumulative": 2},
                               {"date": "2026-01-01 11:00", "annotations": 1, "cumulative": 3}]


def test_after_a_new_audit_round_export_and_quality_page_split_on_the_backends_frame(tmp_path):
    from labelloop.audit import AuditFrame, in_audit, stored_frame
    from labelloop.data.dataset import ExportConfig, build_dataset
    from labelloop.serving.store import Store

    tasks = [{"id": i, "data": {"text": f"text number {i} about topic {i * 7}"}, "annotations": [ann("Positive")]}
             for i in range(1, 61)]
    store = Store(tmp_path)
    store.new_audit_round(5, {str(i) for i in range(1, 41)}, "a gate settled")  # tasks 1-40 were labelled then
    frame = stored_frame(tmp_path, 5, 0.3)
    assert frame == store.audit_frame(5, 0.3) and frame.round == 1
    train, test, _, _ = build_dataset(tasks, CONFIG, ExportConfig(audit_share=0.3), project_id=5, frame=frame)
    released = {r["task_id"] for r in train} & set(range(1, 41))
    assert released == set(range(1, 41))  # the first frame's audit labels train now
    assert {r["task_id"] for r in test} == {i for i in range(41, 61) if i in frame}
    assert {r["task_id"] for r in test} != {i for i in range(41, 61) if in_audit(5, i, 0.3)}  # a fresh draw
    report = insights.duplicate_report(tasks, CONFIG, project_id=5, audit_share=0.3, frame=frame)
    assert report["split"] == {"train": len(train), "test": len(test)}
    assert AuditFrame(5, 0.3) == stored_frame(tmp_path / "no-backend-here", 5, 0.3)
