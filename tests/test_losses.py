"""DCPC's pairwise loss terms (methods/dcpc/losses.py) against hand-computed values.

Expected numbers are written out with plain Python ``math`` (or as literals worked out by hand in
the comments), never with the torch expression under test. Paper: eq. 3 (cosine), eq. 4 (label
cross-entropy), eq. 5 (gated ambiguity), eq. 6-7 (cross-layer alignment), eq. 12 (KL).
"""

from __future__ import annotations

import math

import pytest
import torch

from prefalign.methods.dcpc import losses

LN2 = math.log(2.0)


def as_list(t: torch.Tensor) -> list:
    return t.detach().double().tolist()


def assert_matrix(actual: torch.Tensor, expected: list[list[float]], tol: float = 1e-6) -> None:
    got = as_list(actual)
    assert len(got) == len(expected)
    for i, (row_g, row_e) in enumerate(zip(got, expected)):
        assert len(row_g) == len(row_e)
        for j, (g, e) in enumerate(zip(row_g, row_e)):
            assert g == pytest.approx(e, abs=tol), f"entry [{i}][{j}]: got {g}, expected {e}"


def ce(p: list[float], q: list[float]) -> float:
    """Eq. 4 by hand: -sum_i p(i) log q(i)."""
    return -sum(pi * math.log(qi) for pi, qi in zip(p, q))


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def gauss_kl_1d(mu_a: float, s_a: float, mu_b: float, s_b: float) -> float:
    """KL(N(mu_a, s_a^2) || N(mu_b, s_b^2)) for one dimension."""
    return math.log(s_b / s_a) + (s_a**2 + (mu_a - mu_b) ** 2) / (2 * s_b**2) - 0.5


PROBS = [[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]


# --------------------------------------------------------------------------------------------
# off_diagonal, eq. 3
# --------------------------------------------------------------------------------------------
def test_off_diagonal_marks_ordered_pairs_only():
    mask = losses.off_diagonal(3)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[False, True, True], [True, False, True], [True, True, False]]


def test_pairwise_cosine_hand_values():
    # e0=(1,0), e1=(1,1), e2=(0,2), e3=(-3,0)
    emb = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [-3.0, 0.0]])
    r = 1 / math.sqrt(2)
    expected = [
        [1.0, r, 0.0, -1.0],
        [r, 1.0, r, -r],
        [0.0, r, 1.0, 0.0],
        [-1.0, -r, 0.0, 1.0],
    ]
    cos = losses.pairwise_cosine(emb)
    assert cos.shape == (4, 4)
    assert_matrix(cos, expected)


def test_pairwise_cosine_is_scale_invariant_and_zero_vector_safe():
    emb = torch.tensor([[3.0, 4.0], [30.0, 40.0], [0.0, 0.0]])
    cos = losses.pairwise_cosine(emb)
    assert torch.isfinite(cos).all()
    # Same direction: cos = (3*30 + 4*40) / (5 * 50) = 250 / 250 = 1; the zero vector scores 0.
    assert_matrix(cos, [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])


def test_pairwise_cosine_accepts_half_precision_and_returns_float32():
    emb = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.bfloat16)
    cos = losses.pairwise_cosine(emb)
    assert cos.dtype == torch.float32
    assert_matrix(cos, [[1.0, 1 / math.sqrt(2)], [1 / math.sqrt(2), 1.0]], tol=1e-3)


# --------------------------------------------------------------------------------------------
# eq. 4
# --------------------------------------------------------------------------------------------
def test_label_divergence_cross_entropy_literal_values():
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    d = losses.pairwise_label_divergence(probs, "cross_entropy")
    # [0,0] = -(.5 ln .5 + .5 ln .5) = ln 2 = 0.693147
    # [0,1] = -(.5 ln .9 + .5 ln .1) = .5 * (0.1053605 + 2.3025851) = 1.2039728
    # [1,0] = -(.9 ln .5 + .1 ln .5) = ln 2
    # [1,1] = -(.9 ln .9 + .1 ln .1) = 0.0948245 + 0.2302585 = 0.3250830
    assert_matrix(d, [[0.693147, 1.2039728], [0.693147, 0.3250830]], tol=1e-6)


