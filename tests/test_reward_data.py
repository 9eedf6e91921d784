"""Reward data and model: sources read into pairs and 0-4 ratings, bad rows named, the two losses against
hand-computed values, LoRA leaving the backbone bit-identical, decoders pooling their last real token."""

from __future__ import annotations

import gzip
import json
import math

import pytest
import torch

from conftest import build_tiny
from helpers_cli import write_csv, write_jsonl
from prefalign.errors import ConfigError, DataError
from prefalign.reward import (
    RewardConfig,
    RewardModel,
    RewardModelConfig,
    SourceConfig,
    bradley_terry,
    example_losses,
    masked_regression,
    read_source,
)


def test_pairs_come_from_jsonl_gz_csv_and_sharegpt_json(tmp_path):
    gz = tmp_path / "hh.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write(json.dumps({"chosen": "a good", "rejected": "a bad"}) + "\n")
    [ex] = read_source(SourceConfig(name="hh", path=str(gz)), 0, ["reward"])
    assert (ex.chosen, ex.rejected, ex.row, ex.is_pair) == ("a good", "a bad", 1, True)
    csv_path = write_csv(tmp_path / "p.csv", [{"q": "why", "better": "yes", "worse": "no"}])
    src = SourceConfig(name="c", path=str(csv_path), prompt_column="q", chosen_column="better", rejected_column="worse")
    [ex] = read_source(src, 3, ["reward"])
    assert (ex.source, ex.chosen, ex.rejected) == (3, "why\n\nyes", "why\n\nno")
    sharegpt = tmp_path / "demo.json"
    sharegpt.write_text(
        json.dumps(
            [
                {
                    "conversations": [{"from": "human", "value": "hi"}],
                    "chosen": {"from": "gpt", "value": "hello"},
                    "rejected": {"from": "gpt", "value": "go away"},
                }
            ]
        )
    )
    [ex] = read_source(SourceConfig(name="d", path=str(sharegpt), prompt_column="conversations"), 0, ["reward"])
    assert (ex.chosen, ex.rejected) == ("human: hi\n\nhello", "human: hi\n\ngo away")


def test_ratings_map_linearly_onto_0_4_and_unrated_attributes_are_masked(tmp_path):
    path = write_csv(
        tmp_path / "r.csv", [{"response": "ok", "help": "5", "safe": ""}, {"response": "no", "help": "1", "safe": "3"}]
    )
    src = SourceConfig(
        name="r", path=str(path), format="ratings", ratings={"helpful": "help", "safety": "safe"}, scale=[1, 5]
    )
    a, b = read_source(src, 0, ["helpful", "safety", "other"])
    assert a.ratings == [4.0, 0.0, 0.0] and a.mask == [1.0, 0.0, 0.0] and not a.is_pair
    assert b.ratings == [0.0, 2.0, 0.0] and b.mask == [1.0, 1.0, 0.0]


def test_bad_rows_get_one_line_naming_the_row(tmp_path):
    same = write_jsonl(tmp_path / "s.jsonl", [{"chosen": "x", "rejected": "y"}, {"chosen": "z z", "rejected": "z z"}])
    with pytest.raises(DataError, match=r"^source 'same' row 2: the chosen and rejected texts are equal"):
        read_source(SourceConfig(name="same", path=str(same)), 0, ["reward"])
    rated = write_jsonl(tmp_path / "r.jsonl", [{"response": "a", "h": 3}, {"response": "b", "h": 7}])
    src = SourceConfig(name="rt", path=str(rated), format="ratings", ratings={"reward": "h"}, scale=[1, 5])
    with pytest.raises(
        DataError, match=r"^source 'rt' row 2: rating 7 in column 'h' is outside the declared scale \[1, 5\]"
    ):
        read_source(src, 0, ["reward"])
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=r"^source 'none' has no rows"):
        read_source(SourceConfig(name="none", path=str(empty)), 0, ["reward"])
    with pytest.raises(DataError, match=r"row 1: no column 'chosen'"):
        read_source(SourceConfig(name="c", path=str(rated)), 0, ["reward"])


def test_config_names_what_is_missing():
    with pytest.raises(ConfigError, match="set validation"):
        RewardConfig.from_dict({"sources": [{"name": "a", "path": "a.jsonl"}]})
    with pytest.raises(ConfigError, match=r"rates \['safety'\], which model.attributes does not list"):
        RewardConfig.from_dict(
            {
                "sources": [{"name": "a", "path": "a.csv", "format": "ratings", "ratings": {"safety": "s"}}],
                "validation": [{"name": "v", "path": "v.jsonl"}],
            }
        )
    with pytest.raises(ConfigError, match="did you mean 'eta_w'"):
        RewardConfig.from_dict({"sources": [], "dorm": {"eta_ww": 1}})


