"""Contract every confidence strategy passes, with property tests."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labelloop.al.uncertainty import STRATEGIES, confidence, entropy, least_confidence, margin

DETERMINISTIC = [name for name in STRATEGIES if name != "random"]


def prob_rows(min_classes=2, max_classes=6):
    return st.integers(min_classes, max_classes).flatmap(
        lambda k: arrays(np.float64, st.tuples(st.integers(1, 20), st.just(k)), elements=st.floats(0.001, 1.0))
    ).map(lambda a: a / a.sum(axis=1, keepdims=True))


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(max_examples=50, deadline=None)
@given(probs=prob_rows())
def test_scores_are_one_per_task_in_unit_interval(name, probs):
    scores = confidence(probs, name)
    assert scores.shape == (probs.shape[0],)
    assert np.all((scores >= 0) & (scores <= 1))


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("k", [2, 3, 7])
def test_one_hot_is_certain_and_uniform_is_not(name, k):
    one_hot = np.eye(k)[:1]
    uniform = np.full((1, k), 1.0 / k)
    assert confidence(one_hot, name)[0] == pytest.approx(1.0)
    assert confidence(uniform, name)[0] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("name", DETERMINISTIC)
@settings(max_examples=50, deadline=None)
@given(p=st.floats(0.5, 1.0), q=st.floats(0.5, 1.0))
def test_sharper_binary_rows_score_higher(name, p, q):
    probs = np.array([[p, 1 - p], [q, 1 - q]])
    a, b = confidence(probs, name)
    if p > q + 1e-9:
        assert a >= b
    elif q > p + 1e-9:
        assert b >= a


@pytest.mark.parametrize("name", DETERMINISTIC)
@settings(max_examples=30, deadline=None)
@given(probs=prob_rows())
def test_invariant_to_class_order(name, probs):
    permuted = probs[:, ::-1]
    np.testing.assert_allclose(confidence(probs, name), confidence(permuted, name), atol=1e-12)


def test_margin_separates_close_calls_that_least_confidence_ties():
    probs = np.array([[0.5, 0.49, 0.01], [0.5, 0.25, 0.25]])
    assert least_confidence(probs)[0] == pytest.approx(least_confidence(probs)[1])
    assert margin(probs)[0] < margin(probs)[1]


def test_entropy_prefers_spread_rows():
    probs = np.array([[0.6, 0.2, 0.2], [0.6, 0.4, 0.0]])
    assert entropy(probs)[0] < entropy(probs)[1]


def test_multi_label_scores_each_label_as_yes_no():
    probs = np.array([[0.99, 0.01, 0.99], [0.5, 0.5, 0.99]])
    scores = confidence(probs, "margin", multi_label=True)
    assert scores[0] > scores[1]
    assert scores[0] == pytest.approx(0.98)


def test_random_is_reproducible_with_a_seed():
    from labelloop.al.uncertainty import random_confidence

    probs = np.full((5, 2), 0.5)
    np.testing.assert_array_equal(random_confidence(probs, seed=3), random_confidence(probs, seed=3))


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match="2-D"):
        confidence(np.array([0.5, 0.5]))


def test_expected_calibration_error():
    from labelloop.al.uncertainty import expected_calibration_error

    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(np.eye(2)[y], y) == 0.0  # sure and right
    assert expected_calibration_error(np.eye(2)[1 - y], y) == 1.0  # sure and wrong
    half = np.full((4, 2), 0.5)
    assert expected_calibration_error(half, np.array([0, 1, 0, 1])) == pytest.approx(0.0)  # 50% sure, right half the time
    assert expected_calibration_error(np.array([[0.9, 0.1]] * 10), np.array([0] * 6 + [1] * 4)) == pytest.approx(0.3)
