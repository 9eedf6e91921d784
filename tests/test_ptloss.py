"""PTLoss (thesis chapter 4): the loss of eq. 4.7, its gradient, the proxy teacher, Q and the coefficient search."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from prefalign.errors import ConfigError, DataError
from prefalign.methods.ptloss import losses, proxy
from prefalign.methods.ptloss.search import SearchSettings, draw, search_coefficients


def _batch(seed=0, b=6, c=3):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.softmax(torch.randn(b, c, generator=g) * 2, -1)
    logits = torch.randn(b, c, generator=g)
    return teacher, logits


def test_pt_loss_by_hand_binary():
    # t = (0.8, 0.2), s = (0.5, 0.5), eps = [1, 1] of order 1 (Figure 4.2b's setting):
    # KL = 0.8 log 1.6 + 0.2 log 0.4, perturbation = 0.8 * 0.5 + 0.2 * 0.5 = 0.5
    teacher = torch.tensor([[0.8, 0.2]])
    logits = torch.zeros(1, 2)
    kl = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert losses.kl_loss(teacher, logits).item() == pytest.approx(kl, abs=1e-6)
    assert losses.pt_loss(teacher, logits, [1.0]).item() == pytest.approx(kl + 0.5, abs=1e-6)
    # order 2, per class: eps_0 = (1, 2), eps_1 = (0, -1): 0.8 * (0.5 + 2 * 0.25) + 0.2 * (0 - 0.25) = 0.75
    per_class = [[1.0, 2.0], [0.0, -1.0]]
    assert losses.pt_loss(teacher, logits, per_class).item() == pytest.approx(kl + 0.75, abs=1e-6)


@pytest.mark.parametrize("eps", [[0.0], [0.0] * 5, [[0.0] * 3] * 3])
def test_zero_eps_is_kl_exactly(eps):
    teacher, logits = _batch()
    assert torch.equal(losses.pt_loss(teacher, logits, eps), losses.kl_loss(teacher, logits))


@pytest.mark.parametrize("eps", [[2.0], [-1.0, 3.0, 0.5], [[1.0, -0.5], [4.0, 2.0], [0.0, 9.0]]])
def test_gradient_formula_matches_autograd(eps):
    teacher, logits = _batch(seed=1)
    z = logits.double().requires_grad_(True)
    probs = torch.softmax(z, -1)
    per_example = (teacher.double() * (torch.log(teacher.double()) - torch.log(probs))).sum(-1) + losses.perturbation(
        teacher.double(), probs, torch.tensor(eps, dtype=torch.float64)
    )
    (grad,) = torch.autograd.grad(per_example.sum(), z)
    closed = losses.pt_logit_gradient(teacher, logits, eps)
    assert torch.allclose(closed, grad, atol=1e-10)
    # the numpy version the proxy solver uses agrees, and its Hessian is the gradient's Jacobian
    e = np.broadcast_to(np.asarray(eps, float), (3, np.asarray(eps).shape[-1]))
    t, z0 = teacher.double().numpy(), logits.double().numpy()
    assert np.allclose(proxy.pt_gradient(z0, t, e), grad.numpy(), atol=1e-10)
    jac = torch.autograd.functional.jacobian(
        lambda v: losses.pt_logit_gradient(teacher[:1], v.unsqueeze(0), eps)[0], logits[0].double()
    )
    assert np.allclose(proxy.pt_hessian(z0[0], t[0], e), jac.numpy(), atol=1e-9)


def test_focal_coefficients_reproduce_focal_loss():
    # eq. 4.10 with the series run long enough: l_PT with eps_{c,m} = ((1-p^s_c)^gamma - 1) / m is eq. 4.8
    teacher, logits = _batch(seed=2)
    probs = torch.softmax(logits.double(), -1)
    for gamma in (0.5, 2.0):
        eps = losses.focal_eps(probs, gamma, order=400)
        pt = (
            losses.kl_loss(teacher.double(), logits.double()) + losses.perturbation(teacher.double(), probs, eps).mean()
        )
        assert pt.item() == pytest.approx(losses.focal_loss(teacher, logits, gamma).item(), abs=1e-5)


def test_smoothing_coefficients_reproduce_label_smoothing():
    # eq. 4.16: l_PT equals eq. 4.15 up to H(p^ls) - H(p^t), which does not depend on the student
    teacher, logits = _batch(seed=3, c=2)
    delta = 0.1
    for shift in (0.0, 1.5):
        z = logits.double() + torch.tensor([shift, -shift], dtype=torch.float64)
        probs = torch.softmax(z, -1)
        eps = losses.smoothing_eps(teacher.double(), delta, order=400)
        pt = losses.kl_loss(teacher.double(), z) + losses.perturbation(teacher.double(), probs, eps).mean()
        smoothed = losses.smooth(teacher.double(), delta)
        entropy_gap = (smoothed * smoothed.log()).sum(-1).mean() - (teacher.double() * teacher.double().log()).sum(
            -1
        ).mean()
        ls = losses.label_smoothing_loss(teacher.double(), z, delta).double()
        assert pt.item() == pytest.approx((ls - entropy_gap).item(), abs=1e-5)


def test_baseline_losses_by_hand():
    teacher = torch.tensor([[0.8, 0.2]])
    logits = torch.zeros(1, 2)
    # focal with gamma = 0 is KL; gamma = 1 weights -log 0.5 by 0.5
    assert losses.focal_loss(teacher, logits, 0.0).item() == pytest.approx(losses.kl_loss(teacher, logits).item())
    neg_h = 0.8 * math.log(0.8) + 0.2 * math.log(0.2)
    assert losses.focal_loss(teacher, logits, 1.0).item() == pytest.approx(neg_h + 0.5 * math.log(2), abs=1e-6)
    # temperature 1 is KL; temperature 2 softens the teacher to (2/3, 1/3) and scales by 4
    assert losses.temperature_loss(teacher, logits, 1.0).item() == pytest.approx(losses.kl_loss(teacher, logits).item())
    soft = torch.tensor([[2 / 3, 1 / 3]])
    assert losses.temperature_loss(teacher, logits, 2.0).item() == pytest.approx(
        4 * losses.kl_loss(soft, logits).item(), abs=1e-6
    )
    assert losses.smooth(teacher, 0.2)[0].tolist() == pytest.approx([0.74, 0.26])
    assert losses.flooding(torch.tensor(0.1), 0.3).item() == pytest.approx(0.5)
    assert losses.flooding(torch.tensor(0.7), 0.3).item() == pytest.approx(0.7)
    # annealing at the end (T = 1, Phi = 1): student logits (1, -1) against teacher log-odds log 4
    end = losses.annealing_loss(teacher, torch.tensor([[1.0, -1.0]]), 1.0, 10.0)
    half = math.log(4) / 2
    assert end.item() == pytest.approx(2 * (1 - half) ** 2, abs=1e-6)
    start = losses.annealing_loss(teacher, torch.tensor([[1.0, -1.0]]), 0.0, 10.0)  # Phi = 1 - 9/10
    assert start.item() == pytest.approx(2 * (1 - 0.1 * half) ** 2, abs=1e-6)


def test_proxy_of_kl_only_loss_is_the_teacher():
    teacher = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]])
    for solver in ("newton", "fsolve"):
        result = proxy.solve_proxy(teacher, np.zeros(3), solver)
        assert np.allclose(result.proxy, teacher, rtol=0, atol=1e-15)
    # fsolve itself, not just the eps = 0 shortcut, returns the teacher when the perturbation is tiny
    out, fell, _ = proxy.solve_one(teacher[0], np.full((3, 1), 1e-12))
    assert not fell and np.allclose(out, teacher[0], atol=1e-9)


def test_proxy_minimises_pt_loss_and_solvers_agree():
    rng = np.random.default_rng(0)
    teacher = rng.dirichlet(np.ones(3), size=40)
    eps = np.array([[2.0, -0.5], [0.3, 1.0], [5.0, 0.0]])
    newton = proxy.solve_proxy(teacher, eps, "newton")
    fsolve = proxy.solve_proxy(teacher, eps, "fsolve")
    assert np.allclose(newton.proxy, fsolve.proxy, atol=1e-5)
    assert newton.max_gradient < 1e-6
    # a minimum: moving the logits any way raises l_PT
    z = np.log(newton.proxy)
    base = proxy.pt_value(z, proxy._clean(teacher), eps)
    for d in np.eye(3):
        assert np.all(proxy.pt_value(z + 1e-3 * d, proxy._clean(teacher), eps) > base)
        assert np.all(proxy.pt_value(z - 1e-3 * d, proxy._clean(teacher), eps) > base)
    # a positive order-1 perturbation on class c pushes the proxy towards c (it penalises 1 - p_c)
    t = np.array([[0.6, 0.4]])
    assert proxy.solve_proxy(t, np.array([[1.0], [0.0]])).proxy[0, 0] > 0.6


def test_quality_score_by_hand():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    y = np.array([0, 0])
    distance = (math.sqrt(0.5) + 0.0) / 2  # ||(-.5, .5)|| and 0
    entropy_sq = (math.log(0.5) ** 2 + 0.0) / 2
    assert proxy.quality_score(p, y) == pytest.approx(distance**2 + entropy_sq)
    assert proxy.quality_score(p, y, "squared") == pytest.approx((0.5 / 2) ** 2 + entropy_sq)
    # without the squared-entropy term: the distance term alone
    assert proxy.quality_score(p, y, entropy=False) == pytest.approx(distance**2)
    assert proxy.quality_score(p, y, "squared", entropy=False) == pytest.approx((0.5 / 2) ** 2)


def test_without_the_entropy_term_the_search_stops_rewarding_sharp_proxies():
    """Labels drawn from a known p*, a teacher sharper than p*: eq. 4.20 as written prefers a still sharper
    proxy (a positive first-order eps), the squared distance alone a smoother one (a negative eps)."""
    rng = np.random.default_rng(0)
    truth = rng.dirichlet([2.0, 2.0], size=4000)
    labels = (rng.random(4000) < truth[:, 1]).astype(int)
    logits = np.log(truth)
    teacher = np.exp(2 * logits) / np.exp(2 * logits).sum(1, keepdims=True)  # over-confident
    settings = SearchSettings(orders=1, trials=12, low=-1.0, high=1.0, seed=0)
    as_written = search_coefficients(teacher, labels, settings, progress=False)["best"]["eps"][0]
    settings = SearchSettings(orders=1, trials=12, low=-1.0, high=1.0, seed=0, distance="squared", entropy=False)
    unbiased = search_coefficients(teacher, labels, settings, progress=False)["best"]["eps"][0]
    assert as_written > 0 > unbiased


def test_search_finds_lowest_q_resumes_and_writes_files(tmp_path, capsys):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=60)
    truth = np.eye(3)[labels] * 0.6 + 0.4 / 3
    teacher = 0.5 * truth + 0.5 / 3  # an under-confident teacher
    settings = SearchSettings(orders=2, trials=5, seed=3)
    full = search_coefficients(teacher, labels, settings, tmp_path / "a", progress=False)
    assert len(full["tried"]) == 10
    assert full["best"]["q"] == min(t["q"] for t in full["tried"])
    assert full["best"]["q"] < full["q_kl"]  # sharpening helps an under-confident teacher
    for t in full["tried"]:
        assert np.array_equal(np.array(t["eps"]), draw(settings, t["order"], t["trial"], 3))
        assert -1.0 <= np.min(t["eps"]) and np.max(t["eps"]) <= 10.0
    assert json.loads((tmp_path / "a" / "search.json").read_text())["best"] == full["best"]
    assert (tmp_path / "a" / "search.png").stat().st_size > 0
    # stopped after 4 trials, then resumed: the same record as the uninterrupted search
    partial = dict(json.loads((tmp_path / "a" / "search.json").read_text()))
    partial["tried"] = partial["tried"][:4]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "search.json").write_text(json.dumps(partial))
    resumed = search_coefficients(teacher, labels, settings, tmp_path / "b", progress=True)
    assert resumed == full
    assert "best_q" in capsys.readouterr().err  # the progress bar shows the best Q so far
    # other settings start over instead of reusing the old trials
    other = search_coefficients(
        teacher, labels, SearchSettings(orders=1, trials=2, seed=4), tmp_path / "b", progress=False
    )
    assert len(other["tried"]) == 2


def test_search_bad_input():
    with pytest.raises(DataError, match="empty validation set"):
        search_coefficients(np.zeros((0, 2)), np.zeros(0), SearchSettings(), None, progress=False)
    with pytest.raises(ConfigError, match="range"):
        search_coefficients(np.full((2, 2), 0.5), np.zeros(2), SearchSettings(low=3, high=1), None, progress=False)
