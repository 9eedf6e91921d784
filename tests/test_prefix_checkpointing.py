"""Gradient checkpointing for methods that feed prefixes through the attention cache (models/prefix.py:
``checkpoint_prefix_layers``): the same gradients as without it, every layer replayed once in the backward
pass, and training with it moves every trainable parameter and no frozen weight."""

from __future__ import annotations

import pytest
import torch

from conftest import build_tiny
from helpers_models import batches, clone_state, sentiment_setup, train_steps
from prefalign.methods import build_method, method_config
from prefalign.models import prefix as prefix_mod
from prefalign.models.prefix import checkpoint_prefix_layers, uncheckpoint_prefix_layers
from prefalign.training.run import enable_gradient_checkpointing

# Tiny models: every DCPC pair passes its gates, so the alignment loss and the PCM get gradients too.
ALL_GATES = dict(tau_cos=0.0, tau_ambiguity=0.0, similarity_center=False, gate_divergence="cross_entropy")
METHODS = [
    ("ptuning-v2", {"prefix_length": 4}),
    ("dcpc", {"prefix_length": 4, **ALL_GATES}),
    ("ltuning-prefix", {}),
]


@pytest.fixture(params=["bert", "llama", "gpt2"])
def backbone(request, vocab_file):
    return build_tiny(request.param, vocab_file)


def build(lm, name, params):
    ds, spec, collator = sentiment_setup(lm, n=16)
    torch.manual_seed(0)
    model = build_method(method_config(name, params), lm, spec)
    return model, batches(ds, collator)


def gradients(model, batch, calls: list | None = None) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout masks and PCM samples in both runs
    loss = model(**batch).loss
    if calls is not None:
        calls.append("backward")
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.trainable_parameters().items() if p.grad is not None}


@pytest.mark.parametrize(("name", "params"), METHODS, ids=[m[0] for m in METHODS])
def test_checkpointed_gradients_equal_the_plain_ones(backbone, name, params, monkeypatch):
    model, data = build(backbone, name, params)
    plain = gradients(model, data[0])
    assert plain and all(g.abs().sum() > 0 for g in plain.values())

    replays = []
    forward = prefix_mod.PrefixCheckpointedLayer.forward
    monkeypatch.setattr(
        prefix_mod.PrefixCheckpointedLayer,
        "forward",
        lambda self, *a, **k: (replays.append("layer"), forward(self, *a, **k))[1],
    )
    layers = checkpoint_prefix_layers(backbone.model)
    assert layers == backbone.geometry.num_layers
    checkpointed = gradients(model, data[0], replays)
    assert plain.keys() == checkpointed.keys()
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-5, atol=1e-7, msg=key)
    # every layer that ran in the forward pass (once per backbone pass the method makes) ran again in the backward
    forward_calls = replays.index("backward")
    assert forward_calls > 0 and forward_calls % layers == 0
    assert len(replays) == 2 * forward_calls + 1

    replays.clear()
    uncheckpoint_prefix_layers(backbone.model)
    assert gradients(model, data[0]).keys() == plain.keys() and not replays


@pytest.mark.parametrize(("name", "params"), METHODS, ids=[m[0] for m in METHODS])
def test_training_with_checkpointing_moves_every_trainable_parameter_and_no_frozen_weight(backbone, name, params):
    model, data = build(backbone, name, params)
    enable_gradient_checkpointing(model)  # what training.gradient_checkpointing=true does
    frozen = clone_state(backbone.model)
    before = {n: p.detach().clone() for n, p in model.trainable_parameters().items()}
    train_steps(model, data, steps=4)
    after = backbone.model.state_dict()
    assert frozen.keys() == after.keys()
    for key, tensor in frozen.items():
        assert torch.equal(tensor, after[key]), f"frozen weight {key} changed"
    unchanged = [n for n, p in model.trainable_parameters().items() if torch.equal(before[n], p.detach())]
    assert not unchanged, f"never changed: {unchanged}"
    uncheckpoint_prefix_layers(backbone.model)


def test_eval_and_no_grad_run_the_layers_unchanged(vocab_file):
    lm = build_tiny("llama", vocab_file)
    model, data = build(lm, "ptuning-v2", {"prefix_length": 4})
    model.eval()
    with torch.no_grad():
        plain = model(**data[0]).logits
        checkpoint_prefix_layers(lm.model)
        assert torch.equal(model(**data[0]).logits, plain)
    uncheckpoint_prefix_layers(lm.model)


def test_a_backbone_passed_to_train_leaves_without_the_checkpointing(vocab_file, tmp_path, monkeypatch):
    """train(cfg, backbone=...) shares the caller's backbone with a prefix method: its layers are checkpointed
    while it trains and not afterwards; the frozen weights stay bit-identical."""
    from conftest import toy_sentiment
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    lm = build_tiny("bert", vocab_file)
    data = toy_sentiment(24)
    cfg = ExperimentConfig.from_dict(
        {
            "method": {"name": "ptuning-v2", "prefix_length": 4},
            "training": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 2,
                "eval_steps": 2,
                "batch_size": 8,
                "device": "cpu",
                "progress": False,
                "gradient_checkpointing": True,
            },
        }
    )
    frozen = clone_state(lm.model)
    calls = []
    forward = prefix_mod.PrefixCheckpointedLayer.forward
    monkeypatch.setattr(
        prefix_mod.PrefixCheckpointedLayer,
        "forward",
        lambda self, *a, **k: (calls.append(1), forward(self, *a, **k))[1],
    )
    train(cfg, backbone=lm, splits=(data, data, None))
    assert calls  # the layers ran through the checkpointing wrapper during training
    assert not any("forward" in m.__dict__ for m in lm.model.modules())
    assert all(torch.equal(v, lm.model.state_dict()[k]) for k, v in frozen.items())
