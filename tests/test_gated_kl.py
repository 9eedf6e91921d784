"""losses.gated_gaussian_kl: eq. 12's Gaussian KL on the gated pairs only equals reduce_pairs over the full (B, B)."""

from types import SimpleNamespace

import pytest
import torch

from prefalign.methods.dcpc import losses


def full_and_gated(mu, sigma, gate):
    """(loss, grad mu, grad sigma) from the full B x B path and from the gated path, on fresh leaves."""
    out = []
    for fn in (
        lambda m, s: losses.reduce_pairs(losses.pairwise_gaussian_kl(m, s), gate, "gated_pairs"),
        lambda m, s: losses.gated_gaussian_kl(m, s, gate),
    ):
        m, s = mu.clone().requires_grad_(), sigma.clone().requires_grad_()
        loss = fn(m, s)
        loss.backward()
        out.append((loss.detach(), m.grad, s.grad))
    return out


def test_one_gated_pair_by_hand():
    mu = torch.tensor([[0.0, 1.0], [2.0, 1.0], [7.0, 7.0]])
    sigma = torch.tensor([[1.0, 1.0], [1.0, 2.0], [3.0, 3.0]])
    gate = torch.zeros(3, 3, dtype=torch.bool)
    gate[0, 1] = True
    # dim 1: (0 - 2)^2 / 2 = 2; dim 2: log 2 + 1 / 8 - 1/2; mean over the two dimensions
    want = (2.0 + (torch.log(torch.tensor(2.0)).item() + 1 / 8 - 0.5)) / 2
    assert losses.gated_gaussian_kl(mu, sigma, gate).item() == pytest.approx(want, rel=1e-6)


def test_no_gated_pair_gives_zero_and_zero_gradients():
    mu = torch.randn(4, 3, requires_grad=True)
    sigma = (torch.rand(4, 3) + 0.1).requires_grad_()
    gate = torch.eye(4, dtype=torch.bool)  # only the diagonal, which never counts
    loss = losses.gated_gaussian_kl(mu, sigma, gate)
    loss.backward()
    assert loss.item() == 0.0
    assert (mu.grad == 0).all() and (sigma.grad == 0).all()


@pytest.mark.parametrize("n_gated", ["one", "many", "all"])  # "all" takes the full-matrix branch
def test_matches_the_full_computation_and_its_gradients_at_large_norms(n_gated):
    gen = torch.Generator().manual_seed(3)
    b, d = 16, 64
    # large, nearly equal means and small sigmas: the regime of the existing float64 precision test
    mu = (20 + 0.01 * torch.randn(b, d, generator=gen, dtype=torch.float64)).float()
    sigma = (0.05 * torch.exp(0.01 * torch.randn(b, d, generator=gen, dtype=torch.float64))).float()
    if n_gated == "one":
        gate = torch.zeros(b, b, dtype=torch.bool)
        gate[5, 2] = True
    elif n_gated == "many":
        gate = torch.rand(b, b, generator=gen) > 0.6
    else:
        gate = torch.ones(b, b, dtype=torch.bool)
    (full, gm_full, gs_full), (gated, gm, gs) = full_and_gated(mu, sigma, gate)
    assert full.item() > 0
    assert torch.allclose(gated, full, rtol=1e-6, atol=0)
    assert torch.allclose(gm, gm_full, rtol=1e-5, atol=1e-6 * gm_full.abs().max().item())
    assert torch.allclose(gs, gs_full, rtol=1e-5, atol=1e-6 * gs_full.abs().max().item())
    assert (gate.sum() - gate.diagonal().sum() > losses.GATED_KL_MAX_SHARE * b * (b - 1)) == (n_gated == "all")
    rows = gate.any(1) | gate.any(0)
    assert (gm[~rows] == 0).all() and (gm[rows] != 0).any()  # only examples in a gated pair get a gradient


