"""DCPC as issue 15 fixed it, tested at model level: what L_align trains, the tau_ambiguity gate on a
pair in and a pair out, eq. 13 recomputed from the model's outputs, small batches, and the PCM's size."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pytest
import torch

from conftest import build_tiny
from helpers_models import batches, sentiment_setup
from prefalign.compare.config import load_compare_config
from prefalign.methods.base import soft_cross_entropy
from prefalign.methods.dcpc import DCPCConfig, DCPCModel
from prefalign.methods.dcpc.pcm import (
    PreferenceCorrection,
    matching_prefix_length,
    pcm_parameter_count,
    prefix_parameter_count,
)
from prefalign.models.classifier import masked_mean
from prefalign.models.introspect import ModelGeometry

OPEN = dict(tau_cos=0.0, tau_ambiguity=0.0, similarity_center=False, gate_divergence="cross_entropy")


@pytest.fixture(params=["bert", "llama"])
def backbone(request, vocab_file):
    return build_tiny(request.param, vocab_file)


def make_model(lm, config: DCPCConfig, n: int = 8):
    ds, spec, collator = sentiment_setup(lm, n=n)
    torch.manual_seed(0)
    return DCPCModel(lm.model, lm.tokenizer, lm.geometry, spec, config), batches(ds, collator)[0]


def perturb_pcm(model, std: float = 0.5) -> None:
    """A PCM away from its identity start, so the prefix half of eq. 7 is not zero."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.pcm.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen))


# --------------------------------------------------------------------------------------------
# Finding 1: L_align's gradient reaches the PCM and nothing else (eq. 27)
# --------------------------------------------------------------------------------------------
def align_gradients(model, batch) -> dict[str, torch.Tensor | None]:
    """Gradient of lambda2 * L_align alone: the total minus the task loss recomputed from the logits
    (ambiguity off, lambda3 = 0, so nothing else is in the total)."""
    model.eval()  # no sampling, no dropout
    out = model(**batch)
    target = batch["target_dist"] if batch.get("target_dist") is not None else None
    if target is None:
        target = torch.nn.functional.one_hot(batch["labels"], model.task.num_classes).float()
    align_only = out.loss - soft_cross_entropy(out.logits, target)
    assert align_only.item() > 0
    params = model.trainable_parameters()
    grads = torch.autograd.grad(align_only, list(params.values()), allow_unused=True)
    return dict(zip(params, grads))


def nonzero(g) -> bool:
    return g is not None and torch.count_nonzero(g).item() > 0


@pytest.mark.parametrize("mode", ["gate", "elementwise"])
def test_align_gradient_reaches_the_pcm_and_nothing_else(backbone, mode):
    cfg = DCPCConfig(pcm_mode=mode, use_ambiguity=False, lambda_kl=0.0, lambda_align=1.0, **OPEN)
    model, batch = make_model(backbone, cfg)
    perturb_pcm(model)
    grads = align_gradients(model, batch)
    assert [n for n, g in grads.items() if nonzero(g) and not n.startswith("pcm.")] == []
    reached = {n for n, g in grads.items() if nonzero(g)}
    assert "pcm.meta" in reached and any(n.startswith("pcm.aux.") for n in reached)


def test_the_old_token_gradient_is_an_option_that_warns_and_reaches_the_prefix(tiny_llama):
    cfg = DCPCConfig(use_ambiguity=False, lambda_kl=0.0, align_token_gradient=True, **OPEN)
    with pytest.warns(UserWarning, match="eq. 27"):
        model, batch = make_model(tiny_llama, cfg)
    grads = align_gradients(model, batch)
    assert nonzero(grads["prefix.kv"])


def test_without_the_pcm_clpa_sends_no_gradient_anywhere(backbone):
    # The documented consequence: the "w/o PCM" row is P-Tuning v2 plus the ambiguity loss.
    cfg = DCPCConfig(use_pcm=False, use_ambiguity=False, lambda_kl=0.0, lambda_align=1.0, **OPEN)
    model, batch = make_model(backbone, cfg)
    grads = align_gradients(model, batch)
    assert not any(nonzero(g) for g in grads.values())


def test_default_config_warns_about_nothing(tiny_bert):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_model(tiny_bert, DCPCConfig())


