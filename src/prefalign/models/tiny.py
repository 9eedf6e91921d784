"""Tiny random backbones built in-process (no download): the tests' models and the speed benchmark's 'tiny'."""

from __future__ import annotations

import torch
from transformers import AutoModel, AutoModelForCausalLM, BertConfig, GPT2Config, LlamaConfig

from .introspect import geometry
from .loading import LoadedModel

# Each kind's config fields; ``overrides`` replace them. The vocabulary size is the tokenizer's.
TINY_CONFIGS = {
    "bert": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=128
    ),
    "llama": dict(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        tie_word_embeddings=True,
    ),  # grouped-query attention
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_positions=256, bos_token_id=2, eos_token_id=3, pad_token_id=0),
}


def tiny_backbone(kind: str, tokenizer, seed: int = 0, *, name: str | None = None, **overrides) -> LoadedModel:
    """A random 'bert' (encoder), 'llama' or 'gpt2' (decoders) over ``tokenizer``'s vocabulary, in eval mode.

    The weights depend only on ``seed`` and the config (``torch.manual_seed(seed)`` just before
    building); ``overrides`` replace config fields, e.g. ``hidden_size=64``. ``name`` defaults to
    ``tiny-<kind>``.
    """
    if kind not in TINY_CONFIGS:
        raise ValueError(f"unknown tiny backbone {kind!r}; choose one of {', '.join(TINY_CONFIGS)}")
    config_cls, auto = {
        "bert": (BertConfig, AutoModel),
        "llama": (LlamaConfig, AutoModelForCausalLM),
        "gpt2": (GPT2Config, AutoModelForCausalLM),
    }[kind]
    torch.manual_seed(seed)
    cfg = config_cls(**{"vocab_size": len(tokenizer), **TINY_CONFIGS[kind], **overrides})
    model = auto.from_config(cfg)
    model.eval()
    name = name or f"tiny-{kind}"
    return LoadedModel(model=model, tokenizer=tokenizer, geometry=geometry(model.config), name=name, path=name)
