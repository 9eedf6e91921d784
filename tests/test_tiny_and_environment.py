"""prefalign.models.tiny (the one tiny-backbone builder of the tests and the speed benchmark) and
prefalign.utils.environment (versions and machine, recorded beside runs and benchmark results)."""

from __future__ import annotations

import platform

import pytest
import torch

from conftest import make_tokenizer
from prefalign.models.tiny import TINY_CONFIGS, tiny_backbone


@pytest.mark.parametrize("kind", sorted(TINY_CONFIGS))
def test_tiny_backbones_are_seeded_eval_mode_and_sized_to_the_tokenizer(kind, vocab_file):
    tok = make_tokenizer(vocab_file)
    a, b, c = tiny_backbone(kind, tok), tiny_backbone(kind, tok), tiny_backbone(kind, tok, seed=1)
    assert a.model.config.vocab_size == len(tok) and not a.model.training
    assert (a.name, a.path) == (f"tiny-{kind}", f"tiny-{kind}") and a.geometry.is_decoder == (kind != "bert")
    first = next(iter(a.model.state_dict()))
    assert torch.equal(a.model.state_dict()[first], b.model.state_dict()[first])
    assert not torch.equal(a.model.state_dict()[first], c.model.state_dict()[first])


def test_tiny_overrides_and_name_and_unknown_kind(vocab_file):
    tok = make_tokenizer(vocab_file)
    lm = tiny_backbone("bert", tok, name="tiny", hidden_size=64, intermediate_size=128, max_position_embeddings=512)
    cfg = lm.model.config
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.max_position_embeddings, cfg.num_hidden_layers) == (
        64,
        128,
        512,
        2,
    )
    assert (lm.name, lm.path, lm.geometry.hidden_size) == ("tiny", "tiny", 64)
    with pytest.raises(ValueError, match="unknown tiny backbone"):
        tiny_backbone("t5", tok)


def test_versions_and_machine():
    from prefalign.utils import environment

    v = environment.versions()
    assert set(v) == {"prefalign", "torch", "transformers", "peft", "accelerate", "safetensors"}
    assert v["torch"] == torch.__version__
    text = environment.machine("cpu")
    assert text.startswith(f"{platform.platform()}, ") and "CPU cores" in text and "GPU" not in text
