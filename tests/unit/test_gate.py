"""The disagreement gate's statistics: an anytime-valid betting test that keeps false promotions under alpha
however often it looks, has power at a +8 point gain on ~20-40 labels, stops hopeless challengers, and estimates
accuracies without bias while disagreements are over-sampled."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelloop.gate import decide, difference, stratified_accuracy, wealth
from labelloop.serving.queue import place_audit


def outcomes(rng, n, wins, losses):
    u = rng.random(n)
    return np.where(u < wins, 1, np.where(u < wins + losses, -1, 0))


def promoted_by(o, alpha=0.05):
    """Whether a gate that looks after every label ever reaches 1/alpha within these outcomes."""
    return any(wealth(o[:k]) >= 1 / alpha for k in range(1, len(o) + 1))


def test_wealth_starts_at_one_ignores_order_and_draws():
    assert wealth(np.array([])) == 1.0
    o = np.array([1, 1, -1, 0, 1, 0, 1])
    assert wealth(o) == pytest.approx(wealth(o[::-1])) == pytest.approx(wealth(o[o != 0]))
    assert wealth(np.array([1] * 12)) > 20 > wealth(np.array([1, -1] * 20))
    with pytest.raises(ValueError):
        wealth(o, null=1.0)


def test_false_promotions_stay_under_alpha_when_the_gate_looks_after_every_label():
    rng = np.random.default_rng(0)
    for wins, losses in ((0.4, 0.4), (0.5, 0.5), (0.3, 0.4)):  # equal, equal without draws, worse
        runs = [promoted_by(outcomes(rng, 60, wins, losses)) for _ in range(1500)]
        assert np.mean(runs) <= 0.05, (wins, losses, np.mean(runs))


def test_an_8_point_gain_is_promoted_on_a_few_dozen_disagreement_labels():
    # 80% -> 88% with the models disagreeing on 16% of items: E[o | D] = 0.5 (win 0.75, lose 0.25).
    rng = np.random.default_rng(1)
    at = {n: np.mean([promoted_by(outcomes(rng, n, 0.75, 0.25)) for _ in range(600)]) for n in (20, 40)}
    assert at[20] >= 0.4 and at[40] >= 0.75, at


def test_futility_stops_a_challenger_that_cannot_gain_enough():
    common = dict(frame=300, disagreements=3, remaining=3, champion_version="v1", challenger_version="run",
                  min_gain=0.02, budget=40)
    # They disagree on 1% of the frame: no label can show a 2-point gain, so none is spent.
    evidence = decide(np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, bool), p_disagree=0.01, **common)
    assert evidence.verdict == "futility" and "nothing to win" in evidence.reason
    # A challenger that loses most disagreements is stopped long before the budget.
    rng = np.random.default_rng(2)
    o = outcomes(rng, 25, 0.2, 0.7)
    champ, chall = o < 0, o > 0
    evidence = decide(champ, chall, np.ones(25, bool), p_disagree=0.2, **{**common, "remaining": 50})
    assert evidence.verdict == "futility" and evidence.futility_wealth >= 20


def test_budget_and_an_exhausted_frame_end_in_a_refusal():
    champ = np.array([True, False] * 20)
    chall = ~champ  # 20 wins, 20 losses: no evidence either way
    common = dict(p_disagree=0.3, frame=200, disagreements=60, champion_version="v1", challenger_version="run",
                  min_gain=0.0)
    assert decide(champ, chall, np.ones(40, bool), remaining=20, budget=40, **common).verdict == "refuse"
    assert decide(champ[:10], chall[:10], np.ones(10, bool), remaining=50, budget=40, **common).verdict == "hold"
    assert decide(champ[:10], chall[:10], np.ones(10, bool), remaining=0, budget=40, **common).verdict == "refuse"


def test_an_exhausted_frame_with_budget_left_carries_its_evidence_to_a_fresh_frame():
    champ = np.array([True, False] * 20)
    chall = ~champ
    common = dict(p_disagree=0.3, frame=200, disagreements=60, champion_version="v1", challenger_version="run",
                  min_gain=0.0, carry=True)
    carried = decide(champ[:10], chall[:10], np.ones(10, bool), remaining=0, budget=40, **common)
    assert carried.verdict == "carry" and "30 labels of the budget left" in carried.reason
    assert decide(champ, chall, np.ones(40, bool), remaining=0, budget=40, **common).verdict == "refuse"
    assert decide(champ[:10], chall[:10], np.ones(10, bool), remaining=5, budget=40, **common).verdict == "hold"
    # a rollback watch never carries: it keeps the promotion when its frame runs out
    assert decide(champ[:10], chall[:10], np.ones(10, bool), remaining=0, budget=40, direction="rollback",
                  **common).verdict == "keep"


def test_rollback_direction_rolls_back_a_worse_promotion_and_keeps_a_good_one():
    common = dict(p_disagree=0.2, frame=200, disagreements=40, remaining=30, champion_version="v4",
                  challenger_version="v6", min_gain=0.01, budget=40, direction="rollback")
    worse = decide(np.ones(12, bool), np.zeros(12, bool), np.ones(12, bool), **common)  # old champion wins all
    assert worse.verdict == "rollback" and "v4 is better than v6" in worse.reason
    better = decide(np.zeros(30, bool), np.ones(30, bool), np.ones(30, bool), **common)
    assert better.verdict == "keep"


def test_stratified_accuracy_is_unbiased_while_disagreements_are_over_sampled():
    rng = np.random.default_rng(3)
    n, share = 2000, 0.15
    disagree = rng.random(n) < share
    right = np.where(disagree, rng.random(n) < 0.3, rng.random(n) < 0.9)  # wrong far more often on D
    truth = right.mean()
    estimates = []
    for _ in range(300):
        d = rng.choice(np.flatnonzero(disagree), 30, replace=False)  # the gate labels D first
        a = rng.choice(np.flatnonzero(~disagree), 30, replace=False)
        estimates.append(stratified_accuracy(right[d], right[a], disagree.mean()).value)
        naive = right[np.concatenate([d, a])].mean()
    assert abs(np.mean(estimates) - truth) < 0.01 and abs(naive - truth) > 0.15
    empty = stratified_accuracy(right[:5], right[:0], 0.5)
    assert math.isnan(empty.value) and (empty.low, empty.high) == (0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([-1, 0, 1]), max_size=60), st.floats(0.01, 1.0))
def test_difference_interval_holds_the_estimate_and_stays_in_what_d_allows(o, p):
    est = difference(np.array(o), p)
    assert -p - 1e-12 <= est.low <= est.value <= est.high <= p + 1e-12
    assert est.n == len(o)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), max_size=50), st.floats(0.0, 1.0),
       st.integers(0, 50))
def test_verdicts_are_consistent(rows, p, remaining):
    a = np.array([r[0] for r in rows], dtype=bool)
    b = np.array([r[1] for r in rows], dtype=bool)
    d = np.array([r[2] for r in rows], dtype=bool) | (a != b)  # models that differ in correctness disagree
    evidence = decide(a, b, d, p_disagree=p, frame=100, disagreements=50, remaining=remaining,
                      champion_version="v1", challenger_version="run", budget=30)
    wins, losses = int((b & ~a)[d].sum()), int((a & ~b)[d].sum())
    assert (evidence.wins, evidence.losses, evidence.labels) == (wins, losses, int(d.sum()))
    if evidence.verdict == "promote":
        assert wins > losses and evidence.wealth >= 20
    if evidence.verdict == "hold":
        assert evidence.labels < 30 and remaining > 0 and evidence.wealth < 20
    with pytest.raises(ValueError):
        decide(a, b, d[:-1] if len(d) else np.ones(1, bool), p_disagree=p, frame=1, disagreements=1, remaining=0,
               champion_version="v1", challenger_version="run")


def test_the_queue_serves_the_gates_disagreements_first_in_their_random_order():
    n = 40
    scores = np.linspace(0.05, 0.95, n)
    labeled = np.zeros(n, bool)
    labeled[0] = True
    audit = np.zeros(n, bool)
    audit[[0, 5, 10, 20, 30]] = True
    rank = np.linspace(1, 0, n)  # later tasks come first among audit tasks
    first = np.zeros(n, bool)
    first[[0, 10, 30]] = True  # task 0 is labeled already: it stays where it is
    out = place_audit(scores, labeled, audit, rank, 0.1, first=first)
    queue = [i for i in np.argsort(out, kind="stable") if not labeled[i]]
    assert queue[:2] == [30, 10]
    assert out[0] == scores[0]
    assert out[30] < out[10] < min(out[i] for i in range(n) if not labeled[i] and i not in (10, 30))
    # Without a gate the audit tasks stay spread through the queue.
    plain = place_audit(scores, labeled, audit, rank, 0.1)
    assert [i for i in np.argsort(plain, kind="stable") if not labeled[i]][:2] != [30, 10]


def test_the_front_never_gets_a_negative_score_label_studio_would_drop():
    """Label Studio 1.23 stores a negative prediction score as none and sorts that task last."""
    scores = np.array([0.0, 0.0, 0.3, 0.5])
    labeled = np.array([True, False, False, False])
    first = np.array([False, False, False, True])
    out = place_audit(scores, labeled, np.array([False, True, False, True]), np.array([0.1, 0.2, 0.3, 0.4]), 0.5,
                      first=first)
    assert (out >= 0).all() and out[3] < out[[0, 1, 2]].min()
    assert np.argsort(out[1:3]).tolist() == [0, 1]  # the others keep their order