def test_label_divergence_cross_entropy_matches_loop():
    d = losses.pairwise_label_divergence(torch.tensor(PROBS), "cross_entropy")
    expected = [[ce(pa, pb) for pb in PROBS] for pa in PROBS]
    assert_matrix(d, expected)
    # Not symmetric: D(A, B) != D(B, A) in general.
    assert d[0, 1].item() != pytest.approx(d[1, 0].item(), abs=1e-3)


def test_label_divergence_kl_literal_values_and_zero_diagonal():
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    d = losses.pairwise_label_divergence(probs, "kl")
    # KL(p0 || p1) = 1.2039728 - ln 2 = 0.5108256 ; KL(p1 || p0) = ln 2 - 0.3250830 = 0.3680642
    assert_matrix(d, [[0.0, 0.5108256], [0.3680642, 0.0]], tol=1e-6)


def test_label_divergence_kl_matches_loop():
    d = losses.pairwise_label_divergence(torch.tensor(PROBS), "kl")
    assert_matrix(d, [[kl(pa, pb) for pb in PROBS] for pa in PROBS])


def test_label_divergence_is_finite_for_hard_zero_probabilities():
    d = losses.pairwise_label_divergence(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "cross_entropy")
    assert torch.isfinite(d).all()
    # log is clamped at 1e-12: -(1 * ln 1e-12) = 12 ln 10 = 27.631021
    assert d[0, 1].item() == pytest.approx(12 * math.log(10), rel=1e-5)
    assert d[0, 0].item() == pytest.approx(0.0, abs=1e-6)


def test_label_divergence_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown label divergence"):
        losses.pairwise_label_divergence(torch.tensor(PROBS), "js")


# --------------------------------------------------------------------------------------------
# eq. 5
# --------------------------------------------------------------------------------------------
# e0=(1,0), e1=(3,4), e2=(0,1): cos01 = 3/5 = 0.6, cos02 = 0, cos12 = 4/5 = 0.8 (exact in float32)
AMB_EMB = [[1.0, 0.0], [3.0, 4.0], [0.0, 1.0]]


@pytest.mark.parametrize("divergence", ["cross_entropy", "kl"])
def test_ambiguity_gate_weight_and_diagonal(divergence):
    emb, probs = torch.tensor(AMB_EMB), torch.tensor(PROBS)
    values, gate = losses.pairwise_ambiguity(emb, probs, 0.6, divergence=divergence)
    div = ce if divergence == "cross_entropy" else kl
    p = PROBS
    # cos >= 0.6 holds for (0,1), (1,0) [0.6, inclusive] and (1,2), (2,1) [0.8]; never on the diagonal
    # even though cos(A, A) = 1 >= tau.
    assert gate.tolist() == [[False, True, False], [True, False, True], [False, True, False]]
    expected = [
        [0.0, 0.6 * div(p[0], p[1]), 0.0],
        [0.6 * div(p[1], p[0]), 0.0, 0.8 * div(p[1], p[2])],
        [0.0, 0.8 * div(p[2], p[1]), 0.0],
    ]
    assert_matrix(values, expected)


