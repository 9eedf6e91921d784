"""The hook-based baselines PEFT lacks (BitFit, Houlsby adapters, Learned-Adapter, LPT, PEDRO): they start as the
frozen model, count right, insert where they say, and never stack or share hooks.

Training and save/load round trips of the default settings run in tests/test_baselines.py.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from conftest import build_tiny
from helpers_models import batches, clone_state, sentiment_setup, train_steps
from prefalign.errors import ConfigError
from prefalign.methods import registry
from prefalign.methods.baselines import BaselineConfig, BaselineModel
from prefalign.methods.baselines.hooks import count_hooks, find_layers
from prefalign.methods.baselines.lpt import segment_means

# (method, params): the defaults plus the paper's r' reading of BitFit.
VARIANTS = [
    ("bitfit", {}),
    ("bitfit", {"rank": 8}),
    ("houlsby", {}),
    ("learned-adapter", {}),
    ("lpt", {"prompt_length": 4, "bottleneck": 8}),
    ("pedro", {}),
]
IDS = ["bitfit", "bitfit-r8", "houlsby", "learned-adapter", "lpt", "pedro"]


@pytest.fixture(params=["bert", "llama"])
def backbone(request, vocab_file):
    return build_tiny(request.param, vocab_file)


def build(lm, name, **params):
    ds, spec, collator = sentiment_setup(lm, n=16)
    return registry.build_method(registry.method_config(name, params), lm, spec), batches(ds, collator, 8)


def frozen_reference(lm, model):
    """The backbone without any method, reading through the method's own head."""
    plain = BaselineModel(copy.deepcopy(lm.model), lm.tokenizer, lm.geometry, model.task, BaselineConfig())
    if model.classifier.head is not None:
        plain.classifier.head.load_state_dict(model.classifier.head.state_dict())
    return plain.eval()


def frozen_reading(lm, model, batch, soft: torch.Tensor) -> torch.Tensor:
    """The frozen model's class scores for ``batch`` with the soft tokens ``soft`` (p, d) before every input."""
    plain = frozen_reference(lm, model)
    with torch.no_grad():
        return plain.classifier(
            batch["input_ids"],
            batch["attention_mask"],
            None,
            token_type_ids=batch.get("token_type_ids"),
            prompt_embeds=soft.unsqueeze(0).expand(batch["input_ids"].shape[0], -1, -1),
        ).logits


def logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


# AdamW's default weight decay, as these tests always trained with: BitFit r=8's added bias on
# BERT's keys gets no gradient (a bias shared by every key cancels in the softmax) and moves only
# through the decay.
WEIGHT_DECAY = 0.01


# -- identity at initialisation --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bert", "llama", "gpt2"])
@pytest.mark.parametrize(("name", "params"), [v for v in VARIANTS if v[0] != "lpt"], ids=[i for i in IDS if i != "lpt"])
def test_starts_as_the_frozen_model(vocab_file, kind, name, params):
    lm = build_tiny(kind, vocab_file)
    model, data = build(lm, name, **params)
    if not (name == "bitfit" and not params and kind != "llama"):  # BERT and GPT-2 have every bias already
        assert count_hooks(model.classifier.model) > 0
    expected = logits(frozen_reference(lm, model), data[0])
    assert torch.equal(logits(model, data[0]), expected)


def test_lpt_without_its_generator_is_the_frozen_model_reading_zero_placeholders(backbone):
    model, data = build(backbone, "lpt", prompt_length=4, bottleneck=8)
    with_prompt = logits(model, data[0])
    assert model.remove_hooks() == 1
    expected = frozen_reading(backbone, model, data[0], torch.zeros(4, backbone.geometry.hidden_size))
    assert torch.equal(logits(model, data[0]), expected)
    assert not torch.allclose(with_prompt, expected)  # the generated prompt reaches the output


def test_lpt_text_placeholders_are_the_texts_token_embeddings_and_stay_fixed(backbone):
    model, data = build(
        backbone, "lpt", prompt_length=6, bottleneck=8, placeholder_init="text", placeholder_init_text="good movie"
    )
    ids = backbone.tokenizer("good movie", add_special_tokens=False)["input_ids"]
    words = backbone.model.get_input_embeddings().weight.detach()
    expected_rows = words[torch.tensor((ids * 6)[:6])]
    assert torch.equal(model.soft_prompt(1)[0], expected_rows)  # repeated to the prompt's length
    assert "placeholders" not in {n for n, _ in model.named_parameters()}  # fixed, not trained
    assert "placeholders" not in model.state_dict()  # rebuilt from the frozen embeddings, not saved
    assert model.remove_hooks() == 1
    expected = frozen_reading(backbone, model, data[0], expected_rows)
    assert torch.equal(logits(model, data[0]), expected)  # without its generator: the model reading the text


