import numpy as np
import pytest

from labelloop.quality.weak import ABSTAIN, LabelModel, apply_lfs, keyword_lf, lf_summary, model_lf, regex_lf

LABELS = ["sport", "cooking"]


def test_lfs_vote_or_abstain_and_unknown_labels_are_named():
    lfs = [keyword_lf("sport", ["goal", "match"]), regex_lf("cooking", r"\d+ (g|ml)\b"),
           model_lf("model", lambda texts: np.array([[0.9, 0.1]] * len(texts)), LABELS, threshold=0.95)]
    votes = apply_lfs(lfs, ["A late goal won the match", "Add 200 g of flour", "Nothing here"], LABELS)
    assert votes.tolist() == [[0, ABSTAIN, ABSTAIN], [ABSTAIN, 1, ABSTAIN], [ABSTAIN, ABSTAIN, ABSTAIN]]
    assert keyword_lf("sport", ["goal"]).fn("goalkeeper") is None  # whole words only
    with pytest.raises(ValueError, match="'bad' voted 'finance'"):
        apply_lfs([keyword_lf("finance", ["bank"], name="bad")], ["the bank"], LABELS)


def test_summary_counts_coverage_overlap_conflict_and_accuracy():
    votes = np.array([[0, 0, ABSTAIN], [0, 1, ABSTAIN], [ABSTAIN, 1, 1], [ABSTAIN, ABSTAIN, ABSTAIN]])
    gold = np.array([0, 1, ABSTAIN, 1])
    rows = lf_summary(votes, ["a", "b", "c"], gold)
    assert rows[0] == {"lf": "a", "coverage": 0.5, "overlap": 0.5, "conflict": 0.25, "n_gold": 2, "accuracy": 0.5}
    assert rows[1]["coverage"] == 0.75 and rows[1]["overlap"] == 0.75 and rows[1]["conflict"] == 0.25
    assert rows[1]["accuracy"] == 1.0 and rows[2]["accuracy"] is None


def test_label_model_learns_which_lfs_to_trust_and_beats_majority_vote():
    rng = np.random.default_rng(0)
    n, k = 3000, 3
    y = rng.integers(0, k, n)
    accuracies, coverages = [0.9, 0.85, 0.4, 0.4, 0.4], [0.6, 0.6, 0.9, 0.9, 0.9]
    votes = np.full((n, len(accuracies)), ABSTAIN)
    for j, (acc, cov) in enumerate(zip(accuracies, coverages)):
        on = rng.random(n) < cov
        right = rng.random(n) < acc
        wrong = (y + rng.integers(1, k, n)) % k
        votes[on, j] = np.where(right, y, wrong)[on]
    model = LabelModel(k).fit(votes)
    probs = model.predict_proba(votes)
    assert probs.shape == (n, k) and np.allclose(probs.sum(axis=1), 1)
    learned = model.accuracies()
    assert learned[0] > 0.8 and learned[1] > 0.75 and (learned[2:] < 0.55).all()
    voted = (votes != ABSTAIN).any(axis=1)
    majority = LabelModel(k)._majority(votes).argmax(axis=1)
    assert (probs.argmax(axis=1) == y)[voted].mean() > (majority == y)[voted].mean() + 0.05
    ignoring = LabelModel(k, abstain="ignore").fit(votes)
    silent = ~voted
    assert np.allclose(ignoring.predict_proba(votes)[silent], ignoring.prior)  # no votes, no evidence
    assert (ignoring.predict_proba(votes).argmax(axis=1) == probs.argmax(axis=1))[voted].mean() > 0.97


TOPICS = {"sport": ["match", "goal", "coach", "league"], "cooking": ["oven", "recipe", "flour", "simmer"],
          "finance": ["shares", "bank", "profit", "market"], "travel": ["flight", "hotel", "beach", "visa"],
          "music": ["album", "guitar", "concert", "band"]}
FILLER = ["the", "a", "new", "report", "said", "on", "monday", "people", "many", "week", "this", "city"]


def topic_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Texts of five topics: two of the topic's words, sometimes one of another topic's, and filler."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    texts, y = [], rng.integers(0, len(names), n)
    for label in y:
        words = list(rng.choice(FILLER, 6)) + list(rng.choice(TOPICS[names[label]], rng.integers(0, 3)))
        if rng.random() < 0.3:
            words.append(rng.choice(TOPICS[names[rng.integers(0, len(names))]]))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, y


def test_one_label_keyword_rules_never_do_worse_than_majority_vote():
    from labelloop.quality.weak import WeakRules, apply_lfs, combine_votes, majority_vote

    names = list(TOPICS)
    rules = WeakRules(keywords={label: words for label, words in TOPICS.items()})
    for seed in (0, 1, 2):
        texts, y = topic_texts(1500, seed)
        votes = apply_lfs(rules.labeling_functions(names), texts, names)
        covered = (votes != ABSTAIN).any(axis=1)
        majority = (majority_vote(votes, len(names)).argmax(axis=1) == y)[covered].mean()
        modelled = (LabelModel(len(names)).fit(votes).predict_proba(votes).argmax(axis=1) == y)[covered].mean()
        ignored = (LabelModel(len(names), abstain="ignore").fit(votes).predict_proba(votes).argmax(axis=1)
                   == y)[covered].mean()
        assert modelled >= majority - 0.03, (seed, modelled, majority)  # within noise of it, on its own
        assert ignored < majority - 0.1, (seed, ignored, majority)  # the collapse that modelling abstention avoids
        gold = np.where(np.arange(len(y)) % 5 == 0, y, ABSTAIN)  # a fifth of the texts annotated
        combined = combine_votes(votes, len(names), gold)
        judged = covered & (gold != ABSTAIN)
        assert combined.n_gold == judged.sum() and combined.majority_accuracy is not None
        got = (combined.probs.argmax(axis=1) == gold)[judged].mean()
        assert got >= combined.majority_accuracy == (majority_vote(votes, 5).argmax(axis=1) == gold)[judged].mean()


