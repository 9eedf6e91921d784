"""docs/adding-a-method.md works as written: its code registers a toy method that trains, saves and loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from helpers_models import batches, clone_state, sentiment_setup, train_steps
from prefalign.errors import ConfigError
from prefalign.methods import METHODS, build_method, load_method, method_config, register_method, save_method

PAGE = Path(__file__).resolve().parents[1] / "docs" / "adding-a-method.md"


@pytest.fixture
def toy_method():
    """The page's config and model code, run as written, and registered the plugin way."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(blocks[0] + "\n" + blocks[1], str(PAGE), "exec"), namespace)
    cls = register_method(namespace["ScaledHead"])
    try:
        yield cls
    finally:
        METHODS.pop(cls.name)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_the_documented_method_registers_trains_and_round_trips(toy_method, kind, vocab_file, tmp_path):
    from conftest import build_tiny

    lm = build_tiny(kind, vocab_file)
    assert METHODS["scaled-head"] is toy_method
    config = method_config("scaled-head", {"init_scale": 2.0})
    assert config.name == "scaled-head" and config.head_pooling == "mean"
    with pytest.raises(ConfigError, match="init_scale"):
        method_config("scaled-head", {"init_scale": -1.0})
    ds, spec, collator = sentiment_setup(lm, n=16)
    model = build_method(config, lm, spec)
    backbone = clone_state(lm.model)
    before = {n: p.detach().clone() for n, p in model.trainable_parameters().items()}
    assert "log_scale" in before
    losses = train_steps(model, batches(ds, collator, 8), steps=4)
    assert all(loss == loss for loss in losses)
    assert all(not torch.equal(before[n], p) for n, p in model.trainable_parameters().items())
    assert all(torch.equal(v, lm.model.state_dict()[k]) for k, v in backbone.items())
    save_method(model, tmp_path / "adapter", backbone=lm)
    loaded, meta = load_method(tmp_path / "adapter", lm)
    assert meta["method"] == "scaled-head" and isinstance(loaded, toy_method)
    data = batches(ds, collator, 8)[0]
    with torch.no_grad():
        assert torch.equal(loaded.eval()(**data).logits, model.eval()(**data).logits)


def test_a_second_method_with_the_same_name_is_refused(toy_method):
    class Impostor(toy_method):
        pass

    with pytest.raises(ValueError, match="registered already"):
        register_method(Impostor)
