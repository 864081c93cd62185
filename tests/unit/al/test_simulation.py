"""`labelloop al simulate` end to end on a small labeled file: curves beside random, JSON and a plot."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.model  # whole learning runs on the packaged encoder

TOPICS = {"sport": ["striker", "goalkeeper", "league", "referee", "marathon", "tennis"],
          "cooking": ["oven", "recipe", "flour", "simmer", "garlic", "dough"]}


def test_simulation_reports_curves_beside_random_and_draws_them(tmp_path):
    rows = [{"text": f"A story about the {w} number {i}.", "label": label}
            for label, words in TOPICS.items() for i in range(5) for w in words]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = subprocess.run([sys.executable, "-m", "labelloop.cli", "--log-level", "warning", "al", "simulate", "--data",
                          str(data), "--seed-size", "4", "--batch", "4", "--rounds", "3", "--repeats", "2", "--json",
                          "--plot", str(tmp_path / "curves.png")], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "LABELLOOP_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["strategies"]) == {"random", "margin"}  # random always runs beside the others
    for s in result["strategies"].values():
        assert [n for n, _ in s["curve"]] == [4, 8, 12, 16] and len(s["curve_std"]) == 4
        assert all(0.0 <= a <= 1.0 for _, a in s["curve"]) and 0.0 <= s["auc"] <= 1.0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_learner_reports_curves_at_the_label_counts_and_the_ladder_follows_its_schedule(tmp_path,
                                                                                            tiny_bert_path, capsys):
    """head, setfit, finetune and auto on one small pool, the heavy ones on a tiny random BERT: every learner
    has random beside margin, sparse learners train at the seed size doubling, the ladder fine-tunes once its
    training labels reach finetune_at and its gate judges on the audit items it labeled."""
    import numpy as np

    from labelloop.al.learners import Pool
    from labelloop.al.simulation import SimulationConfig, simulate
    from labelloop.encoder import load_encoder
    from labelloop.models import ChoicesModel

    rows = [(f"A story about the {w} number {i}.", label) for label, words in TOPICS.items()
            for i in range(6) for w in words]
    texts, labels = [t for t, _ in rows], [y for _, y in rows]
    names = tuple(sorted(TOPICS))
    encoder = load_encoder("")
    pool = Pool(texts, encoder.embed(texts), np.array([names.index(y) for y in labels]), names,
                ChoicesModel.zero_shot(encoder, names), tiny_bert_path, tmp_path)
    config = SimulationConfig(learners=("head", "self", "setfit", "finetune", "auto"), seed_size=4, batch=4, rounds=4,
                              repeats=1, audit_share=0.25, finetune_at=8, gate_budget=10)
    steps = []
    result = simulate(pool, config, steps.append)
    assert capsys.readouterr().out == ""  # stdout is the command's output (`--json`): training logs go to stderr
    assert set(result["learners"]) == {"head", "self", "setfit", "finetune", "auto"}
    assert result["strategies"] == result["learners"]["head"]["strategies"]  # today's top-level shape is kept
    for name, found in result["learners"].items():
        assert set(found["strategies"]) == {"random", "margin"} and found["seconds"] >= 0.0
        sizes = [n for n, _ in found["strategies"]["margin"]["curve"]]
        assert sizes == ([4, 8, 12, 16, 20] if name in ("head", "self", "auto") else [4, 8, 16, 20])
        for s in found["strategies"].values():
            assert all(0.0 <= a <= 1.0 for _, a in s["curve"])
            assert set(s["accuracy_at"]) == set() and s["labels_to_95"] in (None, *sizes)
    assert len(steps) == 2 * (5 + 5 + 4 + 4 + 5)
    events = result["learners"]["auto"]["events"]
    finetunes = [e for e in events if e["what"] == "finetune"]
    assert finetunes and all(e["labels"] >= 8 for e in finetunes)
    verdicts = [e for e in events if e["what"] in ("promote", "futility", "refuse", "carry", "hold")]
    assert verdicts and all(e["evidence"]["budget"] == 10 and e["evidence"]["labels"] <= 10 for e in verdicts)


def test_self_training_adds_only_confident_pseudo_labels_from_the_unlabeled_pool():
    import numpy as np

    from labelloop.al.learners import Pool, SelfTrainingLearner
    from labelloop.models import ChoicesModel

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(1, 0.1, (20, 4)), rng.normal(-1, 0.1, (20, 4))]).astype(np.float32)
    y = np.array([0] * 20 + [1] * 20)
    prior = ChoicesModel(("a", "b"), False, np.zeros((4, 2), np.float32), np.zeros(2, np.float32),
                         np.zeros((4, 2), np.float32))
    pool = Pool([str(i) for i in range(40)], x, y, ("a", "b"), prior, "", __import__("pathlib").Path("."))
    seen = []
    original = prior.fit
    prior.fit = lambda xs, ys, **kw: (seen.append(len(xs)), original(xs, ys, **kw))[1]
    predict = SelfTrainingLearner(pool).fit(np.array([0, 20]), np.arange(1, 20))
    assert seen[0] == 2 and seen[1] > 2  # refit on the labels plus confident pool items (never test ones)
    assert (predict(np.arange(40)).argmax(1) == y).mean() > 0.9


def test_unknown_learner_is_a_one_line_error(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    out = subprocess.run([sys.executable, "-m", "labelloop.cli", "al", "simulate", "--data", str(data),
                          "--learner", "head,bert"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "LABELLOOP_HOME": str(tmp_path / "home")})
    assert out.returncode == 1 and "unknown learner bert: use a comma list of head, self, setfit, finetune, auto" in out.stderr
    assert "Traceback" not in out.stderr


def test_span_data_is_simulated_with_the_tagger_and_scored_by_span_f1(tmp_path):
    import random

    rng = random.Random(0)
    people, places = ["Maria Lopez", "John Smith", "Ana Silva", "Li Wei"], ["Lisbon", "Paris", "Osaka", "Lima"]
    rows = []
    for i in range(60):
        person, place = rng.choice(people), rng.choice(places)
        text = f"Yesterday {person} flew to {place} for the meeting number {i}."
        start = text.index(person)
        rows.append({"text": text, "spans": [{"start": start, "end": start + len(person), "label": "PER"},
                                             {"start": text.index(place), "end": text.index(place) + len(place),
                                              "label": "LOC"}]})
    data = tmp_path / "spans.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = subprocess.run([sys.executable, "-m", "labelloop.cli", "--log-level", "warning", "al", "simulate", "--data",
                          str(data), "--seed-size", "4", "--batch", "4", "--rounds", "2", "--repeats", "1", "--json"],
                         capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "LABELLOOP_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["metric"] == "span_f1" and set(result["strategies"]) == {"random", "margin"}
    for s in result["strategies"].values():
        assert [n for n, _ in s["curve"]] == [4, 8, 12] and all(0.0 <= f <= 1.0 for _, f in s["curve"])
    assert result["full_pool_accuracy"] > 0.8  # names that repeat: the tagger and its gazetteer find them


def test_span_f1_counts_exact_matches_only():
    from labelloop.al.spans import span_f1
    from labelloop.spans import Span

    gold = [[Span(0, 5, "PER"), Span(10, 15, "LOC")], []]
    assert span_f1(gold, gold) == 1.0
    assert span_f1(gold, [[Span(0, 5, "PER"), Span(10, 14, "LOC")], [Span(1, 2, "LOC")]]) == 2 * 1 / (2 + 3)
    assert span_f1([[]], [[]]) == 1.0


def test_bald_picks_by_monte_carlo_dropout_of_the_fine_tuned_model(tmp_path, tiny_bert_path, monkeypatch):
    import numpy as np

    from labelloop.al import simulation as al
    from labelloop.al.learners import Pool
    from labelloop.al.simulation import SimulationConfig, simulate
    from labelloop.encoder import load_encoder
    from labelloop.errors import ConfigError
    from labelloop.models import ChoicesModel

    with pytest.raises(ConfigError, match="only the finetune learner has"):
        SimulationConfig(learners=("head",), strategies=("bald",))
    with pytest.raises(ConfigError, match="setfit_below"):
        SimulationConfig(setfit_below=-1)
    rows = [(f"A story about the {w} number {i}.", label) for label, words in TOPICS.items()
            for i in range(4) for w in words]
    names = tuple(sorted(TOPICS))
    encoder = load_encoder("")
    texts = [t for t, _ in rows]
    pool = Pool(texts, encoder.embed(texts), np.array([names.index(y) for _, y in rows]), names,
                ChoicesModel.zero_shot(encoder, names), tiny_bert_path, tmp_path)
    shapes = []
    original = al.bald
    monkeypatch.setattr(al, "bald", lambda mc: (shapes.append(mc.shape), original(mc))[1])
    result = simulate(pool, SimulationConfig(learners=("finetune",), strategies=("bald",), seed_size=12, batch=6,
                                             rounds=1, repeats=1))
    assert set(result["learners"]["finetune"]["strategies"]) == {"random", "bald"}
    assert shapes and shapes[0][0] == 10 and shapes[0][2] == 2  # 10 dropout samples over the unlabeled pool


def test_after_a_fresh_audit_frame_the_queue_spreads_its_tasks_at_the_share_of_new_labels():
    """As the backend's queue, which spreads the current frame's tasks one in every 1 / share: a frame drawn at
    100 labels gets its share of the labels that come after, not a burst that catches up with the first 100."""
    from labelloop.al.simulation import _next_batch

    n = 400
    pool = type("P", (), {"x": np.zeros((n, 2))})()
    ids = np.arange(n)
    labeled = np.zeros(n, dtype=bool)
    labeled[:100] = True
    audit = np.zeros(n, dtype=bool)
    audit[100::5] = True  # the fresh frame: a fifth of the unlabelled items, none of the labelled ones
    predict = lambda at: np.full((len(at), 2), 0.5)  # noqa: E731
    picked = _next_batch("random", predict, pool, ids, labeled, 20, audit, 0.1, np.random.default_rng(0), since=100)
    assert len(picked) == 20 and audit[picked].sum() == 2  # 10% of the 20 new labels
    burst = _next_batch("random", predict, pool, ids, labeled, 20, audit, 0.1, np.random.default_rng(0), since=0)
    assert audit[burst].sum() == 12  # counted from the start, the frame would take 12 of 20 at once
