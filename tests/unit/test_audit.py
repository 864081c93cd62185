"""The audit split and its place in the queue, as pure functions (the gate: test_gate.py)."""

import numpy as np

from labelloop.audit import AuditFrame, in_audit, wilson_interval
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


def test_wilson_interval_matches_textbook_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 0) == (0.0, 1.0)


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


def test_a_new_round_draws_a_fresh_frame_over_the_tasks_not_labelled_yet():
    first = AuditFrame(7, 0.1)
    assert [t in first for t in range(1, 5000)] == [in_audit(7, t, 0.1) for t in range(1, 5000)]
    labelled = {str(t) for t in range(1, 2001)}  # everything labelled so far trains from round 1 on
    second = AuditFrame(7, 0.1, 1, frozenset(labelled))
    assert not any(t in second for t in range(1, 2001))
    fresh = [t in second for t in range(2001, 22_001)]
    assert 0.09 < np.mean(fresh) < 0.11
    # an independent draw: the new frame is not the old one, and overlaps it by chance only (0.1 x 0.1)
    both = [t in first and t in second for t in range(2001, 22_001)]
    assert fresh != [t in first for t in range(2001, 22_001)] and 0.005 < np.mean(both) < 0.015
    # and a new random order, so no earlier round's order decides which of its tasks come first
    ranks = [(first.rank(t), second.rank(t)) for t in range(2001, 3001)]
    assert abs(np.corrcoef(np.array(ranks).T)[0, 1]) < 0.1
    assert ("2500" in second) == (2500 in second)  # a task id and the same pool id are one key
    assert ("abc" in second) == ("abc" in AuditFrame(7, 0.1, 1, frozenset()))
    assert None not in second and 5 not in AuditFrame(7, 0.0)


def test_earlier_frames_stay_test_sets_of_what_they_labelled_for_the_versions_before_them(tmp_path):
    from labelloop.audit import PastFrame, stored_frames
    from labelloop.serving.store import Store

    store = Store(tmp_path)
    assert stored_frames(tmp_path, 7, 0.2) == [AuditFrame(7, 0.2)]
    store.new_audit_round(7, {str(t) for t in range(1, 101)}, "first challenger settled")
    store.new_audit_round(7, {str(t) for t in range(1, 201)}, "second challenger settled")
    current, second, first = stored_frames(tmp_path, 7, 0.2)
    assert current == store.audit_frame(7, 0.2) and current.round == 2 and not isinstance(current, PastFrame)
    assert isinstance(first, PastFrame) and isinstance(second, PastFrame)
    rounds = store.audit_rounds(7)
    assert (first.ended_at, second.ended_at) == (rounds[0].started_at, rounds[1].started_at)
    # frame 0's test set: its members among the tasks labelled while it was current (1-100), nothing labelled later
    assert [t for t in range(1, 400) if t in first] == [t for t in range(1, 101) if in_audit(7, t, 0.2)]
    # frame 1's: its own draw over the tasks unlabelled when it began, labelled while it was current (101-200)
    one = AuditFrame(7, 0.2, 1, frozenset(str(t) for t in range(1, 101)))
    assert [t for t in range(1, 400) if t in second] == [t for t in range(101, 201) if t in one]
    assert not any(t in current for t in range(1, 201))
