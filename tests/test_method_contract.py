"""The method contract (prefalign.methods.base), checked once for every registered method.

Every method, on every backbone kind it supports: the config round-trips through JSON; building it
leaves the caller's backbone alone; training moves every trainable parameter and nothing else (the
frozen weights stay bit-identical and get no gradient); a training-free method has nothing to train;
and a saved method loads back to the same logits.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import build_tiny
from helpers_models import batches, clone_state, sentiment_setup, train_steps
from prefalign.errors import ConfigError
from prefalign.methods import METHODS, Method, MethodConfig, build_method, load_method, method_config, save_method

TRAINING_FREE = {"zero-shot", "cc", "dc", "crispr"}  # bias-aware PEFT appendix D: evaluated, never stepped
DECODER_ONLY = TRAINING_FREE | {"bias-aware"}  # they read label words through the LM head
SMALL = {
    "bias-aware": {"probe_examples": 4},
    "crispr": {"probe_examples": 8, "num_neurons": 3},
    "dc": {"num_samples": 4},
}  # keep the data-reading steps of prepare() small on the toy set
# Parameters that legitimately get no gradient in a few steps, with the reason.
NO_GRADIENT_YET = {
    "adalora": ("lora_E",),  # AdaLoRA's singular values start at zero: their gradient needs P and Q to move first
}

CASES = [
    (name, kind) for name in METHODS for kind in ("bert", "llama") if not (name in DECODER_ONLY and kind == "bert")
]


@pytest.fixture(scope="module")
def backbones(vocab_file):
    """One tiny encoder and one tiny decoder for the module: no test may change them (each checks)."""
    return {kind: build_tiny(kind, vocab_file) for kind in ("bert", "llama")}


def build(lm, name):
    ds, spec, collator = sentiment_setup(lm, n=16)
    model = build_method(method_config(name, SMALL.get(name)), lm, spec)
    model.prepare(collator, ds, seed=0)
    return model, batches(ds, collator, 8)


def test_every_method_is_a_registered_method_class():
    for name, cls in METHODS.items():
        assert issubclass(cls, Method) and cls.name == name
        assert issubclass(cls.config_class, MethodConfig)
        config = method_config(name)
        assert type(config) is cls.config_class and config.name == name
        for key, value in cls.config_defaults.items():
            assert getattr(config, key) == value


@pytest.mark.parametrize("name", list(METHODS))
def test_config_round_trips_through_json_and_has_help(name):
    config = method_config(name)
    again = method_config(name, json.loads(config.to_json()))
    assert again == config
    helps = type(config).help()
    assert all(len(text.strip()) >= 10 for text in helps.values()), helps
    with pytest.raises(ConfigError, match="unknown config key 'method.no_such_option'"):
        method_config(name, {"no_such_option": 1})


@pytest.mark.parametrize("name,kind", CASES)
def test_training_moves_every_trainable_parameter_and_nothing_else(backbones, name, kind):
    lm = backbones[kind]
    torch.manual_seed(0)
    callers = clone_state(lm.model)
    model, data = build(lm, name)
    trainable = model.trainable_parameters()
    if name in TRAINING_FREE:
        assert not trainable and not any(p.requires_grad for p in model.parameters())
        with torch.no_grad():
            assert torch.isfinite(model.eval()(**data[0]).logits).all()
        return
    assert trainable, f"{name} has nothing to train"
    shared = {p.data_ptr() for p in trainable.values()}  # tied weights (an LM head tied to trained embeddings)
    frozen = {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k not in trainable and v.data_ptr() not in shared
    }
    before = {n: p.detach().clone() for n, p in trainable.items()}
    train_steps(model, data, steps=3)
    after = model.state_dict()
    changed = [k for k, v in frozen.items() if not torch.equal(v, after[k])]
    assert not changed, f"frozen tensors changed: {changed[:5]}"
    for n, p in model.named_parameters():
        if n not in trainable:
            assert not p.requires_grad and p.grad is None, n
    exempt = NO_GRADIENT_YET.get(name, ())
    unchanged = [
        n for n, p in trainable.items() if torch.equal(before[n], p.detach()) and not any(e in n for e in exempt)
    ]
    assert not unchanged, f"parameters that never changed: {unchanged}"
    # The backbone object the caller passed in is bit-identical, whether the method copied it or not.
    now = lm.model.state_dict()
    assert callers.keys() == now.keys() and all(torch.equal(callers[k], now[k]) for k in callers)


@pytest.mark.parametrize("name,kind", CASES)
def test_a_saved_method_loads_back_to_the_same_logits(backbones, name, kind, tmp_path):
    lm = backbones[kind]
    torch.manual_seed(0)
    model, data = build(lm, name)
    if model.trainable_parameters():
        train_steps(model, data, steps=2)
    model.eval()
    with torch.no_grad():
        expected = model(**data[0]).logits
    save_method(model, tmp_path / "adapter", backbone=lm)
    loaded, meta = load_method(tmp_path / "adapter", lm)
    assert type(loaded) is type(model) and meta["method"] == name
    with torch.no_grad():
        assert torch.equal(loaded.eval()(**data[0]).logits, expected)
