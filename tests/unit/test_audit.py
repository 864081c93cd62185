"""The audit split and the promotion gate, as pure functions."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelloop.audit import in_audit, judge, mcnemar_exact, wilson_interval
from labelloop.serving.queue import place_audit


def test_audit_membership_is_a_fixed_share_decided_per_task():
    members = [in_audit(7, task, 0.1) for task in range(1, 20_001)]
    assert 0.09 < np.mean(members) < 0.11
    assert members == [in_audit(7, task, 0.1) for task in range(1, 20_001)]  # the same after a restart
    assert members != [in_audit(8, task, 0.1) for task in range(1, 20_001)]  # each project draws its own
    assert not any(in_audit(7, task, 0.0) for task in range(1, 1000))
    assert not in_audit(7, None, 0.5)
    # A larger share keeps every task that was audit under the smaller one.
    assert all(in_audit(7, t, 0.2) for t in range(1, 5000) if in_audit(7, t, 0.1))


def test_wilson_interval_and_exact_mcnemar_match_textbook_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert mcnemar_exact(0, 5) == pytest.approx(1 / 32)
    assert mcnemar_exact(5, 0) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(2, 10) == pytest.approx(sum(__import__("math").comb(12, k) for k in range(10, 13)) / 2**12)


def right(n, correct):
    out = np.zeros(n, dtype=bool)
    out[list(correct)] = True
    return out


def test_gate_promotes_a_better_challenger_and_refuses_a_worse_one():
    n = 60
    champion = right(n, range(30))  # 0.50
    better = right(n, range(0, 45))  # 0.75: 15 items only it gets right, none only the champion
    evidence = judge("labelloop-v3", "run-a", champion, better, min_audit=30)
    assert evidence.verdict == "promote" and evidence.challenger_only == 15 and evidence.champion_only == 0
    assert evidence.p_value < 0.001 and evidence.challenger.n == n
    assert evidence.challenger.low < 0.75 < evidence.challenger.high

    worse = right(n, range(10, 35))
    evidence = judge("labelloop-v3", "run-b", champion, worse, min_audit=30)
    assert evidence.verdict == "refuse" and "is worse" in evidence.reason


def test_a_tie_is_held_not_refused():
    champion = right(40, range(20))
    tied = right(40, range(5, 25))  # 20 right each, 5 discordant either way
    evidence = judge("labelloop-v1", "run", champion, tied, min_audit=30)
    assert evidence.verdict == "hold" and "a tie" in evidence.reason


def test_a_tiny_audit_split_blocks_both_verdicts():
    champion, better, worse = right(10, range(2)), right(10, range(10)), right(10, [])
    for challenger in (better, worse):
        evidence = judge("labelloop-v1", "run", champion, challenger, min_audit=30)
        assert evidence.verdict == "hold" and "needs 30" in evidence.reason


def test_ahead_but_within_the_noise_is_held_not_promoted():
    champion = right(40, range(20))
    ahead = right(40, list(range(2, 20)) + [20, 21, 22, 23])  # 22 against 20: 4 against 2 discordant
    evidence = judge("labelloop-v1", "run", champion, ahead, min_audit=30)
    assert evidence.verdict == "hold" and evidence.p_value > 0.05


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=80), st.integers(1, 50))
def test_gate_verdicts_are_consistent(pairs, min_audit):
    a = np.array([p[0] for p in pairs], dtype=bool)
    b = np.array([p[1] for p in pairs], dtype=bool)
    evidence = judge("champ", "chall", a, b, min_audit=min_audit)
    assert 0.0 <= evidence.p_value <= 1.0
    if evidence.verdict == "promote":
        assert len(pairs) >= min_audit and b.sum() > a.sum() and evidence.p_value < evidence.alpha
    if evidence.verdict == "refuse":
        assert b.sum() < a.sum()
    if len(pairs) < min_audit:
        assert evidence.verdict == "hold"


def test_audit_tasks_are_spread_through_the_queue_in_a_fixed_random_order():
    rng = np.random.default_rng(0)
    n = 1000
    scores = rng.random(n)
    labeled = np.zeros(n, dtype=bool)
    labeled[:100] = True
    audit = np.array([in_audit(3, i, 0.1) for i in range(n)])
    rank = rng.random(n)
    out = place_audit(scores, labeled, audit, rank, 0.1)
    np.testing.assert_array_equal(out[labeled], scores[labeled])
    others = ~labeled & ~audit
    np.testing.assert_array_equal(out[others], scores[others])
    queue = np.flatnonzero(~labeled)[np.argsort(out[~labeled], kind="stable")]
    for k in (50, 200, 500):
        share = audit[queue[:k]].mean()
        assert 0.05 < share < 0.15, (k, share)
    mine = queue[audit[queue]]
    assert list(mine) == sorted(mine, key=lambda i: rank[i])  # the audit tasks' own order is the random one
    np.testing.assert_array_equal(place_audit(scores, labeled, audit, rank, 0.0), scores)
