"""Human evaluation: the win rate and its interval, ties, judge agreement and preference pairs."""

import pytest

from labelloop.human_eval import preferences, tally

STATE = {"run": "sft-1", "against": "base", "items": {
    "i1": {"a": "sft-1", "b": "base", "prompt": "p1", "answers": {"sft-1": "good 1", "base": "bad 1"}},
    "i2": {"a": "base", "b": "sft-1", "prompt": "p2", "answers": {"sft-1": "good 2", "base": "bad 2"}},
    "i3": {"a": "base", "b": "sft-1", "prompt": "p3", "answers": {"sft-1": "x 3", "base": "y 3"}},
    "i4": {"a": "sft-1", "b": "base", "prompt": "p4", "answers": {"sft-1": "x 4", "base": "y 4"}}}}


def test_win_rate_counts_sides_through_the_hidden_mapping_with_ties_and_agreement():
    judgments = [("i1", "ann", "A is better"), ("i1", "bob", "A is better"),  # the run wins twice (it was A)
                 ("i2", "ann", "B is better"), ("i2", "bob", "A is better"),  # run wins, then base wins
                 ("i3", "ann", "Tie"), ("i4", "ann", "B is better"),  # a tie; base wins (it was B)
                 ("unknown", "ann", "A is better"), ("i4", "bob", "Maybe")]  # ignored
    row = tally(STATE, judgments)
    assert (row["wins"], row["losses"], row["ties"]) == (3, 2, 1)
    assert row["win_rate"] == pytest.approx(0.6) and row["win_low"] < 0.6 < row["win_high"]
    assert row["judge_agreement"] == 0.5 and row["items_with_several_judges"] == 2
    assert set(row["cohen_kappa"]) == {"ann vs bob"} and row["against"] == "base"


def test_preference_pairs_follow_the_majority_and_leave_out_ties_and_splits():
    judgments = [("i1", "ann", "A is better"), ("i1", "bob", "A is better"), ("i1", "cy", "B is better"),
                 ("i2", "ann", "B is better"), ("i2", "bob", "A is better"),  # split: left out
                 ("i3", "ann", "Tie"), ("i4", "ann", "B is better")]
    assert preferences(STATE, judgments) == [
        {"prompt": "p1", "chosen": "good 1", "rejected": "bad 1"},
        {"prompt": "p4", "chosen": "y 4", "rejected": "x 4"}]


def test_no_decided_judgment_is_a_zero_rate_with_the_full_interval():
    row = tally(STATE, [("i3", "ann", "Tie")])
    assert row["win_rate"] == 0.0 and (row["win_low"], row["win_high"]) == (0.0, 1.0) and row["tie_share"] == 1.0
