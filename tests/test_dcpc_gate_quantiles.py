"""benchmarks/dcpc_gate_quantiles.py: the recorder keeps exactly the pairs the tau_ambiguity gate scores, and the
summary's quantiles and pass shares are those of the recorded values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import load_benchmark
from prefalign.methods.dcpc import losses

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    module = load_benchmark("dcpc_gate_quantiles")
    return module


def test_the_recorder_keeps_cos_times_kl_of_the_cosine_gated_training_pairs(bench):
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [0.0, 1.0]])
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.6, 0.4]])
    orig = (losses.pairwise_cosine, losses.pairwise_disagreement)
    with bench.GateRecorder(tau_cos=0.9) as rec:
        cos = losses.pairwise_cosine(emb)  # raw cosines: only rows 0 and 1 (cos 0.995) pass 0.9
        losses.pairwise_disagreement(probs, "kl")
        with torch.no_grad():  # evaluation: not recorded
            losses.pairwise_cosine(emb)
            losses.pairwise_disagreement(probs, "kl")
    assert (losses.pairwise_cosine, losses.pairwise_disagreement) == orig
    assert len(rec.steps) == 1
    c = float(cos[0, 1])
    assert c == pytest.approx(1 / math.sqrt(1.01))
    kl_01 = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    kl_10 = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert rec.steps[0]["kl"].tolist() == pytest.approx([c * kl_01, c * kl_10], rel=1e-5)
    ce_01 = -(0.9 * math.log(0.5) + 0.1 * math.log(0.5))
    assert rec.steps[0]["cross_entropy"][0].item() == pytest.approx(c * ce_01, rel=1e-5)
    assert int(rec.steps[0]["pairs"]) == 12


def test_the_summary_counts_quantiles_and_pass_shares(bench):
    values = torch.tensor([0.0, 0.02, 0.05, 0.2])
    steps = [{"pairs": torch.tensor(10), "kl": values, "js": values / 10, "cross_entropy": values + 0.5}]
    out = bench.summarise(steps)
    assert out["pairs"] == 10 and out["kl"]["cos_gated_pairs"] == 4 and out["kl"]["cos_gate_rate"] == 0.4
    assert out["kl"]["quantiles"]["0.5"] == pytest.approx(0.035)
    assert out["kl"]["max"] == pytest.approx(0.2)
    assert out["kl"]["pass_share_of_cos_gated"]["0.01"] == 0.75  # 0.02, 0.05, 0.2
    assert out["kl"]["pass_share_of_cos_gated"]["0.1"] == 0.25
    assert out["kl"]["pass_rate_of_all_pairs"]["0.03"] == pytest.approx(0.2)
    assert out["cross_entropy"]["pass_share_of_cos_gated"]["0.3"] == 1.0


def test_the_recorder_keeps_the_pair_terms_on_the_cosine_gated_pairs_and_summarises_them(bench):
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [0.0, 1.0]])
    states = torch.tensor([[[0.0, 0.0]], [[3.0, 4.0]], [[1.0, 1.0]], [[2.0, 2.0]]])  # (B, L=1, d=2)
    mu, sigma = torch.zeros(4, 2), torch.ones(4, 2)
    with bench.GateRecorder(tau_cos=0.9) as rec:
        losses.pairwise_cosine(emb)
        losses.pairwise_disagreement(torch.full((4, 2), 0.5), "kl")
        losses.pairwise_alignment(states, None, reduction="sum")
        losses.pairwise_gaussian_kl(mu, sigma)
    # the gated pairs are (0, 1) and (1, 0): squared distance 25 each; identical Gaussians: KL 0
    assert rec.terms == [{"align_token_half": pytest.approx(25.0), "kl_gaussian": pytest.approx(0.0)}]
    out = bench.summarise_terms(rec.terms + [{"align_token_half": 15.0, "kl_gaussian": None}])
    assert out["align_token_half"] == {"steps": 2, "mean": pytest.approx(20.0), "max": pytest.approx(25.0)}
    assert out["kl_gaussian"]["steps"] == 1 and out["align_prefix_half"] == {"steps": 0, "mean": None, "max": None}


def test_the_pcm_spread_is_the_std_across_the_batch_and_the_distance_from_uniform(bench):
    from types import SimpleNamespace

    out = SimpleNamespace(
        p_pref=torch.tensor([[0.5, 0.5], [0.7, 0.3]]),
        scales=torch.tensor([[1.0, -2.0], [3.0, -2.0]]),
        mu=torch.tensor([[0.0, 1.0], [2.0, 1.0]]),
        sigma=torch.tensor([[0.1, 0.3], [0.1, 0.3]]),
    )
    pcm = SimpleNamespace(
        meta=torch.tensor([[1.0, 3.0], [2.0, 2.0]]),
        aux=[None, None, SimpleNamespace(weight=torch.tensor([[1.0, 1.0], [3.0, 3.0], [9.0, 9.0], [9.0, 9.0]]))],
    )
    spread = bench.pcm_spread(out, pcm)
    # Issue 15's PCM question: mu's size, its spread across the batch (col 0: 0, 2; col 1: 1, 1) and within an
    # example, sigma, the noise-free softmax's spread (x d), and the meta-matrix's columns.
    assert spread["mu_abs_mean"] == pytest.approx(1.0)
    assert spread["mu_std_across_batch"] == pytest.approx(math.sqrt(2.0) / 2)
    assert spread["mu_std_within_example"] == pytest.approx(math.sqrt(0.5))
    assert spread["sigma_mean"] == pytest.approx(0.2)
    a = 1 / (1 + math.e)  # softmax(0, 1)[0]; softmax(2, 1)[0] = 1 - a
    assert spread["p_mu_std_across_batch_times_d"] == pytest.approx(2 * (1 - 2 * a) / math.sqrt(2.0))
    assert spread["meta_abs_mean"] == pytest.approx(2.0)
    assert spread["meta_column_std"] == pytest.approx(math.sqrt(2.0) / 2)
    assert spread["aux_out_weight_std"] == pytest.approx(math.sqrt(4 / 3))  # the mu rows only: 1, 1, 3, 3
    sd = math.sqrt(0.02)  # std (n - 1) of 0.5, 0.7 and of 0.5, 0.3
    assert spread["p_pref_std_across_batch"] == pytest.approx(sd)
    assert spread["p_pref_max_abs_minus_uniform"] == pytest.approx(0.2)
    assert spread["scale_std_across_batch"] == pytest.approx((math.sqrt(2.0) + 0.0) / 2)
    assert spread["scale_abs_mean"] == pytest.approx(2.0)
    summary = bench.summarise_pcm([spread, {**spread, "scale_abs_mean": 4.0}])
    assert summary["scale_abs_mean"] == {"mean": pytest.approx(3.0), "max": pytest.approx(4.0)}


def test_the_recorder_reads_the_gated_kl_from_the_full_matrix_and_returns_the_gated_loss(bench):
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [0.0, 1.0]])
    mu = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0], [9.0, 9.0]])
    sigma = torch.ones(4, 2)
    gate = torch.zeros(4, 4, dtype=torch.bool)
    gate[2, 3] = True  # the loss's own gate differs from the recorder's cosine gate
    with bench.GateRecorder(tau_cos=0.9) as rec:
        losses.pairwise_cosine(emb)
        loss = losses.gated_gaussian_kl(mu, sigma, gate)
    # cosine-gated pairs (0, 1), (1, 0): KL = (2^2 / 2) / 2 dims = 1 each;
    # the loss is pair (2, 3) alone: (4^2 / 2 + 4^2 / 2) / 2 dims = 8
    assert rec.terms == [{"kl_gaussian": pytest.approx(1.0)}]
    assert loss.item() == pytest.approx(8.0)
    assert losses.gated_gaussian_kl is rec._orig_gated_kl  # restored on exit