# --------------------------------------------------------------------------------------------
# Finding 2: the tau_ambiguity gate, one pair in and one pair out (objective on hand-made outputs)
# --------------------------------------------------------------------------------------------
def hand_outputs():
    """Three examples: 0 and 1 are alike (cos 0.8) and disagree; 0 and 2 are alike (cos 0.8) and agree;
    1 and 2 are less alike (cos 0.28). Two layers of pooled states for CLPA."""
    emb = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.8, -0.6, 0.0]])
    probs = torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.6, 0.4]])
    layers = torch.tensor(
        [
            [[1.0, 2.0, 3.0], [2.0, 0.0, 1.0]],
            [[3.0, 1.0, 2.0], [1.0, 1.0, 1.0]],
            [[1.0, 2.0, 2.0], [0.0, 2.0, 1.0]],
        ]
    )
    pooled = torch.cat([torch.zeros(3, 1, 3), layers], dim=1)  # index 0: embeddings, unused by CLPA
    return SimpleNamespace(logits=torch.log(probs), last_pooled=emb, pooled=pooled), probs, layers


def rms_dist(a: list[float], b: list[float]) -> float:
    """Mean squared difference of two RMS-normalised vectors."""
    ra = math.sqrt(sum(x * x for x in a) / len(a) + 1e-6)
    rb = math.sqrt(sum(x * x for x in b) / len(b) + 1e-6)
    return sum((x / ra - y / rb) ** 2 for x, y in zip(a, b)) / len(a)


def test_ambiguity_gate_lets_the_disagreeing_pair_in_and_the_agreeing_pair_out():
    cfg = DCPCConfig(tau_cos=0.5, similarity_center=False, use_pcm=False, lambda_align=1.0)
    model = SimpleNamespace(config=cfg, training=False, pcm=None)
    out, probs, layers = hand_outputs()
    _, terms = DCPCModel.objective(model, out, probs, None)
    # cos gate: (0,1), (1,0), (0,2), (2,0) pass 0.5; (1,2) at 0.28 does not -> 4 of 6 ordered pairs
    assert terms["gate_cos_rate"].item() == pytest.approx(4 / 6)
    # disagreement: 0.8 * KL([.6,.4] || [.1,.9]) = 0.8 * (0.6 ln 6 + 0.4 ln(4/9)) = 0.60 > 0.3 for (0,1),
    # 0.8 * KL([.1,.9] || [.6,.4]) = 0.8 * (0.1 ln(1/6) + 0.9 ln(9/4)) = 0.44 > 0.3 for (1,0);
    # (0,2) agree exactly: 0, where eq. 4's cross-entropy (the old gate) gives 0.8 * H(.6,.4) = 0.54 > 0.3
    assert terms["gate_ambiguity_rate"].item() == pytest.approx(2 / 6)
    expected = sum(rms_dist(layers[0, l].tolist(), layers[1, l].tolist()) for l in range(2)) / 2
    assert terms["loss_align"].item() == pytest.approx(expected, rel=1e-5)


def test_old_cross_entropy_gate_opens_on_agreeing_uncertain_pairs():
    cfg = DCPCConfig(tau_cos=0.5, similarity_center=False, use_pcm=False, use_alignment=False)
    emb = torch.tensor([[1.0, 0.0], [0.71, math.sqrt(1 - 0.71**2)]])
    out = SimpleNamespace(logits=torch.zeros(2, 2), last_pooled=emb, pooled=None)
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    for kind, rate in (("cross_entropy", 1.0), ("kl", 0.0), ("js", 0.0)):
        cfg.gate_divergence = kind
        _, terms = DCPCModel.objective(SimpleNamespace(config=cfg, training=False, pcm=None), out, target, None)
        assert terms["gate_ambiguity_rate"].item() == rate, kind  # 0.71 * ln 2 = 0.49 > 0.3 for eq. 4


# --------------------------------------------------------------------------------------------
# Finding 5: small per-device batches are handled (raw cosine), not gated shut
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3])
def test_small_batches_use_the_raw_cosine(n):
    cfg = DCPCConfig(tau_cos=0.5, use_pcm=False, use_alignment=False)  # similarity_center on (default)
    emb = torch.tensor([[1.0, 0.1], [1.0, 0.2], [1.0, 0.3]])[:n]  # raw cosines > 0.98
    out = SimpleNamespace(logits=torch.zeros(n, 2), last_pooled=emb, pooled=None)
    _, terms = DCPCModel.objective(
        SimpleNamespace(config=cfg, training=False, pcm=None), out, torch.eye(2)[[0] * n], None
    )
    assert terms["gate_cos_rate"].item() == 1.0


