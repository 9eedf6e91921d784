"""DORM's prior weights (thesis eq. 3.4-3.6) against worked values, and MC dropout on a tiny model."""

from __future__ import annotations

import pytest
import torch

from conftest import build_tiny
from prefalign.reward import PreferenceExample, RewardModel, RewardModelConfig
from prefalign.reward.prior import mc_dropout_statistics, mc_statistics, prior_weights, standardise


def test_uncertainty_and_disagreement_of_one_example_by_hand():
    # attribute 1: passes 1, 2, 3, label 4 -> mean 2, u = (1 + 0 + 1) / 3 = 2/3, q = |4 - 2| / (3 - 1) = 1
    # attribute 2: passes 0.5, 2.5, 0, label 1 -> mean 1, u = (0.25 + 2.25 + 1) / 3 = 7/6, q = 0 / 2.5 = 0
    samples = torch.tensor([[1.0, 0.5], [2.0, 2.5], [3.0, 0.0]])
    u, q = mc_statistics(samples, torch.tensor([4.0, 1.0]), torch.tensor([1.0, 1.0]))
    assert u == pytest.approx((2 / 3 + 7 / 6) / 2) and q == pytest.approx(0.5, abs=1e-6)
    u, q = mc_statistics(samples, torch.tensor([4.0, 1.0]), torch.tensor([1.0, 0.0]))  # attribute 2 unrated
    assert u == pytest.approx(2 / 3) and q == pytest.approx(1.0, abs=1e-6)


def test_standardise_and_clip():
    # [1, 2, 3]: mean 2, population std sqrt(2/3) -> +-1.2247; clipped to +-1
    assert standardise(torch.tensor([1.0, 2.0, 3.0]), 3.0).tolist() == pytest.approx([-1.224745, 0.0, 1.224745])
    assert standardise(torch.tensor([1.0, 2.0, 3.0]), 1.0).tolist() == [-1.0, 0.0, 1.0]
    assert standardise(torch.tensor([5.0, 5.0]), 3.0).tolist() == [0.0, 0.0]


def test_prior_weights_worked_values():
    # u = [1, 2, 3], q constant: w0 = exp(z(u)) = [0.29384, 1, 3.40328], mean 1.56571 -> divided by it
    w0 = prior_weights(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3), gamma=1.0, clip=3.0)
    assert w0.tolist() == pytest.approx([0.187671, 0.638692, 2.173637], abs=1e-5)
    # u constant, q = [0, 0, 0, 10]: z(q) = [-0.57735] * 3 + [1.7320 -> clipped 1]; gamma 2:
    # exp(1.1547) = 3.17311 three times, exp(-2) = 0.135335; mean 2.41366
    w0 = prior_weights(torch.full((4,), 5.0), torch.tensor([0.0, 0.0, 0.0, 10.0]), gamma=2.0, clip=1.0)
    assert w0.tolist() == pytest.approx([1.314647, 1.314647, 1.314647, 0.056071], abs=1e-5)
    assert float(w0.mean()) == pytest.approx(1.0)


def _pairs(n=6):
    return [PreferenceExample(0, i + 1, f"the movie was good {'very ' * i}", "the movie was bad") for i in range(n)]


def test_mc_dropout_samples_only_through_dropout(vocab_file):
    on = RewardModel(build_tiny("bert", vocab_file), RewardModelConfig(max_length=16, head_dropout=0.3)).eval()
    u1, q1 = mc_dropout_statistics(on, _pairs(), passes=5, batch_size=4, seed=0)
    u2, q2 = mc_dropout_statistics(on, _pairs(), passes=5, batch_size=4, seed=0)
    assert torch.equal(u1, u2) and torch.equal(q1, q2)  # seeded
    assert (u1 > 0).all() and not on.training  # left as it was found (eval)
    off = RewardModel(
        build_tiny("bert", vocab_file, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
        RewardModelConfig(max_length=16, head_dropout=0.0),
    )
    u0, _ = mc_dropout_statistics(off, _pairs(), passes=3, batch_size=4, seed=0)
    assert torch.allclose(u0, torch.zeros_like(u0))


def test_mc_dropout_on_ratings_reads_the_rated_attributes(vocab_file):
    model = RewardModel(build_tiny("bert", vocab_file), RewardModelConfig(max_length=16, attributes=["a", "b"]))
    rated = [PreferenceExample(1, 1, "the plot was dull", ratings=[1.0, 0.0], mask=[1.0, 0.0])]
    u, q = mc_dropout_statistics(model, _pairs(2) + rated, passes=4, batch_size=8, seed=1)
    assert u.shape == q.shape == (3,) and torch.isfinite(q).all() and (q[2] > 0)


def test_q_without_the_range_is_the_distance_to_the_label():
    # q_form 'absolute': attribute 1 |4 - 2| = 2, attribute 2 |1 - 1| = 0 -> mean 1; u is unchanged
    samples = torch.tensor([[1.0, 0.5], [2.0, 2.5], [3.0, 0.0]])
    u, q = mc_statistics(samples, torch.tensor([4.0, 1.0]), torch.tensor([1.0, 1.0]), q_form="absolute")
    assert u == pytest.approx((2 / 3 + 7 / 6) / 2) and q == pytest.approx(1.0)
    # a pair: passes p = 0.4, 0.6, 0.8, label 1 -> 1 - 0.6 = 0.4 (eq. 3.5 as written: 0.4 / 0.4 = 1)
    pair = torch.tensor([[0.4], [0.6], [0.8]])
    assert mc_statistics(pair, torch.ones(1), torch.ones(1), q_form="absolute")[1] == pytest.approx(0.4)
    assert mc_statistics(pair, torch.ones(1), torch.ones(1))[1] == pytest.approx(1.0, abs=1e-5)


def test_the_coefficient_of_u():
    # c = -1 mirrors the first worked value: exp(-z(u)) = [3.40328, 1, 0.29384] / 1.56571
    u = torch.tensor([1.0, 2.0, 3.0])
    w0 = prior_weights(u, torch.zeros(3), gamma=1.0, clip=3.0, u_coefficient=-1.0)
    assert w0.tolist() == pytest.approx([2.173637, 0.638692, 0.187671], abs=1e-5)
    assert prior_weights(u, torch.zeros(3), gamma=1.0, clip=3.0, u_coefficient=0.0).tolist() == [1.0, 1.0, 1.0]


def test_raw_scaling_is_eq_3_6_as_written():
    # u = 0, q = [0, 1, 2], gamma 1: exp([0, -1, -2]) = [1, 0.367879, 0.135335], mean 0.501071 -> divided by it
    w0 = prior_weights(torch.zeros(3), torch.tensor([0.0, 1.0, 2.0]), gamma=1.0, clip=3.0, scaling="raw")
    assert w0.tolist() == pytest.approx([1.995723, 0.734185, 0.270092], abs=1e-6)
    # a q far beyond exp's range: the exponent's maximum is taken out first, so no weight is nan
    w0 = prior_weights(torch.zeros(2), torch.tensor([0.0, 1000.0]), gamma=1.0, clip=3.0, scaling="raw")
    assert w0.tolist() == [2.0, 0.0]