def test_ambiguity_gate_is_inclusive_at_the_threshold():
    """Eq. 5's I[cos >= tau_cos]: a pair whose cosine equals tau_cos passes; the next float above does not."""
    emb, probs = torch.tensor(AMB_EMB), torch.tensor(PROBS)
    values, gate = losses.pairwise_ambiguity(emb, probs, 0.61)
    # Only the 0.8 pair survives.
    assert gate.tolist() == [[False, False, False], [False, False, True], [False, True, False]]
    assert values[0, 1].item() == 0.0 and values[1, 0].item() == 0.0
    assert values[1, 2].item() == pytest.approx(0.8 * ce(PROBS[1], PROBS[2]), abs=1e-6)
    # The boundary, at the cosine the function itself computes for the 0.8 pair (and at exactly 0.0
    # for two orthogonal rows).
    cos = losses.pairwise_cosine(emb)[1, 2]  # float32, as the gate compares
    at = losses.pairwise_ambiguity(emb, probs, cos.item())[1]
    above = losses.pairwise_ambiguity(emb, probs, torch.nextafter(cos, torch.tensor(2.0)).item())[1]
    assert at[1, 2] and at[2, 1] and not above[1, 2] and not above[2, 1]
    ortho = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    two = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    assert losses.pairwise_ambiguity(ortho, two, 0.0)[1].tolist() == [[False, True], [True, False]]
    assert not losses.pairwise_ambiguity(ortho, two, 1e-12)[1].any()


def test_ambiguity_negative_cosine_passes_low_threshold_with_negative_weight():
    # tau_cos = -1 lets every pair through; the cos weight keeps its sign (eq. 5 as written).
    emb = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    values, gate = losses.pairwise_ambiguity(emb, probs, -1.0)
    assert gate.tolist() == [[False, True], [True, False]]
    assert values[0, 1].item() == pytest.approx(-1.2039728, abs=1e-6)
    assert values[1, 0].item() == pytest.approx(-LN2, abs=1e-6)


def test_ambiguity_no_pair_passes_gives_exact_zero_and_no_gradient():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], requires_grad=True)
    logits = torch.tensor([[0.3, -0.2], [1.0, 2.0], [-1.0, 0.5]], requires_grad=True)
    probs = torch.softmax(logits, -1)
    values, gate = losses.pairwise_ambiguity(emb, probs, 0.5, detach_similarity=False)
    assert not gate.any()
    loss = losses.reduce_pairs(values, gate, "gated_pairs")
    assert loss.item() == 0.0
    loss_all = losses.reduce_pairs(values, gate, "all_pairs")
    assert loss_all.item() == 0.0
    (loss + loss_all).backward()
    assert logits.grad is None or torch.count_nonzero(logits.grad) == 0
    assert emb.grad is None or torch.count_nonzero(emb.grad) == 0


def test_ambiguity_detached_cosine_gives_embeddings_no_gradient():
    emb = torch.tensor(AMB_EMB, requires_grad=True)
    logits = torch.tensor([[0.3, -0.2], [1.0, 2.0], [-1.0, 0.5]], requires_grad=True)
    values, gate = losses.pairwise_ambiguity(emb, torch.softmax(logits, -1), 0.6)  # detach by default
    losses.reduce_pairs(values, gate).backward()
    assert emb.grad is None
    assert logits.grad is not None and torch.count_nonzero(logits.grad) > 0


def test_ambiguity_undetached_cosine_sends_gradient_to_embeddings():
    emb = torch.tensor(AMB_EMB, requires_grad=True)
    logits = torch.tensor([[0.3, -0.2], [1.0, 2.0], [-1.0, 0.5]], requires_grad=True)
    values, gate = losses.pairwise_ambiguity(emb, torch.softmax(logits, -1), 0.6, detach_similarity=False)
    losses.reduce_pairs(values, gate).backward()
    assert emb.grad is not None
    assert torch.isfinite(emb.grad).all() and torch.count_nonzero(emb.grad) > 0


