"""The baselines of Tables 1-2: each trains only its own parameters, round-trips, and counts right."""

from __future__ import annotations

import pytest
import torch

from helpers_models import batches, sentiment_setup, train_steps, train_with_schedule
from prefalign.errors import ConfigError
from prefalign.methods import registry

# AdamW's default weight decay, as these tests always trained with: BitFit r=8's added bias on
# BERT's keys gets no gradient (a bias shared by every key cancels in the softmax) and moves only
# through the decay.
WEIGHT_DECAY = 0.01

PEFT_AND_FULL = ["lora", "adalora", "ia3", "prompt-tuning", "full-ft"]
HANDWRITTEN = [
    "bitfit",
    "houlsby",
    "learned-adapter",
    "lpt",
    "pedro",
]  # hook-based, tests/test_baselines_handwritten.py


@pytest.fixture(params=["bert", "llama"])
def backbone(request, vocab_file):
    from conftest import build_tiny

    return build_tiny(request.param, vocab_file)


def build(backbone, name, **params):
    ds, spec, collator = sentiment_setup(backbone, n=16)
    model = registry.build_method(registry.method_config(name, params), backbone, spec)
    return model, batches(ds, collator, 8)


# Every baseline trains each trainable parameter and leaves the caller's backbone alone: checked for every
# registered method at once in tests/test_method_contract.py.


@pytest.mark.parametrize("name", ["lora", "adalora", "ia3", "prompt-tuning"])
def test_peft_baselines_keep_the_copied_backbones_own_weights_frozen(backbone, name):
    torch.manual_seed(0)
    model, data = build(backbone, name)
    own = {
        k: v.detach().clone()
        for k, v in model.classifier.model.state_dict().items()
        if k not in model.trainable_parameters() and not any(t in k for t in ("lora_", "ia3_"))
    }
    train_steps(model, data, steps=3, weight_decay=WEIGHT_DECAY)
    after = model.classifier.model.state_dict()
    assert all(torch.equal(own[k], after[k]) for k in own)
    kinds = {"lora": "lora_A", "adalora": "lora_E", "ia3": "ia3_l", "prompt-tuning": "prompt.embedding"}
    assert any(kinds[name] in n for n in model.trainable_parameters())


def test_full_fine_tuning_trains_the_backbone(tiny_bert):
    model, _ = build(tiny_bert, "full-ft")
    names = set(model.trainable_parameters())
    backbone_names = {
        f"classifier.model.{n}" for n, _ in model.classifier.model.named_parameters() if not n.startswith("pooler.")
    }  # the mean-pooling head never reads the pooler
    assert backbone_names <= names and not any(".pooler." in n for n in names)


def test_lora_parameter_count_matches_rank_times_widths(tiny_llama):
    model, _ = build(tiny_llama, "lora", r=4)
    cfg = tiny_llama.model.config
    hd = cfg.head_dim  # this tiny model sets head_dim apart from hidden_size / heads
    q_out, v_out = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    per_layer = 4 * (cfg.hidden_size + q_out) + 4 * (cfg.hidden_size + v_out)
    n = sum(p.numel() for p in model.trainable_parameters().values())
    assert n == cfg.num_hidden_layers * per_layer


@pytest.mark.parametrize("name", PEFT_AND_FULL + HANDWRITTEN)
def test_save_load_round_trip(backbone, tmp_path, name):
    torch.manual_seed(0)
    model, data = build(backbone, name)
    train_steps(model, data, steps=2, weight_decay=WEIGHT_DECAY)
    model.eval()
    with torch.no_grad():
        expected = model(**data[0]).logits
    registry.save_method(model, tmp_path / "ckpt", backbone=backbone)
    loaded, meta = registry.load_method(tmp_path / "ckpt", backbone=backbone)
    assert meta["method"] == name
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**data[0]).logits, expected)


def test_adalora_prunes_to_the_target_budget(tiny_bert, tmp_path):
    torch.manual_seed(0)
    model, data = build(tiny_bert, "adalora", init_r=8, target_r=4, tinit_ratio=0.0, tfinal_ratio=0.2)
    train_with_schedule(model, data, steps=10, lr=1e-2, output_dir=tmp_path)
    ranks = model.ranks()
    assert ranks and sum(ranks.values()) <= 4 * len(ranks)  # the budget: target_r per module on average


def test_adalora_regularizer_is_the_orthogonality_term(tiny_bert):
    model, data = build(tiny_bert, "adalora", orth_reg_weight=0.5)
    model.train()
    out = model(**data[0])
    assert torch.allclose(out.loss, out.terms["loss_task"] + out.terms["loss_regularizer"])
    by_hand = []
    for name, p in model.classifier.model.named_parameters():
        if "lora_A" in name:
            by_hand.append(torch.linalg.norm(p @ p.T - torch.eye(p.shape[0])))
        elif "lora_B" in name:
            by_hand.append(torch.linalg.norm(p.T @ p - torch.eye(p.shape[1])))
    assert torch.allclose(out.terms["loss_regularizer"], 0.5 * torch.stack(by_hand).mean())


def test_prompt_tuning_text_init_copies_word_embeddings(tiny_bert):
    model, _ = build(tiny_bert, "prompt-tuning", num_virtual_tokens=3, prompt_init_text="good bad")
    ids = tiny_bert.tokenizer("good bad", add_special_tokens=False)["input_ids"]
    words = tiny_bert.model.get_input_embeddings().weight
    expected = words[[ids[0], ids[1], ids[0]]]
    assert torch.equal(model.prompt.embedding.weight.detach(), expected.detach())


def test_unknown_option_is_a_config_error(tiny_bert):
    with pytest.raises(ConfigError, match="rank|r"):
        registry.method_config("lora", {"rank": 4})


def test_peft_without_default_targets_asks_for_target_modules(vocab_file):
    from conftest import build_tiny

    lm = build_tiny("bert", vocab_file)
    lm.model.config.model_type = "mystery"
    ds, spec, _ = sentiment_setup(lm, n=4)
    with pytest.raises(ConfigError, match="target_modules"):
        registry.build_method(registry.method_config("lora", {}), lm, spec)
