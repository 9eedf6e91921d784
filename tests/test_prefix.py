"""Deep prefixes (models/prefix.py), their geometry (models/introspect.py) and the classifier plumbing.

The checks that matter: prefixes are sized by key/value heads x head_dim (GQA), a fully masked
prefix is invisible, a prefix made of a text's keys/values acts exactly like that text placed before
the input (with positions continuing after the prefix), and gradients never reach the backbone.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, DynamicCache, GPT2Config, LlamaConfig, MistralConfig

from conftest import build_tiny
from helpers_models import build_variant
from prefalign.errors import ModelLoadError
from prefalign.models.classifier import PrefixClassifier, TaskSpec, masked_mean
from prefalign.models.introspect import ModelGeometry, geometry
from prefalign.models.prefix import (
    PrefixEncoder,
    build_prefix_cache,
    extend_attention_mask,
    positions_from_zero,
    text_init_kv,
)

TEXT = "the movie was good"  # four word-level tokens, no special tokens
INPUTS = ["the film was really awful", "a dull plot"]  # two lengths: right padding is exercised


def backbone_of(lm):
    return lm.model.base_model if lm.geometry.is_decoder else lm.model


def encode(lm, texts=INPUTS):
    enc = lm.tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def task_for(lm) -> TaskSpec:
    if lm.geometry.is_decoder:
        ids = tuple(lm.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (" negative", " positive"))
        return TaskSpec(num_classes=2, verbalizer_ids=ids)
    return TaskSpec(num_classes=2)


def max_diff_on_tokens(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return (a - b)[mask.bool()].abs().max().item()


# --------------------------------------------------------------------------------------------
# geometry()
# --------------------------------------------------------------------------------------------
def test_geometry_llama_gqa_reads_kv_heads_and_explicit_head_dim():
    cfg = LlamaConfig(
        hidden_size=48,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_hidden_layers=3,
        intermediate_size=64,
        vocab_size=50,
    )
    geo = geometry(cfg)
    assert geo.model_type == "llama" and geo.is_decoder
    assert (geo.num_layers, geo.hidden_size, geo.num_attention_heads) == (3, 48, 4)
    assert geo.num_key_value_heads == 2
    assert geo.head_dim == 16  # not hidden / heads = 12
    assert geo.kv_dim == 32  # kv heads x head_dim, not hidden_size


def test_geometry_llama_without_gqa_defaults():
    geo = geometry(
        LlamaConfig(hidden_size=48, num_attention_heads=4, num_hidden_layers=2, vocab_size=50, intermediate_size=64)
    )
    assert geo.num_key_value_heads == 4
    assert geo.head_dim == 12
    assert geo.kv_dim == 48


def test_geometry_mistral_single_kv_head():
    geo = geometry(
        MistralConfig(
            hidden_size=64,
            num_attention_heads=8,
            num_key_value_heads=1,
            num_hidden_layers=2,
            vocab_size=50,
            intermediate_size=64,
        )
    )
    assert geo.is_decoder and geo.num_key_value_heads == 1 and geo.head_dim == 8 and geo.kv_dim == 8


def test_geometry_gpt2_reads_its_own_field_names():
    geo = geometry(GPT2Config(n_embd=32, n_layer=2, n_head=4))
    assert geo.model_type == "gpt2" and geo.is_decoder
    assert (geo.num_layers, geo.hidden_size, geo.num_attention_heads) == (2, 32, 4)
    assert (geo.num_key_value_heads, geo.head_dim, geo.kv_dim) == (4, 8, 32)


def test_geometry_bert_is_an_encoder():
    geo = geometry(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4))
    assert geo.model_type == "bert" and not geo.is_decoder
    assert (geo.num_layers, geo.num_key_value_heads, geo.head_dim) == (2, 4, 8)


def test_geometry_of_the_tiny_fixtures(tiny_bert, tiny_llama, tiny_gpt2):
    assert tiny_llama.geometry.num_key_value_heads == 2 and tiny_llama.geometry.head_dim == 16
    assert not tiny_bert.geometry.is_decoder
    assert tiny_gpt2.geometry.is_decoder and tiny_gpt2.geometry.head_dim == 8


def test_geometry_rejects_config_without_sizes():
    from transformers import PretrainedConfig

    with pytest.raises(ModelLoadError, match="cannot read layers"):
        geometry(PretrainedConfig())


# --------------------------------------------------------------------------------------------
# PrefixEncoder
# --------------------------------------------------------------------------------------------
GQA_GEO = ModelGeometry(
    "llama", True, num_layers=3, hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16
)


@pytest.mark.parametrize("reparameterize", [False, True])
def test_prefix_encoder_output_shape(reparameterize):
    enc = PrefixEncoder(GQA_GEO, 5, reparameterize=reparameterize, hidden_size=8)
    out = enc()
    assert out.shape == (3, 2, 5, 32)  # (L, 2, m, kv_heads * head_dim): 32, not hidden 48
    assert out.requires_grad


def test_prefix_encoder_plain_starts_from_init_kv_copy():
    torch.manual_seed(0)
    init = torch.randn(3, 2, 5, 32)
    enc = PrefixEncoder(GQA_GEO, 5, init_kv=init)
    assert torch.equal(enc(), init)
    assert enc.kv.data_ptr() != init.data_ptr()
    with torch.no_grad():
        enc.kv.add_(1.0)
    assert not torch.equal(enc(), init)  # the caller's tensor was not aliased


def test_prefix_encoder_reparameterized_starts_at_init_and_trains_through_mlp():
    torch.manual_seed(0)
    init = torch.randn(3, 2, 5, 32)
    enc = PrefixEncoder(GQA_GEO, 5, reparameterize=True, hidden_size=8, init_kv=init)
    assert torch.equal(enc(), init)  # zero last layer: output = init buffer
    names = {n for n, _ in enc.named_parameters()}
    assert names == {"embedding", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"}
    assert "init_kv" in enc.state_dict() and not enc.init_kv.requires_grad
    enc().pow(2).sum().backward()
    assert enc.mlp[2].weight.grad.abs().sum() > 0


def test_prefix_encoder_random_init_is_small():
    torch.manual_seed(0)
    enc = PrefixEncoder(GQA_GEO, 5)
    assert 0.01 < enc().std().item() < 0.04  # N(0, 0.02)
    assert torch.count_nonzero(PrefixEncoder(GQA_GEO, 5, reparameterize=True, hidden_size=8)()) == 0


def test_prefix_encoder_rejects_wrong_init_shape():
    with pytest.raises(ValueError, match="init_kv has shape"):
        PrefixEncoder(GQA_GEO, 5, init_kv=torch.zeros(3, 2, 5, 48))  # hidden-sized, not kv-sized


# --------------------------------------------------------------------------------------------
# build_prefix_cache / masks / positions
# --------------------------------------------------------------------------------------------
def test_build_prefix_cache_layout():
    torch.manual_seed(0)
    b, m = 2, 5
    prefix = torch.randn(b, GQA_GEO.num_layers, 2, m, GQA_GEO.kv_dim)
    cache = build_prefix_cache(
        prefix,
        GQA_GEO,
        LlamaConfig(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_hidden_layers=3),
    )
    assert len(cache.layers) == 3
    hd = GQA_GEO.head_dim
    for layer in range(3):
        keys, values = cache.layers[layer].keys, cache.layers[layer].values
        assert keys.shape == (b, 2, m, hd) and values.shape == (b, 2, m, hd)
        for h in range(2):
            assert torch.equal(keys[:, h], prefix[:, layer, 0, :, h * hd : (h + 1) * hd])
            assert torch.equal(values[:, h], prefix[:, layer, 1, :, h * hd : (h + 1) * hd])
    assert cache.get_seq_length() == m


def test_extend_attention_mask_prepends_ones():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert extend_attention_mask(mask, 2).tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]


def test_positions_from_zero_bert_and_roberta():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    bert = ModelGeometry("bert", False, 2, 32, 4, 4, 8)
    assert positions_from_zero(mask, bert, 0).tolist() == [[0, 1, 2, 2], [0, 0, 0, 0]]
    roberta = ModelGeometry("roberta", False, 2, 32, 4, 4, 8)
    # RoBERTa numbers real tokens from padding_idx + 1 and gives pads padding_idx.
    assert positions_from_zero(mask, roberta, 1).tolist() == [[2, 3, 4, 1], [2, 1, 1, 1]]


@pytest.mark.parametrize("kind", ["bert", "llama", "gpt2"])
def test_text_init_kv_round_trips_through_build_prefix_cache(kind, vocab_file):
    lm = build_tiny(kind, vocab_file)
    m = 4
    kv = text_init_kv(lm.model, lm.tokenizer, lm.geometry, TEXT, m)
    assert kv.shape == (lm.geometry.num_layers, 2, m, lm.geometry.kv_dim)
    ids = torch.tensor([lm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]])
    assert ids.shape[1] == m
    ref = DynamicCache(config=lm.model.config)
    with torch.no_grad():
        lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=ref, use_cache=True)
    rebuilt = build_prefix_cache(kv.unsqueeze(0), lm.geometry, lm.model.config)
    for layer in range(lm.geometry.num_layers):
        assert torch.equal(rebuilt.layers[layer].keys, ref.layers[layer].keys)
        assert torch.equal(rebuilt.layers[layer].values, ref.layers[layer].values)


def test_text_init_kv_repeats_short_text(tiny_llama):
    lm = tiny_llama
    kv = text_init_kv(lm.model, lm.tokenizer, lm.geometry, "good movie", 5)
    ids = lm.tokenizer("good movie good movie good", add_special_tokens=False)["input_ids"]
    ref = DynamicCache(config=lm.model.config)
    with torch.no_grad():
        lm.model(input_ids=torch.tensor([ids]), past_key_values=ref, use_cache=True)
    got = build_prefix_cache(kv.unsqueeze(0), lm.geometry, lm.model.config)
    assert torch.equal(got.layers[0].keys, ref.layers[0].keys)
    assert not lm.model.training  # restored to eval


def test_text_init_kv_rejects_empty_text(tiny_llama):
    with pytest.raises(ValueError, match="empty"):
        text_init_kv(tiny_llama.model, tiny_llama.tokenizer, tiny_llama.geometry, "", 4)


# --------------------------------------------------------------------------------------------
# A fully masked prefix is invisible (bert, llama with GQA, llama with kv_dim != hidden, gpt2)
# --------------------------------------------------------------------------------------------
def load(kind, vocab_file):
    if kind == "llama-narrow-kv":  # kv_heads * head_dim = 2 * 8 = 16 != hidden 32
        return build_variant("llama", vocab_file, head_dim=8)
    return build_tiny(kind, vocab_file)


@pytest.mark.parametrize("kind", ["bert", "llama", "llama-narrow-kv", "gpt2"])
def test_masked_out_prefix_leaves_outputs_unchanged(kind, vocab_file):
    lm = load(kind, vocab_file)
    geo = lm.geometry
    if kind == "llama-narrow-kv":
        assert geo.kv_dim != geo.hidden_size
    ids, mask = encode(lm)
    m = 3
    torch.manual_seed(1)
    prefix = torch.randn(len(ids), geo.num_layers, 2, m, geo.kv_dim)
    bb = backbone_of(lm)
    with torch.no_grad():
        plain = bb(input_ids=ids, attention_mask=mask).last_hidden_state
        zero_mask = torch.cat([torch.zeros(len(ids), m, dtype=mask.dtype), mask], dim=1)
        hidden = bb(
            input_ids=ids,
            attention_mask=zero_mask,
            use_cache=False,
            past_key_values=build_prefix_cache(prefix, geo, lm.model.config),
            position_ids=positions_from_zero(mask, geo, lm.model.config.pad_token_id),
        ).last_hidden_state
        # The same prefix, visible: it must change the outputs, or the test above proves nothing.
        seen = bb(
            input_ids=ids,
            attention_mask=extend_attention_mask(mask, m),
            use_cache=False,
            past_key_values=build_prefix_cache(prefix, geo, lm.model.config),
            position_ids=positions_from_zero(mask, geo, lm.model.config.pad_token_id),
        ).last_hidden_state
    assert max_diff_on_tokens(hidden, plain, mask) < 1e-5
    assert max_diff_on_tokens(seen, plain, mask) > 1e-2


@pytest.mark.parametrize("kind", ["bert", "llama", "gpt2"])
def test_classifier_without_prefix_matches_bare_backbone(kind, vocab_file):
    lm = build_tiny(kind, vocab_file)
    ids, mask = encode(lm)
    clf = PrefixClassifier(lm.model, lm.geometry, task_for(lm), head_dropout=0.0).eval()
    with torch.no_grad():
        out = clf(ids, mask, None, all_layers=True)
        ref = backbone_of(lm)(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert torch.allclose(out.last_pooled, masked_mean(ref.last_hidden_state, mask), atol=1e-6)
    assert out.pooled.shape == (2, lm.geometry.num_layers + 1, lm.geometry.hidden_size)
    assert out.logits.shape == (2, 2)


# --------------------------------------------------------------------------------------------
# text-initialised prefix + position offset == the text placed before the input
# --------------------------------------------------------------------------------------------
def concat_inputs(lm, ids, mask, m):
    text_ids = torch.tensor([lm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]] * len(ids))
    assert text_ids.shape[1] == m
    return torch.cat([text_ids, ids], 1), torch.cat([torch.ones_like(text_ids), mask], 1)


@pytest.mark.parametrize("kind", ["llama", "llama-narrow-kv", "gpt2"])
def test_text_prefix_equals_text_before_input_for_decoders(kind, vocab_file):
    lm = load(kind, vocab_file)
    geo, m = lm.geometry, 4
    ids, mask = encode(lm)
    kv = text_init_kv(lm.model, lm.tokenizer, geo, TEXT, m)
    clf = PrefixClassifier(lm.model, geo, task_for(lm), position_offset=True).eval()
    prefix = kv.unsqueeze(0).expand(len(ids), *kv.shape)
    cat_ids, cat_mask = concat_inputs(lm, ids, mask, m)
    with torch.no_grad():
        out = clf(ids, mask, prefix, all_layers=True)
        ref = backbone_of(lm)(input_ids=cat_ids, attention_mask=cat_mask, output_hidden_states=True)
        # Every layer (0 = embeddings), pooled over the input's real tokens only.
        ref_pooled = masked_mean(torch.stack(ref.hidden_states)[:, :, m:], mask).transpose(0, 1)
        assert torch.allclose(out.pooled, ref_pooled, atol=1e-5)
        assert torch.allclose(out.last_pooled, ref_pooled[:, -1], atol=1e-5)
        # Decoder class scores: the verbalizers' log-probabilities after each input's last real token.
        last = mask.sum(-1) - 1 + m
        h = ref.last_hidden_state[torch.arange(len(ids)), last]
        expected = torch.log_softmax(lm.model.get_output_embeddings()(h), -1)[:, list(clf.task.verbalizer_ids)]
        assert torch.allclose(out.logits, expected, atol=1e-5)


def test_text_prefix_without_position_offset_differs_for_gpt2(tiny_gpt2):
    """Control: with positions restarting at 0 the absolute-position GPT-2 no longer matches."""
    lm, m = tiny_gpt2, 4
    ids, mask = encode(lm)
    kv = text_init_kv(lm.model, lm.tokenizer, lm.geometry, TEXT, m)
    clf = PrefixClassifier(lm.model, lm.geometry, task_for(lm), position_offset=False).eval()
    cat_ids, cat_mask = concat_inputs(lm, ids, mask, m)
    with torch.no_grad():
        out = clf(ids, mask, kv.unsqueeze(0).expand(len(ids), *kv.shape))
        ref = backbone_of(lm)(input_ids=cat_ids, attention_mask=cat_mask).last_hidden_state[:, m:]
    assert not torch.allclose(out.last_pooled, masked_mean(ref, mask), atol=1e-4)


def test_text_prefix_for_bert_equals_text_that_cannot_see_the_input(vocab_file):
    """BERT: in text_init_kv the text attends only to itself. So the prefix run equals running
    [text; input] with a mask where text rows see text only (input rows see everything). Plain
    bidirectional concatenation differs from layer 2 on (the text's layer-1 states then depend on
    the input), so that comparison must NOT match; a larger init makes the gap unmistakable."""
    lm = build_variant("bert", vocab_file, initializer_range=0.2)
    geo, m = lm.geometry, 4
    ids, mask = encode(lm)
    kv = text_init_kv(lm.model, lm.tokenizer, geo, TEXT, m)
    clf = PrefixClassifier(lm.model, geo, task_for(lm), position_offset=True, head_dropout=0.0).eval()
    cat_ids, cat_mask = concat_inputs(lm, ids, mask, m)
    n, t = cat_ids.shape
    allowed = cat_mask[:, None, None, :].bool().expand(n, 1, t, t).clone()
    allowed[:, :, :m, m:] = False  # the text does not see the input
    with torch.no_grad():
        out = clf(ids, mask, kv.unsqueeze(0).expand(n, *kv.shape), all_layers=True)
        blocked = lm.model(input_ids=cat_ids, attention_mask=allowed, output_hidden_states=True)
        plain = lm.model(input_ids=cat_ids, attention_mask=cat_mask, output_hidden_states=True)
    blocked_pooled = masked_mean(torch.stack(blocked.hidden_states)[:, :, m:], mask).transpose(0, 1)
    plain_pooled = masked_mean(torch.stack(plain.hidden_states)[:, :, m:], mask).transpose(0, 1)
    assert torch.allclose(out.pooled, blocked_pooled, atol=1e-5)
    # Embeddings and layer 1 match plain concatenation too (layer-0 keys/values come from embeddings)...
    assert torch.allclose(out.pooled[:, :2], plain_pooled[:, :2], atol=1e-5)
    # ... but the last layer does not.
    assert (out.pooled[:, -1] - plain_pooled[:, -1]).abs().max().item() > 1e-3


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bert", "llama", "gpt2"])
@pytest.mark.parametrize("reparameterize", [False, True])
def test_gradients_reach_prefix_never_backbone(kind, reparameterize, vocab_file):
    lm = build_tiny(kind, vocab_file)
    geo = lm.geometry
    torch.manual_seed(0)
    enc = PrefixEncoder(geo, 3, reparameterize=reparameterize, hidden_size=8)
    if reparameterize:  # move off the zero-initialised last layer so every MLP weight gets gradient
        torch.nn.init.normal_(enc.mlp[2].weight, std=0.1)
    clf = PrefixClassifier(lm.model, geo, task_for(lm)).train()
    assert all(not p.requires_grad for p in lm.model.parameters())
    ids, mask = encode(lm)
    out = clf(ids, mask, enc().unsqueeze(0).expand(len(ids), -1, -1, -1, -1), all_layers=True)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1])) + out.pooled.pow(2).mean()
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in lm.model.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    if clf.head is not None:
        assert all(p.grad is not None for p in clf.head.parameters())


def test_a_model_that_ignores_the_cache_is_refused(vocab_file):
    """DistilBERT's attention takes no past_key_values: a prefix would silently do nothing."""
    from transformers import AutoModel, DistilBertConfig

    from conftest import make_tokenizer
    from prefalign.errors import ModelLoadError
    from prefalign.methods import build_method, method_config
    from prefalign.models.classifier import TaskSpec
    from prefalign.models.introspect import geometry
    from prefalign.models.loading import LoadedModel

    tok = make_tokenizer(vocab_file)
    model = AutoModel.from_config(DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=2, n_heads=4, hidden_dim=64))
    lm = LoadedModel(model, tok, geometry(model.config), "tiny-distilbert", "tiny-distilbert")
    with pytest.raises(ModelLoadError, match="ignore past_key_values"):
        build_method(method_config("ptuning-v2", {}), lm, TaskSpec(2))


