"""The batched paths the speed benchmark relies on compute what the plain ones did.

pool_layers (the masked mean as one matmul per layer) equals masked_mean; the prefix cache's
unbind gives the same gradient as per-layer indexing; DCPC inference without targets skips the
per-layer pooled states and returns the same logits as a forward that computes them.
"""

from __future__ import annotations

import pytest
import torch

from helpers_models import sentiment_setup
from prefalign.methods import build_method, method_config
from prefalign.models import classifier as classifier_mod
from prefalign.models.classifier import masked_mean, pool_layers
from prefalign.models.introspect import ModelGeometry
from prefalign.models.prefix import build_prefix_cache


@pytest.mark.parametrize("start", [0, 2])
def test_pool_layers_equals_a_masked_mean_per_layer(start):
    torch.manual_seed(0)
    hidden = tuple(torch.randn(3, 5 + start, 4) for _ in range(4))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    expected = torch.stack([masked_mean(h[:, start:], mask) for h in hidden], dim=1)
    assert torch.allclose(pool_layers(hidden, mask, start), expected, atol=1e-6)
    assert pool_layers(hidden, mask, start).shape == (3, 4, 4)


def test_prefix_cache_gradient_equals_per_layer_indexing():
    """Each layer's keys and values get exactly their own rows of the prefix gradient."""
    geo = ModelGeometry(
        model_type="llama",
        num_layers=3,
        hidden_size=8,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=4,
        is_decoder=True,
    )
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=8, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=4)
    torch.manual_seed(0)
    prefix = torch.randn(2, 3, 2, 5, 8, requires_grad=True)
    weights = torch.randn(3, 2, 2, 2, 5, 4)  # (layer, key/value, B, kv_heads, m, head_dim)
    cache = build_prefix_cache(prefix, geo, config)
    loss = sum(
        (cache.layers[i].keys * weights[i, 0]).sum() + (cache.layers[i].values * weights[i, 1]).sum() for i in range(3)
    )
    (grad,) = torch.autograd.grad(loss, prefix)
    # d loss / d prefix[b, l, c, j, h*hd + e] = weights[l, c, b, h, j, e]
    expected = weights.permute(2, 0, 1, 4, 3, 5).reshape(2, 3, 2, 5, 8)
    assert torch.equal(grad, expected)