def test_four_rows_are_centred():
    cfg = DCPCConfig(tau_cos=0.5, use_pcm=False, use_alignment=False)
    emb = torch.tensor([[1.0, 0.1], [1.0, 0.2], [1.0, 0.3], [1.0, 0.4]])  # centred: two opposite pairs
    out = SimpleNamespace(logits=torch.zeros(4, 2), last_pooled=emb, pooled=None)
    _, terms = DCPCModel.objective(
        SimpleNamespace(config=cfg, training=False, pcm=None), out, torch.eye(2)[[0] * 4], None
    )
    # centred they lie on one line: (0,1), (2,3) and (1,0), (3,2) point the same way... every pair
    # on the same side of the mean has cos 1, across it -1: 0,1 | 2,3 -> 4 ordered pairs of 12
    assert terms["gate_cos_rate"].item() == pytest.approx(4 / 12)


# --------------------------------------------------------------------------------------------
# Eq. 13 recomputed from the model's outputs (not summed from the logged terms)
# --------------------------------------------------------------------------------------------
def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


@pytest.mark.parametrize("mode", ["gate", "elementwise"])
def test_eq_13_recomputed_independently(backbone, mode):
    l1, l2, l3 = 0.7, 0.5, 0.3
    cfg = DCPCConfig(pcm_mode=mode, lambda_ambiguity=l1, lambda_align=l2, lambda_kl=l3, tau_cos=0.0)
    cfg.similarity_center = False
    model, batch = make_model(backbone, cfg)
    perturb_pcm(model, 0.3)
    model.eval()
    with torch.no_grad():
        # The model's own pieces, read directly: the PCM on the pooled word embeddings, the prefixes, the backbone.
        static = model.prefix()
        words = model.classifier.model.get_input_embeddings()(batch["input_ids"])
        pcm = model.pcm(masked_mean(words.float(), batch["attention_mask"]), static, sample=False)
        prefix = static.unsqueeze(0) + pcm.delta
        out = model.classifier(
            batch["input_ids"],
            batch["attention_mask"],
            prefix,
            score_mask=batch.get("score_mask"),
            token_type_ids=batch.get("token_type_ids"),
            all_layers=True,
        )
    target = batch["target_dist"].double().tolist()
    probs = torch.softmax(out.logits.double(), -1).tolist()
    emb = out.last_pooled.double().tolist()
    layers = out.pooled[:, 1:].double()
    deltas = pcm.delta.double().flatten(2, -1).reshape(len(emb), static.shape[0], -1)  # (B, L, 2 m kv)
    mu, sigma = pcm.mu.double().tolist(), pcm.sigma.double().tolist()
    n = len(emb)
    cosines = [
        [
            sum(x * y for x, y in zip(emb[a], emb[b]))
            / math.sqrt(sum(x * x for x in emb[a]) * sum(y * y for y in emb[b]))
            for b in range(n)
        ]
        for a in range(n)
    ]
    # tau_ambiguity halfway through the widest gap between the middle pairs' disagreements: some pairs in, some
    # out, none so near the edge that float32 could decide differently
    values = sorted(cosines[a][b] * _kl(probs[a], probs[b]) for a in range(n) for b in range(n) if a != b)
    mid = len(values) // 4
    gap, i = max((values[j + 1] - values[j], j) for j in range(mid, 3 * mid))
    tau = (values[i] + values[i + 1]) / 2
    assert gap > 1e-3 * tau
    model.config.tau_ambiguity = tau
    with torch.no_grad():
        total = model(**batch).loss.item()
    task = sum(-sum(t * math.log(p) for t, p in zip(target[i], probs[i])) for i in range(n)) / n
    amb, align, kl_terms, gated = [], [], [], 0
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            cos = cosines[a][b]
            amb.append(cos * -sum(p * math.log(q) for p, q in zip(probs[a], probs[b])))  # cos gate: all pass
            if cos * _kl(probs[a], probs[b]) <= tau:
                continue
            gated += 1
            tok = sum(rms_dist(layers[a, l].tolist(), layers[b, l].tolist()) for l in range(layers.shape[1]))
            pre = ((deltas[a] - deltas[b]) ** 2).mean(-1).sum().item()
            align.append((tok + pre) / layers.shape[1])
            kl_terms.append(
                sum(
                    math.log(sb / sa) + (sa**2 + (ma - mb) ** 2) / (2 * sb**2) - 0.5
                    for ma, sa, mb, sb in zip(mu[a], sigma[a], mu[b], sigma[b])
                )
                / len(mu[a])
            )
    assert 0 < gated < n * (n - 1)  # some pairs in, some out
    expected = task + l1 * sum(amb) / len(amb) + l2 * sum(align) / gated + l3 * sum(kl_terms) / gated
    assert total == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------------------------