def test_ambiguity_undetached_gradient_matches_finite_difference():
    # Two examples e0=(1,0), e1=(3,4) (cos 0.6 >= tau 0.5): loss = (cos D01 + cos D10) / 2, and
    # the gradient with respect to e1 is compared with central differences of that formula.
    p = [[0.5, 0.5], [0.9, 0.1]]
    emb = torch.tensor([[1.0, 0.0], [3.0, 4.0]], requires_grad=True)
    values, gate = losses.pairwise_ambiguity(emb, torch.tensor(p), 0.5, detach_similarity=False)
    losses.reduce_pairs(values, gate).backward()

    def loss_at(e1x: float, e1y: float) -> float:
        c = e1x / math.hypot(e1x, e1y)  # cos with (1, 0)
        return (c * ce(p[0], p[1]) + c * ce(p[1], p[0])) / 2

    h = 1e-4
    num_x = (loss_at(3 + h, 4) - loss_at(3 - h, 4)) / (2 * h)
    num_y = (loss_at(3, 4 + h) - loss_at(3, 4 - h)) / (2 * h)
    assert emb.grad[1, 0].item() == pytest.approx(num_x, abs=1e-4)
    assert emb.grad[1, 1].item() == pytest.approx(num_y, abs=1e-4)


# --------------------------------------------------------------------------------------------
# eq. 6-7
# --------------------------------------------------------------------------------------------
# Two examples, two layers, two features:
#   x0 = [[0, 0], [1, 1]], x1 = [[3, 4], [1, 2]]
#   layer 0: |x0 - x1|^2 = 9 + 16 = 25; layer 1: 0 + 1 = 1
X_HAND = [[[0.0, 0.0], [1.0, 1.0]], [[3.0, 4.0], [1.0, 2.0]]]
# Prefix deltas, three features: layer 0: |(1,2,2) - 0|^2 = 9; layer 1: |0 - (0,0,3)|^2 = 9
D_HAND = [[[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]]]


def test_sq_distance_sum_and_mean_hand_values():
    x = torch.tensor(X_HAND)
    # sum: mean over layers of (25, 1) = 13 ; mean: mean over layers of (25/2, 1/2) = 6.5
    assert_matrix(losses.pairwise_sq_distance(x, "sum"), [[0.0, 13.0], [13.0, 0.0]])
    assert_matrix(losses.pairwise_sq_distance(x, "mean"), [[0.0, 6.5], [6.5, 0.0]])


def loop_sq_distance(x: list, reduction: str) -> list[list[float]]:
    n, layers, feats = len(x), len(x[0]), len(x[0][0])
    out = [[0.0] * n for _ in range(n)]
    for a in range(n):
        for b in range(n):
            per_layer = []
            for layer in range(layers):
                s = sum((x[a][layer][f] - x[b][layer][f]) ** 2 for f in range(feats))
                per_layer.append(s / feats if reduction == "mean" else s)
            out[a][b] = sum(per_layer) / layers
    return out


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_sq_distance_matches_loop_on_random_tensors(reduction):
    torch.manual_seed(0)
    x = torch.randn(5, 3, 7)
    got = losses.pairwise_sq_distance(x, reduction)
    assert_matrix(got, loop_sq_distance(x.tolist(), reduction), tol=1e-4)
    assert (got >= 0).all()
    assert got.diagonal().abs().max().item() < 1e-5
    assert torch.allclose(got, got.T, atol=1e-5)


def test_alignment_without_prefix_is_token_term_only():
    x = torch.tensor(X_HAND)
    assert_matrix(losses.pairwise_alignment(x, None, reduction="sum"), [[0.0, 13.0], [13.0, 0.0]])
    assert_matrix(losses.pairwise_alignment(x, None, reduction="mean"), [[0.0, 6.5], [6.5, 0.0]])


def test_alignment_with_prefix_hand_values():
    x, d = torch.tensor(X_HAND), torch.tensor(D_HAND)
    # sum: tokens 13 + prefixes mean(9, 9) = 9 -> 22
    assert_matrix(losses.pairwise_alignment(x, d, reduction="sum"), [[0.0, 22.0], [22.0, 0.0]])
    # mean: each part is averaged over its own features: 6.5 + mean(9/3, 9/3) = 9.5
    assert_matrix(losses.pairwise_alignment(x, d, reduction="mean"), [[0.0, 9.5], [9.5, 0.0]])


