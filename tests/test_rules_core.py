"""PRBoost's arithmetic (prefalign.rules.core) against values worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefalign.rules import core
from prefalign.rules.core import ABSTAIN


def test_samme_weights_two_rounds_by_hand():
    y = np.array([0, 1, 2, 0])
    w = np.full(4, 0.25)
    # Round 1: two of four wrong -> err 1/2, alpha = log(1) + log(K - 1) = log 2; wrong weights double.
    w, alpha, err = core.boosting_step(w, y, np.array([0, 1, 1, 1]), num_classes=3)
    assert err == pytest.approx(0.5)
    assert alpha == pytest.approx(math.log(2))
    np.testing.assert_allclose(w, [1 / 6, 1 / 6, 1 / 3, 1 / 3])
    # Round 2: only item 0 wrong -> err = 1/6, alpha = log 5 + log 2 = log 10; w0 grows tenfold.
    w, alpha, err = core.boosting_step(w, y, np.array([1, 1, 2, 0]), num_classes=3)
    assert err == pytest.approx(1 / 6)
    assert alpha == pytest.approx(math.log(10))
    np.testing.assert_allclose(w, [10 / 15, 1 / 15, 2 / 15, 2 / 15])


def test_model_weight_clips_perfect_and_useless_models():
    assert math.isfinite(core.model_weight(0.0, 4))
    assert core.model_weight(0.0, 4) > core.model_weight(0.1, 4)
    # Random guessing among K classes (err = (K-1)/K) gets alpha = 0.
    assert core.model_weight(0.75, 4) == pytest.approx(0.0, abs=1e-12)


def test_top_hard_breaks_ties_to_the_lower_index_and_skips_used():
    w = np.array([0.1, 0.3, 0.1, 0.3, 0.2])
    assert core.top_hard(w, 3) == [1, 3, 4]
    assert core.top_hard(w, 3, exclude=[1]) == [3, 4, 0]
    assert core.top_hard(w, 10, exclude=[0, 1, 2, 3, 4]) == []


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories.
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    k = core.fleiss_kappa(np.array(table))
    assert k["P_bar"] == pytest.approx(0.378, abs=5e-4)
    assert k["P_e"] == pytest.approx(0.213, abs=5e-4)
    assert k["kappa"] == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_perfect_agreement_and_bad_tables():
    assert core.fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]]))["kappa"] == pytest.approx(1.0)
    assert math.isnan(core.fleiss_kappa(np.array([[3, 0], [3, 0]]))["kappa"])  # one category only: undefined
    with pytest.raises(ValueError):
        core.fleiss_kappa(np.array([[2, 1], [1, 1]]))  # rows with different numbers of raters


def test_keyword_and_regex_rules_match_hand_made_cases():
    kw = core.compile_rule("keyword", "football")
    assert kw.search("Football season opens")
    assert not kw.search("a footballer scored")  # whole words only
    phrase = core.compile_rule("keyword", "wall street")
    assert phrase.search("Stocks on Wall Street fell.")
    rx = core.compile_rule("regex", r"\b(shares?|stocks?)\b")
    texts = ["Shares rose", "the stock fell", "a sunny day"]
    fires = core.match_matrix(texts, [kw, rx])
    np.testing.assert_array_equal(fires, [[False, True], [False, True], [False, False]])
    np.testing.assert_array_equal(core.vote_matrix(fires, [1, 2]), [[ABSTAIN, 2], [ABSTAIN, 2], [ABSTAIN, ABSTAIN]])


def test_majority_vote_ties_and_abstains():
    votes = np.array([[0, 1, 1], [0, 1, ABSTAIN], [ABSTAIN, ABSTAIN, ABSTAIN]])
    np.testing.assert_array_equal(core.majority_vote(votes, 3), [1, 0, ABSTAIN])  # a tie: the lower label
    scores = np.array([[1, 1, 1], [1.0, 2.0, 0.0], [1, 1, 1]])
    np.testing.assert_array_equal(core.majority_vote(votes, 3, scores), [1, 1, ABSTAIN])  # a tie: more score


def test_soft_matching_scores_by_hand():
    sim_a = core.cosine_matrix(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]]))
    assert sim_a[0, 0] == pytest.approx(1 / math.sqrt(2))
    sim_b = core.overlap_matrix([["a", "b", "c", "d"]], [["a", "x"]], k=4)
    assert sim_b[0, 0] == pytest.approx(0.25)
    s = core.matching_scores(sim_a, sim_b, alpha=0.25)
    assert s[0, 0] == pytest.approx(0.25 / math.sqrt(2) + 0.75 * 0.25)
    labels, top = core.soft_match(np.array([[0.5, 0.7], [0.2, 0.1]]), [0, 1], threshold=0.3)
    np.testing.assert_array_equal(labels, [1, ABSTAIN])  # the highest-scoring rule; nothing above sigma: abstain
    np.testing.assert_allclose(top, [0.7, 0.2])


def test_threshold_tuned_on_dev_prefers_the_most_accurate_labelling():
    scores = np.array([[0.9], [0.6], [0.4]])  # one rule, label 1
    y_dev = np.array([1, 0, 0])
    fallback = np.array([0, 0, 0])
    # sigma 0.5: items 0,1 labelled 1 -> 2/3 right; sigma 0.8: only item 0 -> 3/3; sigma 0.95: fallback -> 2/3.
    sigma, acc = core.tune_threshold(scores, [1], y_dev, fallback, [0.5, 0.8, 0.95])
    assert (sigma, acc) == (0.8, 1.0)


def test_self_training_targets_by_hand():
    q = np.array([[0.8, 0.2], [0.4, 0.6]])
    # f = (1.2, 0.8); row 1: (0.64/1.2, 0.04/0.8) = (8/15, 1/20) -> (32/35, 3/35); row 2 -> (8/35, 27/35).
    np.testing.assert_allclose(core.self_training_targets(q), [[32 / 35, 3 / 35], [8 / 35, 27 / 35]])


def test_ensemble_equal_and_alpha_weighted():
    p1, p2 = np.array([[0.9, 0.1]]), np.array([[0.2, 0.8]])
    np.testing.assert_allclose(core.ensemble([p1, p2]), [[0.55, 0.45]])
    np.testing.assert_allclose(core.ensemble([p1, p2], [1.0, 3.0]), [[0.375, 0.625]])


def test_coverage_and_accuracy():
    cov, acc = core.coverage_accuracy(np.array([0, ABSTAIN, 1, 1]), np.array([0, 1, 0, 1]))
    assert (cov, acc) == (0.75, pytest.approx(2 / 3))
    assert core.coverage_accuracy(np.array([ABSTAIN]), None) == (0.0, None)
