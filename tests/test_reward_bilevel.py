"""DORM's first-order bilevel optimisation (thesis Algorithm 1, eq. 3.7-3.10): the w-gradient against
autograd, the projection onto w >= 0, the baselines' weights, a fully corrupted source losing weight, and
resuming after a kill ending where the uninterrupted run ends."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import build_tiny
from helpers_reward import reward_config
from prefalign.reward import PreferenceExample, RewardConfig, RewardModel, RewardModelConfig, train_reward
from prefalign.reward.bilevel import w_gradient
from prefalign.reward.losses import example_losses, weighted_loss


def test_the_w_gradient_of_eq_3_10_matches_autograd(vocab_file):
    torch.manual_seed(0)
    model = RewardModel(build_tiny("bert", vocab_file), RewardModelConfig(max_length=16)).eval()
    u = {n: p.detach() + 0.05 * torch.randn_like(p) for n, p in model.trainable_parameters().items()}
    train = [
        PreferenceExample(0, i, f"the movie was {w}", f"the movie was {v}")
        for i, (w, v) in enumerate([("good", "bad"), ("dull", "great"), ("fine", "poor"), ("lovely", "awful")])
    ]
    validation = [PreferenceExample(0, 9, "a superb film", "a boring film")]
    index = torch.tensor([2, 0, 2])  # example 2 drawn twice: both terms count
    batch = [train[i] for i in index]
    with torch.no_grad():
        loss_theta, loss_u = example_losses(model, batch), example_losses(model, batch, params=u)
        loss_val = example_losses(model, validation).mean()
    w0 = torch.tensor([0.5, 1.5, 1.0, 2.0], dtype=torch.float64)
    w = torch.tensor([0.7, 1.1, 1.3, 0.2], dtype=torch.float64, requires_grad=True)
    alpha, beta = 10.0, 1.0
    lagrangian = (
        loss_val.double()
        + beta * ((w - w0) ** 2).sum()
        + alpha * (weighted_loss(loss_theta.double(), w[index]) - weighted_loss(loss_u.double(), w[index]))
    )
    (expected,) = torch.autograd.grad(lagrangian, w)
    got = w_gradient(w.detach(), w0, index, loss_theta, loss_u, alpha, beta, "batch-mean")
    assert torch.allclose(got, expected, atol=1e-6)
    assert got[3] == pytest.approx(2 * beta * (0.2 - 2.0))  # not in the batch: only the prior's pull
    # 'per-example': eq. 3.7's sum over the examples; the batch's coordinates get their whole derivative
    summed = (
        loss_val.double()
        + beta * ((w - w0) ** 2).sum()
        + alpha * ((w[index] * loss_theta.double()).sum() - (w[index] * loss_u.double()).sum())
    )
    (expected,) = torch.autograd.grad(summed, w)
    got = w_gradient(w.detach(), w0, index, loss_theta, loss_u, alpha, beta, "per-example")
    assert torch.allclose(got[[0, 2]], expected[[0, 2]], atol=1e-6)
    assert got[1] == 0 and got[3] == 0  # not drawn: not stepped
    delta = float(loss_theta[1] - loss_u[1])  # example 0, by hand
    assert got[0] == pytest.approx(2 * beta * (0.7 - 0.5) + alpha * delta, abs=1e-6)


def _run(tmp_path, vocab_file, **sections):
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = RewardConfig.from_dict(reward_config(tmp_path, **sections))
    return train_reward(cfg, backbone=build_tiny("bert", vocab_file))


def test_a_fully_corrupted_source_ends_below_the_clean_ones(tmp_path, vocab_file):
    result = _run(
        tmp_path,
        vocab_file,
        dorm={"variant": "bilevel-no-prior", "eta_w": 0.05},
        training={"steps": 40, "batch_size": 8},
    )
    clean_a, clean_b, flipped = result.metrics["final_mean_weight"].values()
    assert flipped < min(clean_a, clean_b) and flipped < 1.0 < max(clean_a, clean_b)
    assert (result.weights >= 0).all()
    curves = json.loads((tmp_path / "run" / "weight_curves.json").read_text())
    assert curves["sources"] == ["s0-flip0", "s1-flip0", "s2-flip100"]
    assert [p["step"] for p in curves["points"]] == list(range(0, 41, 2))
    assert curves["points"][0]["mean_weight"] == [1.0, 1.0, 1.0]
    # what pushed the weights: alpha (l(theta) - l(u)) per source, positive (down) for the flipped one
    signal = [p["signal"] for p in curves["points"][1:]]
    assert all(len(s) == 3 for s in signal)
    flipped_mean = sum(s[2] for s in signal if s[2] is not None) / len(signal)
    clean_mean = sum(s[0] for s in signal if s[0] is not None) / len(signal)
    assert flipped_mean > clean_mean
    assert (tmp_path / "run" / "weight_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_weights_stay_non_negative(tmp_path, vocab_file):
    result = _run(tmp_path, vocab_file, dorm={"variant": "bilevel-no-prior", "eta_w": 50.0}, training={"steps": 4})
    assert (result.weights >= 0).all() and (result.weights == 0).any()


def test_the_baselines_weights(tmp_path, vocab_file):
    unweighted = _run(tmp_path / "a", vocab_file, dorm={"variant": "unweighted"})
    assert torch.equal(unweighted.weights, torch.ones(72)) and unweighted.auxiliary
    prior = _run(tmp_path / "b", vocab_file, dorm={"variant": "prior"})
    assert torch.equal(prior.weights, prior.prior) and prior.prior.std() > 0
    assert float(prior.prior.mean()) == pytest.approx(1.0, abs=1e-5)
    rows = json.loads((tmp_path / "b" / "run" / "weights.json").read_text())
    assert len(rows) == 72 and {"source", "row", "w0", "w", "u", "q"} <= set(rows[0])
    # eq. 3.6's standardised terms per source, as they enter it
    zu = prior.metrics["prior_zu_mean"]
    assert list(zu) == ["s0-flip0", "s1-flip0", "s2-flip100"] and set(prior.metrics["prior_zq_mean"]) == set(zu)
    u = torch.tensor([r["u"] for r in rows], dtype=torch.float64)
    z = ((u - u.mean()) / u.std(unbiased=False)).clamp(-3, 3)  # by hand: z-score, clip 3 (dorm.clip)
    assert zu["s2-flip100"] == pytest.approx(float(z[48:].mean()), abs=1e-5)
    dorm = _run(tmp_path / "c", vocab_file, dorm={"variant": "dorm", "eta_w": 0.05})
    assert torch.equal(dorm.prior, prior.prior)  # same seed, same brief training: same prior
    assert not torch.equal(dorm.weights, dorm.prior)


def test_resume_after_a_kill_ends_where_the_uninterrupted_run_ends(tmp_path, vocab_file):
    sections = dict(dorm={"variant": "dorm", "eta_w": 0.05}, training={"steps": 6, "checkpoint_every": 2})
    whole = _run(tmp_path / "whole", vocab_file, **sections)

    def kill(step):
        if step == 3:
            raise KeyboardInterrupt

    (tmp_path / "cut").mkdir()
    cfg = RewardConfig.from_dict(reward_config(tmp_path / "cut", **sections))
    with pytest.raises(KeyboardInterrupt):
        train_reward(cfg, backbone=build_tiny("bert", vocab_file), on_step=kill)
    assert sorted(p.name for p in (tmp_path / "cut" / "run" / "checkpoints").iterdir()) == ["step-0000002"]
    resumed = train_reward(cfg, backbone=build_tiny("bert", vocab_file), resume=True)
    assert torch.equal(resumed.weights, whole.weights) and torch.equal(resumed.prior, whole.prior)
    theta_a, theta_b = whole.model.trainable_state_dict(), resumed.model.trainable_state_dict()
    assert all(torch.equal(theta_a[n], theta_b[n]) for n in theta_a)
    assert all(torch.equal(whole.auxiliary[n], resumed.auxiliary[n]) for n in whole.auxiliary)
    assert resumed.curves == whole.curves
    assert resumed.metrics["test_pairwise_accuracy"] == whole.metrics["test_pairwise_accuracy"]


def test_the_prior_read_from_a_model_trained_on_the_validation_pairs(tmp_path, vocab_file):
    from prefalign.reward import read_sources
    from prefalign.reward.prior import mc_dropout_statistics
    from prefalign.reward.run import brief_training, estimate_prior

    cfg = RewardConfig.from_dict(
        reward_config(tmp_path, dorm={"variant": "prior", "prior_data": "validation", "q_form": "absolute"})
    )
    train = read_sources(cfg.sources, ["reward"])
    validation = read_sources(cfg.validation, ["reward"])
    model = RewardModel(build_tiny("bert", vocab_file), cfg.model, seed=0)
    start = model.trainable_state_dict()
    w0, stats = estimate_prior(model, cfg, train, validation)
    after = model.trainable_state_dict()
    assert all(torch.equal(start[k], after[k]) for k in start)  # the brief training is undone
    # by hand: the same brief training on the 16 validation pairs, then MC dropout on the training pairs
    brief_training(model, cfg, validation)
    u, q = mc_dropout_statistics(model, train, 4, cfg.training.eval_batch_size, 2, "absolute")
    assert torch.equal(stats["u"], u) and torch.equal(stats["q"], q)
    model.load_state_dict(start, strict=False)
    brief_training(model, cfg, train)  # the default reading trains on the training pairs: another prior
    assert not torch.equal(mc_dropout_statistics(model, train, 4, cfg.training.eval_batch_size, 2)[0], u)


def test_w_normalise_mean_rescales_each_step_to_mean_one(tmp_path, vocab_file):
    # step 1 leaves w = 1 (theta = u when it starts); step 2 starts from w = 1 in both runs with the same batch
    # and losses, so the normalised w is the plain step's w over its mean
    one = {"steps": 2, "batch_size": 8, "log_every": 1}
    plain = _run(tmp_path / "a", vocab_file, dorm={"variant": "bilevel-no-prior", "eta_w": 5.0}, training=one)
    norm = _run(
        tmp_path / "b",
        vocab_file,
        dorm={"variant": "bilevel-no-prior", "eta_w": 5.0, "w_normalise": "mean"},
        training=one,
    )
    assert abs(float(plain.weights.mean()) - 1.0) > 1e-3  # the plain step moved the weights' mean
    assert torch.allclose(norm.weights, plain.weights / plain.weights.mean(), atol=1e-6)
    # over a run the mean stays 1, the weights non-negative, and the flipped source still ends lowest
    run = _run(
        tmp_path / "c",
        vocab_file,
        dorm={"variant": "bilevel-no-prior", "eta_w": 0.05, "w_normalise": "mean"},
        training={"steps": 40, "batch_size": 8},
    )
    assert float(run.weights.mean()) == pytest.approx(1.0, abs=1e-5) and (run.weights >= 0).all()
    clean_a, clean_b, flipped = run.metrics["final_mean_weight"].values()
    assert flipped < min(clean_a, clean_b)


def test_w_normalise_round_trips_and_rejects_other_values(tmp_path):
    from prefalign.errors import ConfigError

    cfg = RewardConfig.from_dict(reward_config(tmp_path, dorm={"w_normalise": "mean"}))
    assert cfg.dorm.w_normalise == "mean"
    assert RewardConfig.from_dict(cfg.to_dict()).dorm.w_normalise == "mean"
    assert RewardConfig.from_dict(reward_config(tmp_path)).dorm.w_normalise == "none"  # line 5 as written
    with pytest.raises(ConfigError, match="'sum' is not one of none, mean"):
        RewardConfig.from_dict(reward_config(tmp_path, dorm={"w_normalise": "sum"}))