def test_alignment_sum_equals_distance_of_concatenations_eq_6_7():
    """C_A^l = P_A^l (+) T_B^{l+1}, C_B^l = P_B^l (+) T_A^{l+1}; eq. 7 averaged over layers."""
    torch.manual_seed(1)
    n, layers = 4, 3
    tokens = torch.randn(n, layers, 5)
    prefix = torch.randn(n, layers, 6)
    got = losses.pairwise_alignment(tokens, prefix, reduction="sum")
    t, p = tokens.tolist(), prefix.tolist()
    for a in range(n):
        for b in range(n):
            total = 0.0
            for layer in range(layers):
                c_a = p[a][layer] + t[b][layer]  # list concatenation
                c_b = p[b][layer] + t[a][layer]
                total += sum((u - v) ** 2 for u, v in zip(c_a, c_b))
            assert got[a, b].item() == pytest.approx(total / layers, rel=1e-4, abs=1e-4)


def test_alignment_normalize_uses_rms_normalised_token_states():
    # Changed with issue 15: RMS (mean square 1 per layer) instead of L2 (norm 1), so the mean-reduced
    # distance is 2 - 2 cos, not (2 - 2 cos) / d. (3,4) has RMS sqrt(12.5), (0,2) sqrt(2):
    # (3,4)/sqrt(12.5) = (0.8485, 1.1314), (0,2)/sqrt(2) = (0, 1.4142); distance 0.72 + 0.08 = 0.8.
    x = torch.tensor([[[3.0, 4.0]], [[0.0, 2.0]]])
    got = losses.pairwise_alignment(x, None, reduction="sum", normalize=True)
    assert got[0, 1].item() == pytest.approx(0.8, abs=1e-5)
    mean = losses.pairwise_alignment(x, None, reduction="mean", normalize=True)
    assert mean[0, 1].item() == pytest.approx(2 - 2 * 0.8, abs=1e-5)  # cos((3,4),(0,2)) = 0.8
    raw = losses.pairwise_alignment(x, None, reduction="sum", normalize=False)
    assert raw[0, 1].item() == pytest.approx(9 + 4, abs=1e-5)


def test_alignment_averages_over_layers_not_sums():
    # Three layers where only one differs by 6 in one feature: 36 / 3 layers = 12
    x = torch.zeros(2, 3, 2)
    x[1, 1, 0] = 6.0
    assert losses.pairwise_alignment(x, None, reduction="sum")[0, 1].item() == pytest.approx(12.0)
    assert losses.pairwise_alignment(x, None, reduction="mean")[0, 1].item() == pytest.approx(6.0)


# --------------------------------------------------------------------------------------------
# eq. 12
# --------------------------------------------------------------------------------------------
def test_gaussian_kl_one_dimension_by_hand():
    mu = torch.tensor([[0.0], [1.0]])
    sigma = torch.tensor([[1.0], [2.0]])
    got = losses.pairwise_gaussian_kl(mu, sigma)
    # KL(N(0,1) || N(1,4)) = ln 2 + (1 + 1) / 8 - 1/2 = 0.4431472
    # KL(N(1,4) || N(0,1)) = ln(1/2) + (4 + 1) / 2 - 1/2 = 1.3068528
    assert_matrix(got, [[0.0, 0.4431472], [1.3068528, 0.0]], tol=1e-5)


