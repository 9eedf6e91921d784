"""Issue 15's PCM question: method.pcm_mu_scale (eq. 10 read as softmax(alpha mu + sigma eps)) on hand-set values,
its neutral value, the gradient it sends to the auxiliary classifier, and the PCM-spread terms DCPC logs."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import build_tiny
from helpers_models import batches, sentiment_setup
from prefalign.errors import ConfigError
from prefalign.methods.dcpc import DCPCConfig, DCPCModel
from prefalign.methods.dcpc.pcm import PreferenceCorrection
from prefalign.models.introspect import ModelGeometry

GEO = ModelGeometry(
    "llama", True, num_layers=2, hidden_size=4, num_attention_heads=2, num_key_value_heads=1, head_dim=3
)
STATIC = torch.arange(2 * 2 * 2 * 3, dtype=torch.float32).view(2, 2, 2, 3)  # (L, 2, m, kv)


def hand_set(alpha: float) -> PreferenceCorrection:
    pcm = PreferenceCorrection(GEO, DCPCConfig(prefix_length=2, pcm_aux_rank=2, pcm_mu_scale=alpha))
    with torch.no_grad():
        pcm.aux[2].weight.zero_()
        # raw mu = (0, ln 2 / 2, 0, ln 4 / 2) whatever the input; sigma = softplus(0) + 1e-4
        pcm.aux[2].bias.copy_(torch.tensor([0.0, math.log(2) / 2, 0.0, math.log(4) / 2, 0.0, 0.0, 0.0, 0.0]))
        pcm.meta.copy_(torch.tensor([[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 0.5, 0.5]]))
    return pcm


def test_mu_scale_two_gives_the_hand_computed_p_pref_and_row_scales():
    out = hand_set(2.0)(torch.randn(1, 4), STATIC, sample=False, add_static=True)
    # alpha mu = (0, ln 2, 0, ln 4) -> p_pref = (1, 2, 1, 4) / 8; s = M p = (1/8 - 1/8 + 8/8, 0.5) = (1, 0.5)
    assert out.mu[0].tolist() == pytest.approx([0.0, math.log(2), 0.0, math.log(4)], abs=1e-6)
    assert out.p_pref[0].tolist() == pytest.approx([1 / 8, 2 / 8, 1 / 8, 4 / 8], abs=1e-6)
    assert out.scales[0].tolist() == pytest.approx([1.0, 0.5], abs=1e-6)
    assert torch.allclose(
        out.delta[0, :, :, 0], STATIC[:, :, 0] * 2.0, atol=1e-5
    )  # the whole prefix: row 0 times 1 + s_0


def test_mu_scale_leaves_the_sampling_noise_at_sigmas_scale():
    pcm, e = hand_set(2.0), torch.randn(1, 4)
    torch.manual_seed(3)
    out = pcm(e, STATIC, sample=True)
    torch.manual_seed(3)
    eps = torch.randn(1, 4)
    sigma = math.log(2) + 1e-4
    logits = torch.tensor([[0.0, math.log(2), 0.0, math.log(4)]]) + sigma * eps  # alpha scales mu, not the noise
    assert torch.allclose(out.p_pref, torch.softmax(logits, -1), atol=1e-6)


@pytest.mark.parametrize("sample", [False, True])
def test_mu_scale_one_is_the_paper_as_written_bit_for_bit(sample):
    torch.manual_seed(0)
    pcm = PreferenceCorrection(GEO, DCPCConfig(prefix_length=2, pcm_aux_rank=2))
    with torch.no_grad():
        pcm.meta.normal_()
    e = torch.randn(5, 4)
    torch.manual_seed(1)
    out = pcm(e, STATIC, sample=sample, add_static=True)
    # Eq. 9-11 recomputed without the module's forward.
    mu, raw_sigma = pcm.aux(e).chunk(2, dim=-1)
    sigma = torch.nn.functional.softplus(raw_sigma) + 1e-4
    torch.manual_seed(1)
    p = torch.softmax(mu + sigma * torch.randn_like(mu) if sample else mu, dim=-1)
    s = p @ pcm.meta.T
    assert torch.equal(out.p_pref, p) and torch.equal(out.scales, s)
    assert torch.equal(out.delta, STATIC.unsqueeze(0) * s.view(5, 1, 1, 2, 1) + STATIC.unsqueeze(0))


def test_mu_scale_multiplies_the_gradient_that_reaches_the_auxiliary_classifier():
    e = torch.randn(3, 4)
    grads = {}
    for alpha in (1.0, 10.0):
        torch.manual_seed(0)
        pcm = PreferenceCorrection(GEO, DCPCConfig(prefix_length=2, pcm_aux_rank=2, pcm_mu_scale=alpha))
        with torch.no_grad():
            pcm.meta.normal_()
            pcm.aux[2].weight.zero_()  # mu = bias part = 0 at both alphas: the same p_pref, the same upstream gradient
        out = pcm(e, STATIC, sample=False)
        out.scales.pow(2).sum().backward()
        grads[alpha] = pcm.aux[2].weight.grad[:4].clone()
        assert pcm.meta.grad is not None and pcm.meta.grad.abs().sum() > 0
    assert grads[1.0].abs().sum() > 0
    assert torch.allclose(grads[10.0], 10.0 * grads[1.0], rtol=1e-5, atol=1e-9)


def test_negative_mu_scale_is_refused_with_the_option_named():
    with pytest.raises(ConfigError, match="pcm_mu_scale"):
        DCPCConfig(pcm_mu_scale=-1.0).validate()


@pytest.fixture
def tiny_bert(vocab_file):
    return build_tiny("bert", vocab_file)


def test_dcpc_logs_the_pcm_spread_recomputed_from_its_outputs(tiny_bert):
    torch.manual_seed(0)
    ds, spec, collator = sentiment_setup(tiny_bert, n=8)
    model = DCPCModel(tiny_bert.model, tiny_bert.tokenizer, tiny_bert.geometry, spec, DCPCConfig(pcm_mu_scale=50.0))
    with torch.no_grad():
        model.pcm.meta.normal_()
    model.eval()
    batch = batches(ds, collator)[0]
    with torch.no_grad():
        out = model(**batch)
        _, pcm_out = model._prefix_for(batch["input_ids"], batch["attention_mask"], sample=False)
    d = tiny_bert.geometry.hidden_size
    assert out.terms["pcm_p_spread"].item() == pytest.approx(float(pcm_out.p_pref.std(0).mean() * d), rel=1e-5)
    assert out.terms["pcm_scale_spread"].item() == pytest.approx(float(pcm_out.scales.std(0).mean()), rel=1e-5)
    assert out.terms["pcm_p_spread"].item() > 0


def test_the_pcm_spread_is_zero_when_every_example_is_the_same(tiny_bert):
    torch.manual_seed(0)
    ds, spec, collator = sentiment_setup(tiny_bert, n=8)
    model = DCPCModel(tiny_bert.model, tiny_bert.tokenizer, tiny_bert.geometry, spec, DCPCConfig(pcm_mu_scale=50.0))
    model.eval()
    batch = batches(ds, collator)[0]
    same = {k: v[:1].expand(4, *v.shape[1:]).contiguous() if torch.is_tensor(v) else v for k, v in batch.items()}
    with torch.no_grad():
        out = model(**same)
    assert out.terms["pcm_p_spread"].item() == 0.0 and out.terms["pcm_scale_spread"].item() == 0.0