def test_bradley_terry_and_masked_regression_against_hand_values():
    bt = bradley_terry(torch.tensor([0.0, 2.0, -1.0]))
    assert torch.allclose(bt, torch.tensor([math.log(2), math.log(1 + math.exp(-2)), math.log(1 + math.e)]))
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    target = torch.tensor([[2.0, 2.0, 0.0], [4.0, 1.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    # row 1: ((1-2)^2 + 0) / 2 = 0.5; row 2: ((0-4)^2 + 0) / 2 = 8
    assert masked_regression(pred, target, mask).tolist() == [0.5, 8.0]


def _pairs_and_ratings():
    from prefalign.reward import PreferenceExample

    return [
        PreferenceExample(0, 1, "the movie was good", "the movie was bad"),
        PreferenceExample(1, 1, "the plot was dull", ratings=[1.0, 0.0], mask=[1.0, 0.0]),
        PreferenceExample(0, 2, "a great film", "a boring film"),
    ]


def test_lora_trains_the_adapter_and_head_and_leaves_the_backbone_bit_identical(vocab_file):
    lm = build_tiny("bert", vocab_file)
    model = RewardModel(lm, RewardModelConfig(tuning="lora", attributes=["helpful", "safe"], max_length=16))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = model.trainable_parameters()
    assert trained and all("lora_" in n or n.startswith("head.") for n in trained)
    before = {n: p.detach().clone() for n, p in trained.items()}
    opt = torch.optim.SGD(list(trained.values()), lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        losses = example_losses(model, _pairs_and_ratings())
        assert losses.shape == (3,)
        losses.mean().backward()
        opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert any(not torch.equal(p, before[n]) for n, p in trained.items() if "lora_B" in n)
    full = RewardModel(build_tiny("bert", vocab_file), RewardModelConfig(tuning="full"))
    assert all(p.requires_grad for p in full.parameters())


def test_head_tuning_caches_the_frozen_features_and_trains_only_the_head(vocab_file, tmp_path):
    from prefalign.methods.checkpoint import write_checkpoint
    from prefalign.reward import PreferenceExample, load_reward_model
    from prefalign.reward.model import _FEATURES, predictions

    lm = build_tiny("bert", vocab_file)
    model = RewardModel(lm, RewardModelConfig(tuning="head", max_length=16, head_dropout=0.0))
    assert set(model.trainable_parameters()) == {"head.weight", "head.bias"}
    frozen = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    texts = ["the movie was good", "the plot was dull and the actor was poor"]
    model.train()
    assert not model.backbone.training  # the features are read without the backbone's dropout
    with torch.no_grad():
        direct = model.eval()(**model.tokenize(texts))  # the uncached forward
    model.train()
    assert torch.allclose(model.rewards(texts), direct, atol=1e-5)
    cache = _FEATURES[model.backbone][16]
    assert set(cache) == set(texts)
    u = {"head.weight": torch.ones_like(model.head.weight), "head.bias": torch.full_like(model.head.bias, 2.0)}
    margins, _ = predictions(model, [PreferenceExample(0, 1, texts[0], texts[1])], params=u)
    feats = model.cached_features(texts)
    assert margins.item() == pytest.approx(float(feats[0].sum() - feats[1].sum()), abs=1e-4)
    opt = torch.optim.SGD(list(model.trainable_parameters().values()), lr=0.5)
    example_losses(model, _pairs_and_ratings()[:1]).mean().backward()
    opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.backbone.named_parameters())
    write_checkpoint(
        tmp_path / "adapter",
        model.trainable_state_dict(),
        {"kind": "prefalign-reward", "base_model": "tiny", "model_config": model.cfg.to_dict()},
    )
    loaded = load_reward_model(tmp_path / "adapter", backbone=lm)
    assert torch.allclose(loaded.rewards(texts), model.eval().rewards(texts))


def test_a_decoder_pools_its_last_real_token_whatever_the_padding(vocab_file):
    model = RewardModel(build_tiny("llama", vocab_file), RewardModelConfig(max_length=16, head_dropout=0.0)).eval()
    with torch.no_grad():
        alone = model.rewards(["the movie was good"])
        padded = model.rewards(["the movie was good", "the movie was good and the plot was great and fine"])
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_long_texts_keep_their_end(vocab_file):
    model = RewardModel(build_tiny("bert", vocab_file), RewardModelConfig(max_length=8))
    ids = model.tokenize(["the " * 20 + "good"])["input_ids"][0].tolist()
    assert model.tokenizer.convert_ids_to_tokens(ids)[-2] == "good"
