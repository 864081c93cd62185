"""Contract for batch selection, queue scores, BALD and span aggregation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labelloop.al.selection import argselect, cluster_then_pick, kcenter_greedy, kmeans, queue_scores
from labelloop.al.uncertainty import aggregate_words, bald


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def blobs(n_per=20, k=3, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = unit(rng.normal(size=(k, dim)))
    x = np.concatenate([unit(c + 0.05 * rng.normal(size=(n_per, dim))) for c in centers])
    return x, np.repeat(np.arange(k), n_per)


SELECTORS = {
    "argselect": lambda s, x, n: argselect(s, n),
    "kcenter": lambda s, x, n: kcenter_greedy(x, n),
    "cluster": lambda s, x, n: cluster_then_pick(s, x, n),
}


@pytest.mark.parametrize("name", list(SELECTORS))
@settings(max_examples=40, deadline=None)
@given(n_tasks=st.integers(1, 40), n=st.integers(0, 50), seed=st.integers(0, 10))
def test_selectors_return_unique_valid_indices(name, n_tasks, n, seed):
    rng = np.random.default_rng(seed)
    scores, x = rng.random(n_tasks), unit(rng.normal(size=(n_tasks, 6)))
    picked = SELECTORS[name](scores, x, n)
    assert len(picked) == min(n, n_tasks)
    assert len(set(picked.tolist())) == len(picked)
    assert all(0 <= i < n_tasks for i in picked)
    np.testing.assert_array_equal(picked, SELECTORS[name](scores, x, n))


def test_argselect_takes_lowest_first_and_breaks_ties_without_position_bias():
    assert argselect(np.array([0.9, 0.1, 0.5, 0.3]), 2).tolist() == [1, 3]
    firsts = {int(argselect(np.zeros(10), 1, seed=s)[0]) for s in range(30)}
    assert len(firsts) > 3


def test_kcenter_covers_every_cluster_first():
    x, cluster = blobs()
    assert set(cluster[kcenter_greedy(x, 3)]) == {0, 1, 2}


def test_kcenter_skips_what_is_already_labeled():
    x, cluster = blobs()
    picked = kcenter_greedy(x, 2, labeled=np.flatnonzero(cluster == 0))
    assert set(cluster[picked]) == {1, 2}


def test_cluster_then_pick_avoids_near_duplicate_batches():
    x, cluster = blobs()
    scores = np.where(cluster == 0, 0.1, 0.4) + np.random.default_rng(1).random(len(x)) * 0.01
    plain = argselect(scores, 3)
    diverse = cluster_then_pick(scores, x, 3, candidates=20)
    assert set(cluster[plain]) == {0}
    assert set(cluster[diverse]) == {0, 1, 2}
    assert list(scores[diverse]) == sorted(scores[diverse])


def test_kmeans_recovers_separated_blobs():
    x, cluster = blobs()
    assign = kmeans(x, 3)
    for c in range(3):
        assert len(set(assign[cluster == c])) == 1


@settings(max_examples=60, deadline=None)
@given(scores=arrays(np.float64, st.integers(2, 30), elements=st.floats(0.0, 1.0)), data=st.data())
def test_queue_scores_put_the_batch_first_and_keep_the_rest(scores, data):
    batch = np.array(sorted(data.draw(st.sets(st.integers(0, len(scores) - 1), min_size=1, max_size=len(scores) - 1))))
    out = queue_scores(scores, batch)
    rest = np.setdiff1d(np.arange(len(scores)), batch)
    np.testing.assert_array_equal(out[rest], scores[rest])
    assert out[batch].max() <= out[rest].min()
    assert np.all(out >= 0)
    # Within the batch, the order by confidence is kept.
    assert np.all(np.diff(out[batch][np.argsort(scores[batch], kind="stable")]) >= -1e-12)


def test_bald_is_low_where_samples_disagree():
    agree = np.array([[[0.7, 0.3]], [[0.7, 0.3]], [[0.7, 0.3]]])
    disagree = np.array([[[0.95, 0.05]], [[0.05, 0.95]], [[0.95, 0.05]]])
    mc = np.concatenate([agree, disagree], axis=1)
    conf = bald(mc)
    assert conf[0] == pytest.approx(1.0)
    assert conf[1] < 0.6
    assert np.all((conf >= 0) & (conf <= 1))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(1, 30), elements=st.floats(0.0, 1.0)))
def test_span_task_score_does_not_favour_long_texts(word_conf):
    once, twice = aggregate_words([word_conf, np.concatenate([word_conf, word_conf])])
    assert once == pytest.approx(twice)
    assert 0.0 <= once <= 1.0


def test_mc_dropout_on_a_tiny_transformer_gives_varied_samples():
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertForSequenceClassification

    from labelloop.al.mc_dropout import mc_dropout_probs

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=3, hidden_dropout_prob=0.3)
    model = BertForSequenceClassification(config).eval()
    batch = {"input_ids": torch.randint(0, 50, (4, 7))}
    mc = mc_dropout_probs(model, batch, samples=8)
    assert mc.shape == (8, 4, 3)
    np.testing.assert_allclose(mc.sum(axis=2), 1.0, rtol=1e-5)
    assert mc.std(axis=0).max() > 0
    assert not model.training
    assert np.all(bald(mc) < 1.0)


def test_sampled_selection_favours_low_scores_gives_everyone_a_chance_and_its_propensities_are_true():
    from labelloop.al.selection import sample_select

    scores = np.linspace(0.0, 1.0, 50)
    firsts = np.zeros(50)
    claimed = np.zeros(50)
    for seed in range(4000):
        picked, propensity = sample_select(scores, 5, seed=seed)
        assert len(set(picked.tolist())) == 5 and np.all((propensity > 0) & (propensity <= 1))
        firsts[picked[0]] += 1
        claimed[picked[0]] = propensity[0]
    np.testing.assert_allclose(firsts / 4000, claimed, atol=0.012)  # the first draw's stated probability holds
    assert claimed[0] > 10 * claimed[-1] and claimed[-1] >= 0.1 / 50 - 1e-12  # the floor
    # Importance weights make a sampled label set an unbiased estimate of the pool's accuracy.
    rng = np.random.default_rng(0)
    right = rng.random(50) < np.linspace(0.2, 0.95, 50)  # the model is wrong more where it is unsure
    estimates = []
    for seed in range(3000):
        picked, propensity = sample_select(scores, 1, seed=seed)
        estimates.append(right[picked[0]] / (50 * propensity[0]))
    assert abs(np.mean(estimates) - right.mean()) < 0.03
    with pytest.raises(ValueError):
        sample_select(scores, 3, floor=0.0)