def test_matches_a_float64_reference_inside_autocast():
    gen = torch.Generator().manual_seed(4)
    mu = 20 + 0.01 * torch.randn(6, 32, generator=gen, dtype=torch.float64)
    sigma = 0.05 * torch.exp(0.01 * torch.randn(6, 32, generator=gen, dtype=torch.float64))
    gate = torch.rand(6, 6, generator=gen) > 0.5
    gate[0, 1] = True
    pairs = [(a, b) for a in range(6) for b in range(6) if a != b and gate[a, b]]
    ref = sum(
        (torch.log(sigma[b] / sigma[a]) + (sigma[a] ** 2 + (mu[a] - mu[b]) ** 2) / (2 * sigma[b] ** 2) - 0.5).mean()
        for a, b in pairs
    ) / len(pairs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = losses.gated_gaussian_kl(mu.float(), sigma.float(), gate)
    assert got.dtype == torch.float32
    assert got.double().item() == pytest.approx(ref.item(), rel=1e-4)


def objective_kl(reduction):
    """DCPC's objective on made-up outputs (8 rows, ambiguity gate partly open): terms, total, grads of mu, sigma."""
    from prefalign.methods.dcpc.config import DCPCConfig
    from prefalign.methods.dcpc.model import DCPCModel
    from prefalign.methods.dcpc.pcm import PCMOutput

    gen = torch.Generator().manual_seed(5)
    emb = torch.randn(8, 6, generator=gen) + torch.tensor([3.0, 0, 0, 0, 0, 0])  # mostly similar: cos gate open
    logits = 2 * torch.randn(8, 2, generator=gen)  # predictions that disagree
    mu = torch.randn(8, 5, generator=gen).requires_grad_()
    sigma = (torch.rand(8, 5, generator=gen) + 0.2).requires_grad_()
    cfg = DCPCConfig(
        tau_cos=0.2, tau_ambiguity=0.05, similarity_center=False, use_alignment=False, pair_reduction=reduction
    )
    model = SimpleNamespace(config=cfg, training=False, pcm=None)
    out = SimpleNamespace(logits=logits, last_pooled=emb, pooled=None)
    pcm_out = PCMOutput(mu=mu, sigma=sigma, p_pref=torch.softmax(mu, -1), delta=None)
    total, terms = DCPCModel.objective(model, out, torch.softmax(logits, -1), pcm_out)
    total.backward()
    return terms, total.detach(), mu.grad, sigma.grad


def test_dcpc_objective_gated_kl_equals_the_full_path(monkeypatch):
    """The objective's loss_kl and its gradients under gated_pairs, with the gated function and with the full one."""
    terms, total, gm, gs = objective_kl("gated_pairs")
    assert 0 < terms["gate_ambiguity_rate"].item() < 1  # some pairs gated, some not

    def full(mu, sigma, gate):
        return losses.reduce_pairs(losses.pairwise_gaussian_kl(mu, sigma), gate, "gated_pairs")

    monkeypatch.setattr(losses, "gated_gaussian_kl", full)
    ref_terms, ref_total, ref_gm, ref_gs = objective_kl("gated_pairs")
    assert terms["loss_kl"].item() > 0
    assert torch.allclose(terms["loss_kl"], ref_terms["loss_kl"], rtol=1e-6)
    assert torch.allclose(total, ref_total, rtol=1e-6)
    assert torch.allclose(gm, ref_gm, rtol=1e-5, atol=1e-8) and torch.allclose(gs, ref_gs, rtol=1e-5, atol=1e-8)


def test_dcpc_objective_all_pairs_keeps_the_full_computation(monkeypatch):
    def fail(*args):
        raise AssertionError("all_pairs must not take the gated path")

    monkeypatch.setattr(losses, "gated_gaussian_kl", fail)
    terms, *_ = objective_kl("all_pairs")
    assert terms["loss_kl"].item() > 0


def test_the_full_matrix_branch_is_taken_above_the_share(monkeypatch):
    calls = []
    orig = losses.pairwise_gaussian_kl
    monkeypatch.setattr(losses, "pairwise_gaussian_kl", lambda *a: calls.append(1) or orig(*a))
    mu, sigma = torch.randn(4, 3), torch.rand(4, 3) + 0.1
    few = torch.zeros(4, 4, dtype=torch.bool)
    few[0, 1] = few[2, 3] = True  # 2 of 12 pairs
    losses.gated_gaussian_kl(mu, sigma, few)
    assert calls == []
    losses.gated_gaussian_kl(mu, sigma, torch.ones(4, 4, dtype=torch.bool))  # 12 of 12
    assert calls == [1]
