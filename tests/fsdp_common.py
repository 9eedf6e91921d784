"""The model and data both sides of tests/test_fsdp.py build: a tiny BERT without dropout and a method on
it, and fixed batches of the toy sentiment set (the worker under torchrun and the test's single process
must build exactly the same)."""

from __future__ import annotations

import torch

from conftest import build_tiny
from helpers_models import batches, sentiment_setup
from prefalign.methods import build_method, method_config

METHODS = ("ptuning-v2", "lora")
STEPS, BATCH = 4, 8
OPTIONS = {"ptuning-v2": {"head_dropout": 0.0}, "lora": {"head_dropout": 0.0, "lora_dropout": 0.0}}


def backbone(vocab_file: str):
    return build_tiny("bert", vocab_file, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def build(name: str, vocab_file: str):
    """The method ``name`` on a fresh tiny BERT, from seed 0 (the same weights on every process)."""
    torch.manual_seed(0)
    lm = backbone(vocab_file)
    _, spec, _ = sentiment_setup(lm, n=BATCH * STEPS)
    model = build_method(method_config(name, OPTIONS[name]), lm, spec)
    model.train()
    return model


def data(vocab_file: str, step: int) -> dict:
    """Batch ``step`` of the toy sentiment set (BATCH rows), collated."""
    lm = backbone(vocab_file)
    ds, _, collator = sentiment_setup(lm, n=BATCH * STEPS)
    return batches(ds, collator, BATCH)[step]
