"""Learned-Adapter (DCPC appendix A.1.2, bottleneck 36): one adapter per block whose place and activation
are mixed by trained softmax weights; only the adapters (and the head) train.

Start-as-frozen, parameter counts, hook stacking and round trips run with the other hand-written
baselines in tests/test_baselines_handwritten.py; the method contract in tests/test_method_contract.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from helpers_models import batches, clone_state, sentiment_setup, train_steps
from prefalign.errors import ConfigError
from prefalign.methods import registry
from prefalign.methods.baselines.hooks import find_layers
from prefalign.methods.baselines.learned_adapter import SearchedAdapter


def build(lm, **params):
    ds, spec, collator = sentiment_setup(lm, n=16)
    return registry.build_method(registry.method_config("learned-adapter", params), lm, spec), batches(ds, collator, 8)


def test_mixture_is_the_softmax_weighted_sum_computed_by_hand():
    torch.manual_seed(0)
    adapter = SearchedAdapter(3, 2, ("attention", "ffn"), ("relu", "gelu", "tanh", "swish", "identity"))
    with torch.no_grad():
        adapter.up.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]]))
        adapter.up.bias.copy_(torch.tensor([0.1, 0.0, -0.1]))
        adapter.activation_logits.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5, 2.0]))
        adapter.placement_logits.copy_(torch.tensor([math.log(3.0), 0.0]))  # weights 3/4 and 1/4
    x = torch.randn(4, 3)
    z = x @ adapter.down.weight.T + adapter.down.bias
    w = torch.softmax(torch.tensor([0.0, 1.0, -1.0, 0.5, 2.0]), 0)
    mixed = (
        w[0] * z.clamp(min=0)
        + w[1] * torch.nn.functional.gelu(z)
        + w[2] * torch.tanh(z)
        + w[3] * z * torch.sigmoid(z)
        + w[4] * z
    )
    delta = mixed @ adapter.up.weight.T + adapter.up.bias
    torch.testing.assert_close(adapter.on_attention(None, (), x), x + 0.75 * delta)
    torch.testing.assert_close(adapter.on_ffn(None, (), x), x + 0.25 * delta)
    assert adapter.found() == ("attention", "identity")


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_only_the_adapters_and_the_head_train_and_the_architecture_moves(vocab_file, kind):
    from conftest import build_tiny

    lm = build_tiny(kind, vocab_file)
    torch.manual_seed(0)
    original = clone_state(lm.model)
    model, data = build(lm)
    names = set(model.trainable_parameters())
    layers = lm.geometry.num_layers
    adapter_names = {n for n in names if ".prefalign_learned_adapter." in n}
    per_block = {"down.weight", "down.bias", "up.weight", "up.bias", "placement_logits", "activation_logits"}
    assert {n.rsplit("prefalign_learned_adapter.", 1)[1] for n in adapter_names} == per_block
    assert len(adapter_names) == layers * len(per_block)
    assert all(n.startswith("classifier.head.") for n in names - adapter_names)  # decoders: no head at all
    frozen = {k: v.clone() for k, v in model.classifier.model.state_dict().items() if "prefalign_" not in k}
    logits_before = [
        (a.placement_logits.detach().clone(), a.activation_logits.detach().clone()) for a in model.adapters()
    ]
    model.train()
    out = model(**data[0])
    assert out.terms["arch_ffn_weight"].item() == pytest.approx(0.5)  # uniform at the start
    train_steps(model, data, steps=4)  # weight decay 0: only parameters with a gradient move
    for key, value in model.classifier.model.state_dict().items():
        if key in frozen:
            assert torch.equal(value, frozen[key]), key
    for (place, act), adapter in zip(logits_before, model.adapters(), strict=True):
        assert not torch.equal(place, adapter.placement_logits) and not torch.equal(act, adapter.activation_logits)
    assert all(p.grad is None for n, p in model.named_parameters() if n not in names)
    assert all(torch.equal(original[k], v) for k, v in lm.model.state_dict().items())  # the caller's backbone
    assert [a.found() for a in model.adapters()] == model.architecture()
    assert len(model.architecture()) == layers


def test_a_fixed_architecture_has_no_logits_and_acts_only_where_it_is_put(tiny_llama):
    torch.manual_seed(0)
    model, data = build(tiny_llama, placement="ffn", activation="tanh")
    (first, *_) = model.adapters()
    assert first.placement_logits is None and first.activation_logits is None
    assert first.found() == ("ffn", "tanh")
    layer = find_layers(model.classifier.model, tiny_llama.geometry)[0]
    assert len(layer.self_attn.o_proj._forward_hooks) == 0 and len(layer.mlp.down_proj._forward_hooks) == 1
    with torch.no_grad():
        first.up.weight.normal_()
    x = torch.randn(2, 3, tiny_llama.geometry.hidden_size)
    expected = x + first.up(torch.tanh(first.down(x)))
    torch.testing.assert_close(
        layer.mlp.down_proj._forward_hooks[next(iter(layer.mlp.down_proj._forward_hooks))](layer.mlp.down_proj, (), x),
        expected,
    )
    model.train()
    assert "arch_ffn_weight" not in model(**data[0]).terms


def test_unknown_placement_or_activation_is_refused():
    with pytest.raises(ConfigError, match="placement"):
        registry.method_config("learned-adapter", {"placement": "everywhere"})
    with pytest.raises(ConfigError, match="activation"):
        registry.method_config("learned-adapter", {"activation": "softplus"})