def test_gaussian_kl_two_dimensions_is_mean_over_dimensions():
    mu = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    sigma = torch.tensor([[1.0, 0.5], [2.0, 0.5]])
    got = losses.pairwise_gaussian_kl(mu, sigma)
    # dim 0 as above; dim 1: ln 1 + (0.25 + 0) / (2 * 0.25) - 1/2 = 0  -> divide the sum by d = 2
    assert_matrix(got, [[0.0, 0.4431472 / 2], [1.3068528 / 2, 0.0]], tol=1e-5)
    assert got[0, 1].item() == pytest.approx((gauss_kl_1d(0, 1, 1, 2) + gauss_kl_1d(1, 0.5, 1, 0.5)) / 2, abs=1e-6)


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(2)
    n, d = 5, 4
    mu = torch.randn(n, d)
    sigma = torch.rand(n, d) + 0.2
    got = losses.pairwise_gaussian_kl(mu, sigma)
    from torch.distributions import Normal, kl_divergence

    for a in range(n):
        for b in range(n):
            ref = kl_divergence(Normal(mu[a], sigma[a]), Normal(mu[b], sigma[b])).sum().item() / d
            assert got[a, b].item() == pytest.approx(max(ref, 0.0), rel=1e-4, abs=1e-5)


def test_gaussian_kl_is_non_negative_and_zero_for_identical_distributions():
    mu = torch.tensor([[0.3, -1.2, 2.0], [0.3, -1.2, 2.0]])
    sigma = torch.tensor([[0.5, 1.5, 0.1], [0.5, 1.5, 0.1]])
    got = losses.pairwise_gaussian_kl(mu, sigma)
    assert (got >= 0).all()
    assert got.abs().max().item() < 1e-5


def test_categorical_kl_hand_values():
    got = losses.pairwise_categorical_kl(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    # KL(p0||p1) = .5 ln(.5/.9) + .5 ln(.5/.1) = .5 (-0.5877867 + 1.6094379) = 0.5108256
    # KL(p1||p0) = .9 ln 1.8 + .1 ln .2 = 0.5290080 - 0.1609438 = 0.3680642
    assert_matrix(got, [[0.0, 0.5108256], [0.3680642, 0.0]], tol=1e-6)
    assert (got >= 0).all()


def test_categorical_kl_matches_loop():
    probs = [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]]
    got = losses.pairwise_categorical_kl(torch.tensor(probs))
    assert_matrix(got, [[kl(pa, pb) for pb in probs] for pa in probs])


# --------------------------------------------------------------------------------------------
# reduce_pairs
# --------------------------------------------------------------------------------------------
VALUES = [[100.0, 1.0, 2.0], [3.0, 100.0, 4.0], [5.0, 6.0, 100.0]]
GATE = [[True, True, False], [False, True, True], [True, False, False]]


def test_reduce_pairs_gated_mean_ignores_diagonal():
    # Off-diagonal gated values: (0,1)=1, (1,2)=4, (2,0)=5 -> 10 over 3 pairs; the 100s on the
    # diagonal are ignored although the gate is True there.
    got = losses.reduce_pairs(torch.tensor(VALUES), torch.tensor(GATE), "gated_pairs")
    assert got.item() == pytest.approx(10 / 3)


def test_reduce_pairs_all_pairs_divides_by_every_ordered_pair():
    got = losses.reduce_pairs(torch.tensor(VALUES), torch.tensor(GATE), "all_pairs")
    assert got.item() == pytest.approx(10 / 6)  # 3 * 2 ordered pairs


def test_reduce_pairs_empty_gate_and_single_example_give_zero():
    v = torch.tensor(VALUES)
    none = torch.zeros(3, 3, dtype=torch.bool)
    assert losses.reduce_pairs(v, none, "gated_pairs").item() == 0.0
    assert losses.reduce_pairs(v, none, "all_pairs").item() == 0.0
    one = torch.tensor([[7.0]])
    assert losses.reduce_pairs(one, torch.tensor([[True]]), "gated_pairs").item() == 0.0
    assert losses.reduce_pairs(one, torch.tensor([[True]]), "all_pairs").item() == 0.0


def test_reduce_pairs_gradient_reaches_only_gated_pairs():
    v = torch.tensor(VALUES, requires_grad=True)
    losses.reduce_pairs(v, torch.tensor(GATE), "gated_pairs").backward()
    expected = [[0.0, 1 / 3, 0.0], [0.0, 0.0, 1 / 3], [1 / 3, 0.0, 0.0]]
    assert_matrix(v.grad, expected)


