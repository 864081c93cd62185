import numpy as np
import pytest

from labelloop.weak import ABSTAIN, LabelModel, apply_lfs, keyword_lf, lf_summary, model_lf, regex_lf

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
    silent = ~voted
    assert np.allclose(probs[silent], model.prior)  # no votes, no evidence