@pytest.mark.parametrize("family", ["qwen2", "mistral", "roberta"])
def test_dcpc_trains_on_other_families(vocab_file, family):
    """Qwen2 and Mistral (GQA, sliding window) decoders and a RoBERTa encoder take prefixes sized by
    their key/value heads through the same Cache path, and a DCPC step yields finite gradients."""
    from transformers import AutoModel, AutoModelForCausalLM, MistralConfig, Qwen2Config, RobertaConfig

    from conftest import make_tokenizer, toy_sentiment
    from prefalign.data.collator import Collator, PromptFormat, build_task_spec
    from prefalign.methods import build_method, method_config
    from prefalign.models.introspect import geometry
    from prefalign.models.loading import LoadedModel

    tok = make_tokenizer(vocab_file)
    v = len(tok)
    torch.manual_seed(0)
    common = dict(vocab_size=v, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    if family == "qwen2":
        model = AutoModelForCausalLM.from_config(Qwen2Config(**common, num_key_value_heads=2, pad_token_id=0))
    elif family == "mistral":
        model = AutoModelForCausalLM.from_config(
            MistralConfig(**common, num_key_value_heads=1, sliding_window=8, pad_token_id=0)
        )
    else:
        model = AutoModel.from_config(RobertaConfig(**common, pad_token_id=0, max_position_embeddings=130))
    lm = LoadedModel(model, tok, geometry(model.config), f"tiny-{family}", f"tiny-{family}")
    assert lm.geometry.is_decoder == (family != "roberta")
    expected_kv = {"qwen2": 2, "mistral": 1, "roberta": 4}[family]
    assert lm.geometry.num_key_value_heads == expected_kv
    data = toy_sentiment(8, soft=True)
    prompt = PromptFormat(template="review: {text} sentiment:") if lm.geometry.is_decoder else PromptFormat()
    spec = build_task_spec(data, lm.geometry, tok, prompt)
    dcpc = build_method(
        method_config("dcpc", {"prefix_length": 4, "tau_cos": 0.0, "tau_ambiguity": 0.0, "similarity_center": False}),
        lm,
        spec,
    )
    assert dcpc.prefix().shape == (2, 2, 4, expected_kv * lm.geometry.head_dim)
    dcpc.train()
    out = dcpc(**Collator(tok, lm.geometry, 2, prompt)(data.examples))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert dcpc.prefix.kv.grad is not None and dcpc.prefix.kv.grad.abs().sum() > 0
    assert all(p.grad is None for p in lm.model.parameters())