def test_dcpc_inference_skips_layer_pooling_and_keeps_logits(tiny_bert, monkeypatch):
    ds, spec, collator = sentiment_setup(tiny_bert, n=8)
    model = build_method(method_config("dcpc", {"prefix_length": 3}), tiny_bert, spec).eval()
    batch = collator(ds.examples)
    calls = []
    real = classifier_mod.pool_layers
    monkeypatch.setattr(classifier_mod, "pool_layers", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        with_targets = model(**batch)
        assert calls == [1] and with_targets.loss is not None
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "target_dist")}
        without = model(**inputs)
    assert calls == [1]  # no pooling of every layer when no loss is asked for
    assert without.loss is None
    assert torch.allclose(without.logits, with_targets.logits, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_lowrank_distance_equals_the_distance_of_the_materialised_rows(reduction):
    from prefalign.methods.dcpc import losses

    torch.manual_seed(0)
    codes = torch.randn(4, 3, 2, requires_grad=True)  # (B, m, r)
    weight = torch.randn(5, 6, 2, requires_grad=True)  # (L, k, r)
    bias = torch.randn(5, 6)
    rows = torch.einsum("bmr,lkr->blmk", codes, weight) + bias[None, :, None]  # (B, L, m, k)
    explicit = losses.pairwise_sq_distance(rows.reshape(4, 5, -1), reduction)
    lowrank = losses.pairwise_lowrank_sq_distance(codes, weight, reduction)
    assert torch.allclose(lowrank, explicit, atol=1e-4, rtol=1e-5)
    g_explicit = torch.autograd.grad((explicit * torch.arange(16.0).view(4, 4)).sum(), (codes, weight))
    g_lowrank = torch.autograd.grad((lowrank * torch.arange(16.0).view(4, 4)).sum(), (codes, weight))
    for a, b in zip(g_lowrank, g_explicit):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("mode", ["elementwise", "gate"])
def test_pcm_delta_distance_matches_its_deltas(tiny_bert, mode):
    """The PCM's code / row-scale path equals the distance of the deltas it puts in the prefixes."""
    from prefalign.methods.dcpc import losses

    _, spec, _ = sentiment_setup(tiny_bert, n=8)
    model = build_method(method_config("dcpc", {"prefix_length": 3, "pcm_mode": mode}), tiny_bert, spec)
    with torch.no_grad():
        if mode == "elementwise":
            torch.nn.init.normal_(model.pcm.proj[1].weight)  # zero at the start: make the deltas differ
            torch.nn.init.normal_(model.pcm.proj[1].bias)
        else:
            torch.nn.init.normal_(model.pcm.meta)
            torch.nn.init.normal_(model.pcm.aux[2].weight)
    out = model.pcm(torch.randn(5, tiny_bert.geometry.hidden_size), model.prefix(), sample=False)
    fast = model.pcm.pairwise_delta_distance(out, model.prefix(), "mean")
    by_hand = losses.pairwise_sq_distance(out.delta.reshape(5, tiny_bert.geometry.num_layers, -1), "mean")
    assert torch.allclose(fast, by_hand, atol=1e-5, rtol=1e-4) and by_hand[0, 1] > 0


def _old_prefix_path_logits(model, batch):
    """DCPC's forward as it was before the PCM returned whole prefixes: the delta, then static + delta."""
    from prefalign.models.classifier import masked_mean as mean

    static = model.prefix()
    words = model.classifier.model.get_input_embeddings()(batch["input_ids"])
    e_in = mean(words.float(), batch["attention_mask"])
    out = model.pcm(e_in, static, sample=model.training)
    prefix = static.unsqueeze(0) + out.delta
    return model.classifier(batch["input_ids"], batch["attention_mask"], prefix).logits


@pytest.mark.parametrize("kind", ["bert", "llama"])
@pytest.mark.parametrize("mode", ["gate", "elementwise"])
def test_dcpc_one_pass_prefix_gives_the_old_paths_logits(kind, mode, vocab_file):
    """The PCM writes each example's prefix once (addcmul in 'gate' mode, an in-place add without autograd in
    'elementwise' mode): eval logits are bit-identical to the old delta-then-sum path, training logits too."""
    from conftest import build_tiny

    lm = build_tiny(kind, vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=8)
    torch.manual_seed(0)
    model = build_method(method_config("dcpc", {"prefix_length": 4, "pcm_mode": mode}), lm, spec)
    with torch.no_grad():  # start away from the identity so the PCM's change is not zero
        for p in model.pcm.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    batch = collator(ds.examples)
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "target_dist")}
    model.eval()
    with torch.no_grad():
        new, old = model(**inputs).logits, _old_prefix_path_logits(model, inputs)
        # the gate PCM at inference: no (B, L, 2, m, kv) tensor, the rows go straight into the cache
        static, out = model._prefix_for(inputs["input_ids"], inputs["attention_mask"], sample=False, rows=True)
        assert (static.dim(), out.delta is None) == ((4, True) if mode == "gate" else (5, False))
        static = model.prefix()
        assert not torch.equal(
            model._prefix_for(inputs["input_ids"], inputs["attention_mask"], sample=False)[0][0], static
        )
    assert torch.equal(new, old)
    model.train()
    model.classifier.head_dropout = 0.0
    for seed in (1, 2):
        torch.manual_seed(seed)
        new = model.classifier(
            inputs["input_ids"],
            inputs["attention_mask"],
            model._prefix_for(inputs["input_ids"], inputs["attention_mask"], sample=True)[0],
        ).logits
        torch.manual_seed(seed)
        old = _old_prefix_path_logits(model, inputs)
        assert torch.equal(new, old)