# Finding 4: the PCM's size, from a config-only geometry
# --------------------------------------------------------------------------------------------
LLAMA2_7B = ModelGeometry("llama", True, 32, 4096, 32, 32, 128)  # 32 layers, hidden 4096, 32 heads, 32 kv heads
SMOLLM2 = ModelGeometry("llama", True, 30, 576, 9, 3, 64)
MINILM = ModelGeometry("bert", False, 6, 384, 12, 12, 32)


def test_pcm_fits_the_papers_budget_at_llama2_7b():
    cfg = DCPCConfig()  # m = 16
    # gate: M (16 x 4096) + aux 4096 -> 8 -> 2 x 4096 = 65,536 + 32,776 + 73,728 = 172,040
    assert pcm_parameter_count(LLAMA2_7B, cfg) == 172_040 <= 200_000
    assert prefix_parameter_count(LLAMA2_7B, 16) == 4_194_304  # P-Tuning v2 at m = 16
    elementwise = DCPCConfig(pcm_mode="elementwise", pcm_aux_rank=16)  # the old default: 4.79M
    assert pcm_parameter_count(LLAMA2_7B, elementwise) == 4_792_336


@pytest.mark.parametrize("mode", ["gate", "elementwise"])
def test_pcm_parameter_count_matches_the_module(mode):
    geo = ModelGeometry("llama", True, 3, 24, 4, 2, 6)
    cfg = DCPCConfig(pcm_mode=mode, prefix_length=5)
    assert pcm_parameter_count(geo, cfg) == sum(p.numel() for p in PreferenceCorrection(geo, cfg).parameters())


def test_pcm_is_proportionally_smaller_on_our_backbones():
    cfg = DCPCConfig()
    at_7b = pcm_parameter_count(LLAMA2_7B, cfg)
    for geo in (SMOLLM2, MINILM):
        assert pcm_parameter_count(geo, cfg) < at_7b * geo.hidden_size / LLAMA2_7B.hidden_size * 1.01
    # SmolLM2: 16 x 576 + 576 x 8 + 8 + 8 x 1152 + 1152 = 24,200; MiniLM: 16,136
    assert pcm_parameter_count(SMOLLM2, cfg) == 24_200
    assert pcm_parameter_count(MINILM, cfg) == 16_136


def test_matching_prefix_length_gives_a_same_size_ptuning_v2_row():
    cfg = DCPCConfig()
    # SmolLM2: 11,520 per prefix token; 184,320 + 24,200 = 208,520 -> 18 tokens (207,360)
    assert matching_prefix_length(SMOLLM2, cfg) == 18
    # MiniLM: 4,608 per token; 73,728 + 16,136 = 89,864 -> 20 tokens (92,160)
    assert matching_prefix_length(MINILM, cfg) == 20
    assert matching_prefix_length(LLAMA2_7B, cfg) == 17


@pytest.mark.parametrize("name", ["issue15_minilm", "issue15_smollm2", "issue15_smollm2_gpu"])
def test_grid_configs_give_ptuning_v2_dcpcs_size(name):
    cfg = load_compare_config(f"configs/compare/{name}.yaml")
    geo = {"minilm": MINILM, "smollm2-135m": SMOLLM2}[cfg.models[0].name]
    rows = {m.label: m for m in cfg.methods}
    assert rows["P-Tuning v2 (DCPC's size)"].method["prefix_length"] == matching_prefix_length(geo, DCPCConfig())
    assert "prefix_length" not in (rows["P-Tuning v2"].method or {})