def test_lpt_refuses_an_empty_placeholder_text(tiny_bert):
    with pytest.raises(ConfigError, match="placeholder_init_text has no tokens"):
        build(tiny_bert, "lpt", prompt_length=4, bottleneck=8, placeholder_init="text", placeholder_init_text="")


# -- where the methods act ----------------------------------------------------------------------------------------
def test_lpt_overwrites_the_placeholders_entering_layer_k_with_the_generated_prompt(backbone):
    torch.manual_seed(0)
    model, data = build(backbone, "lpt", prompt_length=4, bottleneck=8)
    k = backbone.geometry.num_layers // 2
    assert model.insert_layer == k
    layers = find_layers(model.classifier.model, backbone.geometry)
    seen = {}

    def record_below(module, args, out):
        seen["below"] = out

    def record_entering(module, args, kwargs):
        seen["entering"] = args[0] if args else kwargs["hidden_states"]

    below = layers[k - 1].register_forward_hook(record_below)
    entering = layers[k].register_forward_pre_hook(record_entering, with_kwargs=True)  # runs after LPT's
    batch = data[0]
    logits(model, batch)
    below.remove(), entering.remove()
    out_below = seen["below"][0] if isinstance(seen["below"], tuple) else seen["below"]
    gen = model.generator
    gen.real_mask = batch["attention_mask"]
    with torch.no_grad():
        prompt = gen.generate(out_below)
    gen.real_mask = None
    assert torch.equal(seen["entering"][:, 4:], out_below[:, 4:])  # the real tokens pass unchanged
    assert torch.allclose(seen["entering"][:, :4], prompt)
    assert not torch.allclose(out_below[:, :4], prompt)


def test_lpt_prompt_depends_on_the_input_and_ignores_padding():
    hidden = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pooled = segment_means(hidden, mask, 2)
    full = torch.nn.functional.adaptive_avg_pool1d(hidden[0].T.unsqueeze(0), 2)[0].T
    assert torch.allclose(pooled[0], full)
    short = torch.nn.functional.adaptive_avg_pool1d(hidden[1, :3].T.unsqueeze(0), 2)[0].T
    assert torch.allclose(pooled[1], short)
    # A row shorter than the prompt repeats its tokens, as adaptive pooling does.
    h = hidden[1]
    expected = torch.stack([h[0], h[:2].mean(0), h[1:3].mean(0), h[2]])
    assert torch.allclose(segment_means(hidden[1:], mask[1:], 4)[0], expected)


def test_pedro_scales_start_at_one_and_become_input_dependent(tiny_llama):
    torch.manual_seed(0)
    model, data = build(tiny_llama, "pedro")
    layer = find_layers(model.classifier.model, tiny_llama.geometry)[0]
    gen = layer.prefalign_vector_generator
    x = torch.randn(2, 5, tiny_llama.geometry.hidden_size)
    assert all(torch.equal(v, torch.ones_like(v)) for v in gen.vectors(x))
    lk, lv, lff = gen.vectors(x)
    cfg = tiny_llama.model.config
    assert lk.shape == lv.shape == (2, 1, cfg.num_key_value_heads * cfg.head_dim)
    assert lff.shape == (2, 1, cfg.intermediate_size)
    train_steps(model, data, steps=3, weight_decay=WEIGHT_DECAY)
    with torch.no_grad():
        lk, _, _ = gen.vectors(x)
    assert not torch.allclose(lk[0], lk[1])  # per input, unlike (IA)^3
    assert gen.current is None  # nothing from the last forward is held


def test_houlsby_needs_the_projections_it_adapts(tiny_bert):
    with pytest.raises(ConfigError, match="attention_module"):
        build(tiny_bert, "houlsby", attention_module="nope")


def test_lpt_insert_layer_must_exist(tiny_bert):
    with pytest.raises(ConfigError, match="insert_layer"):
        build(tiny_bert, "lpt", insert_layer=tiny_bert.geometry.num_layers)