def test_reduce_pairs_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="unknown pair reduction"):
        losses.reduce_pairs(torch.ones(2, 2), torch.ones(2, 2, dtype=torch.bool), "median")


def test_centered_cosine_ignores_a_direction_every_input_shares():
    """A large shared component makes raw cosines ~1 (eq. 3 gate opens for all pairs); centring
    on the batch mean leaves only the inputs' own directions: here two exact opposites."""
    shared = torch.tensor([100.0, 0.0, 0.0])
    emb = torch.stack([shared + torch.tensor([0.0, 1.0, 0.0]), shared + torch.tensor([0.0, -1.0, 0.0])])
    raw = losses.pairwise_cosine(emb)
    assert raw[0, 1].item() == pytest.approx((100.0**2 - 1.0) / (100.0**2 + 1.0), abs=1e-6)
    centered = losses.pairwise_cosine(emb, center=True)
    assert centered[0, 1].item() == pytest.approx(-1.0, abs=1e-6)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    values, gate = losses.pairwise_ambiguity(emb, probs, 0.85, center=True)
    assert not gate.any() and values.abs().sum().item() == 0.0
    values, gate = losses.pairwise_ambiguity(emb, probs, 0.85, center=False)
    assert gate[0, 1] and gate[1, 0]


# --------------------------------------------------------------------------------------------
# The tau_ambiguity gate's disagreement (issue 15, finding 2)
# --------------------------------------------------------------------------------------------


def test_disagreement_is_zero_for_agreeing_pairs_even_when_uncertain():
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]])
    for kind in ("kl", "js"):
        d = losses.pairwise_disagreement(probs, kind)
        assert d[0, 1].item() == pytest.approx(0.0, abs=1e-7)
    # eq. 4 itself scores the same agreeing pair log 2, above tau_ambiguity = 0.3 at any cos > 0.43
    assert losses.pairwise_disagreement(probs, "cross_entropy")[0, 1].item() == pytest.approx(LN2, abs=1e-6)


def test_disagreement_hand_values():
    probs = [[0.9, 0.1], [0.2, 0.8]]
    d = losses.pairwise_disagreement(torch.tensor(probs), "kl")
    assert d[0, 1].item() == pytest.approx(kl(probs[0], probs[1]), abs=1e-6)
    assert d[1, 0].item() == pytest.approx(kl(probs[1], probs[0]), abs=1e-6)
    mix = [0.55, 0.45]
    js = 0.5 * (kl(probs[0], mix) + kl(probs[1], mix))
    got = losses.pairwise_disagreement(torch.tensor(probs), "js")
    assert got[0, 1].item() == pytest.approx(js, abs=1e-6) and got[1, 0].item() == pytest.approx(js, abs=1e-6)
    with pytest.raises(ValueError):
        losses.pairwise_disagreement(torch.tensor(probs), "hellinger")


# --------------------------------------------------------------------------------------------
# Precision of the pair terms (issue 15, finding 6): float64 references at large norms
# --------------------------------------------------------------------------------------------


def _close_states(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(1, 2, 576, generator=gen, dtype=torch.float64)
    x = (
        300 * base / base.norm(dim=-1, keepdim=True)
        + 1.2 * torch.randn(5, 2, 576, generator=gen, dtype=torch.float64) / 24
    )
    return x


def test_sq_distance_at_norm_300_matches_float64_reference():
    x64 = _close_states()
    ref = ((x64[:, None] - x64[None]) ** 2).sum(-1).mean(-1) / 576  # (B, B), mean over features and layers
    assert ref[0, 1].item() == pytest.approx(0.005, rel=0.3)  # a small distance between long vectors
    got = losses.pairwise_sq_distance(x64.float(), "mean").double()
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-7)
    bf16 = losses.pairwise_sq_distance(x64.to(torch.bfloat16), "mean")
    assert bf16.dtype == torch.float32  # computed in fp32 from the bf16 values