def test_one_list_per_label_with_few_annotations_falls_back_to_majority_vote_and_says_why():
    """Three lists, one per label, 100 of 1,000 texts annotated (about 18 of them covered): the unsupervised
    label model had labelled every covered text with one label (0.333 against majority vote's 0.443)."""
    from labelloop.quality.weak import combine_votes, majority_vote, overlap

    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 1000)
    votes = np.full((1000, 3), ABSTAIN)
    for i, label in enumerate(y):
        if rng.random() < 0.12:  # a text one list matches: its own label 60% of the time
            lf = label if rng.random() < 0.6 else rng.integers(0, 3)
            votes[i, lf] = lf
    gold = np.where(np.arange(1000) < 100, y, ABSTAIN)
    gold[np.flatnonzero((votes != ABSTAIN).any(axis=1) & (gold != ABSTAIN))[18:]] = ABSTAIN  # 18 covered ones
    assert overlap(votes) == 0.0
    combined = combine_votes(votes, 3, gold)
    assert combined.combiner == "majority vote" and combined.n_gold < 20
    assert "too little for a label model" in combined.reason and "annotated" in combined.reason
    np.testing.assert_allclose(combined.probs, majority_vote(votes, 3))


def test_the_label_model_learns_from_the_annotations_and_is_chosen_only_when_cross_fitting_says_so():
    from labelloop.quality.weak import combine_votes

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 600)
    # Three functions; the first is right 90% of the time, the other two only 55%, and they often outvote it.
    votes = np.stack([np.where(rng.random(600) < p, y, 1 - y) for p in (0.9, 0.55, 0.55)], axis=1)
    unsupervised = LabelModel(2).fit(votes)
    semi = LabelModel(2).fit(votes, np.where(np.arange(600) < 120, y, ABSTAIN))
    assert semi.accuracies()[0] > 0.85 and abs(semi.accuracies()[1] - 0.55) < 0.1
    combined = combine_votes(votes, 2, np.where(np.arange(600) < 120, y, ABSTAIN))
    assert combined.combiner == "label model" and combined.label_model_accuracy > combined.majority_accuracy
    rest = np.arange(600) >= 120
    assert (combined.probs.argmax(axis=1) == y)[rest].mean() > 0.85
    assert unsupervised.accuracies().shape == (3,)


def test_gazetteer_finds_annotated_mentions_longest_first_with_their_usual_label():
    from labelloop.quality.weak import span_lf_summary
    from labelloop.spans import Gazetteer, Span

    texts = ["Anna lives in New York", "New York Times hired Anna", "anna called"]
    spans = [[Span(0, 4, "PER"), Span(14, 22, "LOC")], [Span(0, 14, "ORG"), Span(21, 25, "PER")], [Span(0, 4, "LOC")]]
    gazetteer = Gazetteer.from_annotations(texts, spans)
    assert len(gazetteer) == 3 and gazetteer.entries["anna"] == "PER"  # 2 votes to 1
    text = "ANNA read the New York Times in New York."
    assert [(text[s.start:s.end], s.label) for s in gazetteer.find(text)] == [
        ("ANNA", "PER"), ("New York Times", "ORG"), ("New York", "LOC")]
    assert Gazetteer({}).find("anything") == [] and Gazetteer.from_annotations(texts, spans, min_count=2).entries == {
        "anna": "PER"}
    found = [gazetteer.find(t) for t in texts]
    (row,) = span_lf_summary({"gazetteer": found}, [spans[0], None, spans[2]])
    assert row["coverage"] == 1.0 and row["n_gold"] == 2
    assert row["precision"] == pytest.approx(2 / 3) and row["recall"] == pytest.approx(2 / 3)


def test_rules_build_labeling_functions_and_name_what_is_wrong():
    from labelloop.errors import ConfigError
    from labelloop.quality.weak import WeakRules

    rules = WeakRules.from_dict({"keywords": {"pos": ["great"]}, "regex": {"neg": [r"\bwaste of\b", "awful"]}})
    lfs = rules.labeling_functions(["pos", "neg"])
    assert [lf.name for lf in lfs] == ["keywords:pos", "regex:neg:0", "regex:neg:1"]
    assert lfs[1].fn("a waste of time") == "neg" and lfs[0].fn("not good") is None
    with pytest.raises(ConfigError, match="names no label"):
        WeakRules(keywords={"joy": ["yay"]}).labeling_functions(["pos", "neg"])
    with pytest.raises(ConfigError, match="is invalid"):
        WeakRules(regex={"pos": ["("]}).labeling_functions(["pos", "neg"])
    with pytest.raises(ConfigError, match="no labeling function"):
        WeakRules().labeling_functions(["pos", "neg"])
    with pytest.raises(ConfigError, match="take the keys"):
        WeakRules.from_dict({"keyword": {}})