# -- parameter counts -------------------------------------------------------------------------------------------
def expected_count(lm, name, params, num_classes=2):
    c, g = lm.model.config, lm.geometry
    d, L, f = g.hidden_size, g.num_layers, c.intermediate_size
    head = 0 if g.is_decoder else d * num_classes + num_classes
    q_out = g.num_attention_heads * g.head_dim
    # per-layer linear output widths: BERT q, k, v, attention out, intermediate, output; LLaMA q k v o gate up down
    outs = [q_out, g.kv_dim, g.kv_dim, d, f, d] if g.model_type == "bert" else [q_out, g.kv_dim, g.kv_dim, d, f, f, d]
    if name == "bitfit" and params.get("rank"):
        r = params["rank"]
        return head + L * sum(o * r + r for o in outs)
    if name == "bitfit":
        if g.model_type == "bert":  # every bias: embeddings LN, q k v attn-out attn-LN intermediate output out-LN
            return head + d + L * (7 * d + f)
        return head + L * sum(outs)  # LLaMA has none: one hooked vector per linear layer
    if name == "houlsby":
        r = params.get("bottleneck", 18)
        return head + L * 2 * (2 * d * r + r + d)
    if name == "learned-adapter":  # one adapter of width r per block, plus 2 place and 5 activation logits
        r = params.get("bottleneck", 36)
        logits = (2 if params.get("placement", "search") == "search" else 0) + (
            5 if params.get("activation", "search") == "search" else 0
        )
        return head + L * (2 * d * r + r + d + logits)
    if name == "lpt":
        b = params.get("bottleneck", 1024)
        return head + 2 * d * b + b + d
    if name == "pedro":
        r = params.get("r", 16)
        return head + L * (d * r + r + (r + 1) * (2 * g.kv_dim + f))
    raise ValueError(name)


@pytest.mark.parametrize(
    ("name", "params"),
    VARIANTS
    + [
        ("lpt", {}),
        ("houlsby", {"bottleneck": 3}),
        ("pedro", {"r": 5}),
        ("learned-adapter", {"bottleneck": 3, "placement": "ffn", "activation": "relu"}),
    ],
)
def test_tunable_parameter_count_matches_the_hand_formula(backbone, name, params):
    model, _ = build(backbone, name, **params)
    n = sum(p.numel() for p in model.trainable_parameters().values())
    assert n == expected_count(backbone, name, params)


# -- training, round trips, hooks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
def test_training_moves_only_the_method_and_round_trips(backbone, tmp_path, name, params):
    torch.manual_seed(0)
    original = clone_state(backbone.model)
    model, data = build(backbone, name, **params)
    trainable = model.trainable_parameters()
    before = {n: p.detach().clone() for n, p in trainable.items()}
    own = {
        k: v.detach().clone()
        for k, v in model.classifier.model.state_dict().items()
        if f"classifier.model.{k}" not in trainable
    }
    train_steps(model, data, steps=3, weight_decay=WEIGHT_DECAY)
    assert not [n for n, p in trainable.items() if torch.equal(before[n], p.detach())]
    after = model.classifier.model.state_dict()
    assert all(torch.equal(own[k], after[k]) for k in own)  # the copy's frozen weights stay put
    assert all(torch.equal(original[k], v) for k, v in backbone.model.state_dict().items())
    assert count_hooks(backbone.model) == 0
    expected = logits(model, data[1])
    registry.save_method(model, tmp_path / "ckpt", backbone=backbone)
    loaded, meta = registry.load_method(tmp_path / "ckpt", backbone=backbone)
    assert meta["method"] == name and meta["method_config"] == model.config.to_dict()
    assert torch.equal(logits(loaded, data[1]), expected)


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=IDS)
def test_building_twice_never_stacks_hooks(backbone, name, params):
    first, data = build(backbone, name, **params)
    second, _ = build(backbone, name, **params)
    assert count_hooks(backbone.model) == 0  # build_method adapted private deep copies
    assert first.classifier.model is not second.classifier.model
    n = count_hooks(first.classifier.model)
    assert count_hooks(second.classifier.model) == n
    # Without the copy, a second build on the same object replaces the first one's hooks.
    private = dataclasses.replace(backbone, model=copy.deepcopy(backbone.model))
    spec = first.task
    a = registry.build_method(registry.method_config(name, params), private, spec, copy_backbone=False)
    b = registry.build_method(registry.method_config(name, params), private, spec, copy_backbone=False)
    assert count_hooks(private.model) == n
    assert sum(p.numel() for p in b.trainable_parameters().values()) == sum(
        p.numel() for p in first.trainable_parameters().values()
    )
    del a


@pytest.mark.parametrize(
    ("name", "params"),
    [v for v in VARIANTS if v[0] in ("lpt", "pedro", "houlsby", "learned-adapter")],
    ids=["houlsby", "learned-adapter", "lpt", "pedro"],
)
def test_a_deep_copy_runs_on_its_own_parameters(tiny_llama, name, params):
    torch.manual_seed(0)
    model, data = build(tiny_llama, name, **params)
    train_steps(model, data, steps=2, weight_decay=WEIGHT_DECAY)
    before = logits(model, data[0])
    twin = copy.deepcopy(model)
    assert torch.equal(logits(twin, data[0]), before)
    with torch.no_grad():
        for p in twin.trainable_parameters().values():
            p.add_(0.5)
    assert not torch.equal(logits(twin, data[0]), before)
    assert torch.equal(logits(model, data[0]), before)  # the original's hooks read the original's weights
