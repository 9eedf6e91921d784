"""Issue 15's PCM readings: method.pcm_gate_input (eq. 11 on p_pref or on d p_pref - 1) and method.pcm_input_norm
(eq. 9's pooled embedding standardised), on hand-set values, their gradients, and the inference path."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import build_tiny
from helpers_models import batches, sentiment_setup
from prefalign.errors import ConfigError
from prefalign.methods.dcpc import DCPCConfig, DCPCModel
from prefalign.methods.dcpc.pcm import PreferenceCorrection, pcm_parameter_count
from prefalign.models.introspect import ModelGeometry

GEO = ModelGeometry(
    "llama", True, num_layers=2, hidden_size=4, num_attention_heads=2, num_key_value_heads=1, head_dim=3
)
STATIC = torch.arange(2 * 2 * 2 * 3, dtype=torch.float32).view(2, 2, 2, 3)  # (L, 2, m, kv)
META = [[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 0.5, 0.5]]
MU = (0.0, math.log(2), 0.0, math.log(4))  # p_pref = (1, 2, 1, 4) / 8


def pcm_with(gate_input: str, *, input_norm: bool = False, mu=MU):
    cfg = DCPCConfig(prefix_length=2, pcm_aux_rank=2, pcm_gate_input=gate_input, pcm_input_norm=input_norm)
    pcm = PreferenceCorrection(GEO, cfg)
    with torch.no_grad():
        pcm.aux[2].weight.zero_()  # mu = the bias whatever the input
        pcm.aux[2].bias.copy_(torch.tensor([*mu, 0.0, 0.0, 0.0, 0.0]))
        pcm.meta.copy_(torch.tensor(META))
    return pcm


def test_centred_gate_input_gives_the_hand_computed_row_scales():
    out = pcm_with("centred")(torch.randn(1, 4), STATIC, sample=False, add_static=True)
    # p_pref = (1, 2, 1, 4) / 8, d = 4 -> d p - 1 = (-0.5, 0, -0.5, 1)
    # s_0 = -0.5 + 0 + 0.5 + 2 = 2 ; s_1 = 0.5 * (-0.5 + 0 - 0.5 + 1) = 0
    assert out.scales[0].tolist() == pytest.approx([2.0, 0.0], abs=1e-6)
    assert torch.allclose(out.delta[0, :, :, 0], STATIC[:, :, 0] * 3.0, atol=1e-5)  # row 0 times 1 + s_0
    assert torch.allclose(out.delta[0, :, :, 1], STATIC[:, :, 1], atol=1e-6)  # row 1 unchanged


def test_uniform_p_pref_gives_no_change_when_centred_and_m_over_d_as_written():
    uniform = (0.7, 0.7, 0.7, 0.7)
    centred = pcm_with("centred", mu=uniform)(torch.randn(2, 4), STATIC, sample=False)
    literal = pcm_with("probability", mu=uniform)(torch.randn(2, 4), STATIC, sample=False)
    assert torch.allclose(centred.scales, torch.zeros(2, 2), atol=1e-6)
    assert literal.scales[0].tolist() == pytest.approx([sum(row) / 4 for row in META], abs=1e-6)


def test_centred_gate_input_sends_the_meta_matrix_a_gradient_that_differs_across_its_columns():
    # M = 0 (DCPC's start): the literal eq. 11 gives M a gradient g_s p^T, nearly the same in every column when p is
    # near uniform; the centred one gives g_s (d p - 1)^T, which is the input's own part of p.
    torch.manual_seed(0)
    e = torch.randn(6, 4)
    grads = {}
    for gate_input in ("probability", "centred"):
        torch.manual_seed(1)
        pcm = PreferenceCorrection(GEO, DCPCConfig(prefix_length=2, pcm_aux_rank=2, pcm_gate_input=gate_input))
        out = pcm(e, STATIC, sample=False)
        assert torch.equal(out.scales, torch.zeros(6, 2))  # M starts at zero: DCPC starts as P-Tuning v2
        target = torch.linspace(-1, 1, 12).view(6, 2)
        (out.scales - target).pow(2).sum().backward()
        g = pcm.meta.grad
        p = out.p_pref.detach()
        expected = -2 * target.T @ ((4 * p - 1) if gate_input == "centred" else p)  # d/dM of sum (M x - t)^2 at M = 0
        assert torch.allclose(g, expected, atol=1e-6)
        grads[gate_input] = g
    spread = {k: float((g - g.mean(1, keepdim=True)).abs().mean() / g.abs().mean()) for k, g in grads.items()}
    assert spread["centred"] > 10 * spread["probability"]


def test_input_norm_standardises_the_auxiliary_classifiers_input():
    torch.manual_seed(0)
    cfg = DCPCConfig(prefix_length=2, pcm_aux_rank=2, pcm_input_norm=True)
    pcm = PreferenceCorrection(GEO, cfg)
    e = torch.randn(3, 4) * 0.5 + 0.3
    out = pcm(e, STATIC, sample=False)
    standard = (e - e.mean(-1, keepdim=True)) / torch.sqrt(e.var(-1, unbiased=False, keepdim=True) + 1e-5)
    mu = pcm.aux(standard).chunk(2, dim=-1)[0]
    assert torch.allclose(out.mu, mu, atol=1e-5)
    # a shift and a rescaling of the pooled embedding leave mu as it is
    assert torch.allclose(pcm(e * 7.0 + 2.0, STATIC, sample=False).mu, out.mu, atol=1e-4)
    raw = PreferenceCorrection(GEO, DCPCConfig(prefix_length=2, pcm_aux_rank=2))
    raw.load_state_dict(pcm.state_dict())  # the same weights, the embedding as pooled
    assert torch.allclose(raw(e, STATIC, sample=False).mu, pcm.aux(e).chunk(2, dim=-1)[0])
    assert not torch.allclose(raw(e, STATIC, sample=False).mu, out.mu, atol=1e-4)


def test_the_readings_add_no_parameters():
    base = DCPCConfig(prefix_length=16)
    both = DCPCConfig(prefix_length=16, pcm_gate_input="centred", pcm_input_norm=True)
    assert pcm_parameter_count(GEO, base) == pcm_parameter_count(GEO, both)
    counted = sum(p.numel() for p in PreferenceCorrection(GEO, both).parameters())
    assert counted == pcm_parameter_count(GEO, both)


def test_an_unknown_gate_input_is_refused_with_the_choices_named():
    with pytest.raises(ConfigError, match="pcm_gate_input"):
        DCPCConfig(pcm_gate_input="uniform").validate()


@pytest.fixture
def tiny_bert(vocab_file):
    return build_tiny("bert", vocab_file)


@pytest.mark.parametrize("input_norm", [False, True])
def test_inference_writes_the_same_centred_rows_as_the_materialised_prefix(tiny_bert, input_norm):
    # Without autograd the gate PCM's rows go straight into the attention cache (prefix_scale); with autograd the
    # prefix is materialised. Both must give the same logits under the centred reading.
    torch.manual_seed(0)
    ds, spec, collator = sentiment_setup(tiny_bert, n=8)
    cfg = DCPCConfig(pcm_gate_input="centred", pcm_input_norm=input_norm, pcm_mu_scale=50.0)
    model = DCPCModel(tiny_bert.model, tiny_bert.tokenizer, tiny_bert.geometry, spec, cfg)
    with torch.no_grad():
        model.pcm.meta.normal_()
    model.eval()
    batch = {k: v for k, v in batches(ds, collator)[0].items() if k != "labels"}
    with torch.no_grad():
        fast = model(**batch).logits
    materialised = model(**batch).logits.detach()
    assert torch.allclose(fast, materialised, atol=1e-5)
    _, pcm_out = model._prefix_for(batch["input_ids"], batch["attention_mask"], sample=False)
    assert float(pcm_out.scales.detach().std(0).mean()) > 0  # each review its own rows


@pytest.mark.parametrize("bias", [-2.0, -5.0])
def test_sigma_bias_sets_eq_10s_starting_noise_scale(bias):
    torch.manual_seed(0)
    pcm = PreferenceCorrection(GEO, DCPCConfig(prefix_length=2, pcm_aux_rank=2, pcm_sigma_bias=bias))
    with torch.no_grad():
        pcm.aux[2].weight.zero_()
    out = pcm(torch.randn(3, 4), STATIC, sample=False)
    assert torch.allclose(out.sigma, torch.full((3, 4), math.log1p(math.exp(bias)) + 1e-4), atol=1e-6)


def test_a_sigma_bias_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="pcm_sigma_bias"):
        DCPCConfig(pcm_sigma_bias=50.0).validate()
