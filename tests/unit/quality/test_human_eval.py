"""Human evaluation: the win rate and its interval, ties, judge agreement and preference pairs."""

import pytest

from labelloop.quality.human_eval import preferences, tally

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


def test_one_judge_gets_one_vote_per_task_their_latest():
    """Label Studio 1.23 accepts several annotations of a task from one user: one judge moved the win rate
    from 0.0 to 0.83 and flipped the preference pairs by annotating again and again."""
    from types import SimpleNamespace

    from labelloop.quality.human_eval import judgments_of

    def ann(i, judge, choice, when, cancelled=False):
        return {"id": i, "completed_by": judge, "updated_at": when, "was_cancelled": cancelled,
                "result": [{"from_name": "preference", "value": {"choices": [choice, "A is better"]}}]}

    tasks = [SimpleNamespace(id=1, data={"item": "i1"}, annotations=[
        ann(1, 7, "B is better", "2026-01-01T10:00"), *[ann(10 + k, 9, "A is better", f"2026-01-01T1{k}:00")
                                                       for k in range(5)],
        ann(20, 9, "B is better", "2026-01-01T18:00"), ann(21, 9, "A is better", "2026-01-01T19:00", True)])]

    class Tasks:
        def list(self, **_):
            return SimpleNamespace(items=tasks)

    judgments = judgments_of(SimpleNamespace(tasks=Tasks()), 1)
    assert judgments == [("i1", "7", "B is better"), ("i1", "9", "B is better")]  # judge 9's latest live vote
    row = tally(STATE, judgments + [("i1", "9", "A is better")] * 5)  # repeats can't outvote either
    assert (row["wins"], row["losses"]) == (0, 2) and row["votes_per_judge"] == {"7": 1, "9": 1}
    assert preferences(STATE, judgments + [("i1", "9", "A is better")] * 5) == [
        {"prompt": "p1", "chosen": "bad 1", "rejected": "good 1"}]
