"""Shared helpers for the model tests: tiny backbones with other geometries, and ready-made batches."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tokenizer, toy_choice, toy_sentiment
from prefalign.data.collator import Collator, PromptFormat, build_task_spec
from prefalign.models.introspect import geometry
from prefalign.models.loading import LoadedModel

DECODER_PROMPT = PromptFormat(template="review: {text} sentiment:")


def build_variant(kind: str, vocab_file: str, seed: int = 0, **overrides) -> LoadedModel:
    """A tiny 'bert' or 'llama' like conftest.build_tiny, with config fields overridden."""
    from transformers import AutoModel, AutoModelForCausalLM, BertConfig, LlamaConfig

    tok = make_tokenizer(vocab_file)
    v = len(tok)
    torch.manual_seed(seed)
    if kind == "bert":
        base = dict(vocab_size=v, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    max_position_embeddings=128)
        model = AutoModel.from_config(BertConfig(**{**base, **overrides}))
    elif kind == "llama":
        base = dict(vocab_size=v, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=16, intermediate_size=64, max_position_embeddings=256, pad_token_id=0, bos_token_id=2,
                    eos_token_id=3, tie_word_embeddings=True)
        model = AutoModelForCausalLM.from_config(LlamaConfig(**{**base, **overrides}))
    else:
        raise ValueError(kind)
    model.eval()
    return LoadedModel(model=model, tokenizer=tok, geometry=geometry(model.config), name=f"tiny-{kind}-variant",
                       path=f"tiny-{kind}-variant")


def prompt_for(lm: LoadedModel) -> PromptFormat:
    return DECODER_PROMPT if lm.geometry.is_decoder else PromptFormat()


def sentiment_setup(lm: LoadedModel, n: int = 32, soft: bool = True):
    """(dataset, task spec, collator) for toy_sentiment on ``lm``."""
    ds = toy_sentiment(n, soft=soft)
    prompt = prompt_for(lm)
    spec = build_task_spec(ds, lm.geometry, lm.tokenizer, prompt)
    return ds, spec, Collator(lm.tokenizer, lm.geometry, ds.num_classes, prompt)


def choice_setup(lm: LoadedModel, n: int = 8):
    ds = toy_choice(n)
    prompt = PromptFormat()
    spec = build_task_spec(ds, lm.geometry, lm.tokenizer, prompt)
    return ds, spec, Collator(lm.tokenizer, lm.geometry, ds.num_classes, prompt)


def batches(dataset, collator, batch_size: int = 8):
    """Every batch of ``dataset`` in order, collated."""
    return [collator(dataset.examples[i:i + batch_size]) for i in range(0, len(dataset), batch_size)]


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(autouse=True, scope="module")
def torch_single_thread():
    """Tiny models run fastest on one thread: on a busy 2-core machine intra-op threads cost ~10 ms
    per op in synchronisation. Import this fixture into a test module to apply it there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