def test_sq_distance_gradient_is_twice_the_difference_and_zero_for_equal_rows():
    x = torch.tensor([[[300.0, 1.0]], [[300.0, 1.5]], [[300.0, 1.0]]], requires_grad=True)
    losses.pairwise_sq_distance(x, "sum")[0, 1].backward()
    assert x.grad[0, 0].tolist() == pytest.approx([0.0, -1.0], abs=1e-5)  # 2 (a - b) = (0, -1)
    assert x.grad[1, 0].tolist() == pytest.approx([0.0, 1.0], abs=1e-5)
    x.grad = None
    losses.pairwise_sq_distance(x, "sum")[0, 2].backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max().item() == 0.0


def test_sq_distance_in_fp32_under_bf16_autocast():
    x64 = _close_states()
    ref = ((x64[:, None] - x64[None]) ** 2).sum(-1).mean(-1) / 576
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = losses.pairwise_sq_distance(x64.float(), "mean")
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), ref, rtol=1e-4, atol=1e-7)


def test_gaussian_kl_at_large_means_matches_float64_reference():
    gen = torch.Generator().manual_seed(1)
    mu = 20 + 0.01 * torch.randn(4, 64, generator=gen, dtype=torch.float64)
    sigma = 0.05 * torch.exp(0.01 * torch.randn(4, 64, generator=gen, dtype=torch.float64))
    ref = torch.zeros(4, 4, dtype=torch.float64)
    for a in range(4):
        for b in range(4):
            per_dim = (
                torch.log(sigma[b] / sigma[a]) + (sigma[a] ** 2 + (mu[a] - mu[b]) ** 2) / (2 * sigma[b] ** 2) - 0.5
            )
            ref[a, b] = per_dim.mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = losses.pairwise_gaussian_kl(mu.float(), sigma.float())
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), ref, rtol=1e-4, atol=1e-8)
    assert (got.diagonal() == 0).all()


def test_gaussian_kl_gradient_survives_near_zero_values():
    # Nearly identical distributions: the expanded form rounded to <= 0 and clamp(min=0) cut the gradient.
    mu = torch.tensor([[20.0, -20.0], [20.001, -20.0]], requires_grad=True)
    sigma = torch.full((2, 2), 0.05)
    losses.pairwise_gaussian_kl(mu, sigma)[0, 1].backward()
    # d/dmu_A of (mu_A - mu_B)^2 / (2 s^2) / d = (mu_A - mu_B) / s^2 / 2 = -0.001 / 0.0025 / 2 = -0.2
    assert mu.grad[0, 0].item() == pytest.approx(-0.2, rel=1e-2)


def test_lowrank_and_row_scale_distances_match_explicit_prefixes():
    gen = torch.Generator().manual_seed(2)
    codes, weight = torch.randn(3, 2, 4, generator=gen), torch.randn(5, 6, 4, generator=gen)
    full = torch.einsum("bmr,lkr->blmk", codes, weight).reshape(3, 5, -1)  # x_A^l = codes_A W_l^T row by row
    assert torch.allclose(
        losses.pairwise_lowrank_sq_distance(codes, weight, "mean"), losses.pairwise_sq_distance(full, "mean"), atol=1e-4
    )
    static, scales = torch.randn(5, 2, 3, 4, generator=gen), torch.randn(3, 3, generator=gen)  # (L, 2, m, kv)
    prefixes = static.unsqueeze(0) * (1 + scales.view(3, 1, 1, 3, 1))
    explicit = losses.pairwise_sq_distance(prefixes.reshape(3, 5, -1), "mean")
    row_sq = static.pow(2).sum((1, 3))
    got = losses.pairwise_row_scale_sq_distance(scales, row_sq, "mean", 2 * 3 * 4)
    assert torch.allclose(got, explicit, atol=1e-4)
