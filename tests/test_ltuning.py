"""L-Tuning (ltuning-prefix, ltuning-prompt) on tiny BERT and tiny LLaMA with grouped-query attention:
appendix A.5's parameter counts, a frozen backbone, NLI pairs (A.3), argmax prediction (A.4), the
cached label pass, checkpoints and training.run.train()."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from conftest import build_tiny, toy_sentiment
from helpers_cli import save_tiny_model
from helpers_models import batches, clone_state, sentiment_setup, train_steps
from prefalign.data.collator import Collator, PromptFormat, build_task_spec
from prefalign.data.examples import Example, TaskDataset
from prefalign.errors import ConfigError
from prefalign.methods import registry
from prefalign.methods.ltuning import LTuningModel, parameter_count
from prefalign.models.classifier import TaskSpec
from prefalign.training.trainer import accuracy_metrics

# Tiny LLaMA whose key/value width (2 heads x 16) differs from its hidden size (48): Z must emit kv_dim.
GQA = dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
VARIANTS = [("ltuning-prefix", {}), ("ltuning-prefix", {"pooling": "scores"}), ("ltuning-prompt", {})]


@pytest.fixture(params=["bert", "llama"])
def backbone(request, vocab_file):
    return build_tiny(request.param, vocab_file, **(GQA if request.param == "llama" else {}))


def build(lm, name="ltuning-prefix", n=16, **params):
    ds, spec, collator = sentiment_setup(lm, n=n)
    model = registry.build_method(registry.method_config(name, params), lm, spec)
    return model, batches(ds, collator, 8)


def four_class(n=24, seed=0) -> TaskDataset:
    rng = random.Random(seed)
    words = ["bad", "dull", "good", "superb"]
    examples = [Example(text=f"the movie was {words[i % 4]}", label=i % 4) for i in range(n)]
    rng.shuffle(examples)
    return TaskDataset(examples, ["awful", "poor", "fine", "great"], name="four")


# -- appendix A.5: parameter counts ------------------------------------------------------------------------
@pytest.mark.parametrize("name,params", VARIANTS)
def test_trainable_parameter_count_equals_the_a5_formula(backbone, name, params):
    model, _ = build(backbone, name, **params)
    geo = backbone.geometry
    d, L, kv, l = geo.hidden_size, geo.num_layers, geo.kv_dim, model.label_length
    assert l == 3  # [CLS] negative [SEP] / [CLS] positive [SEP]
    count = sum(p.numel() for p in model.trainable_parameters().values())
    assert count == parameter_count(geo, model.form, l, pooling=params.get("pooling", "attention"))
    if name == "ltuning-prompt":
        assert count == d * (d + 2)  # A.5: d^2 for G plus 2d for the head
    elif params.get("pooling") == "scores":
        assert count == d + 2 * l * (l * L * kv) + 2 * d  # A.5, with Z emitting kv_dim-wide rows
        if kv == d:  # MHA (tiny BERT): A.5's closed form, literally
            assert count == 2 * l**2 * L * d + 3 * d
    else:
        assert count == d + 2 * l * (d * L * kv) + 2 * d  # the pooled vector is d wide
    if model.form == "prefix":
        assert tuple(model.label_prefixes().shape) == (2, L, 2, l, kv)
    if geo.is_decoder:
        assert kv == 32 and d == 48


def test_the_counts_docs_methods_ltuning_md_lists_for_minilm_and_smollm2():
    from prefalign.models.introspect import ModelGeometry

    minilm = ModelGeometry("bert", False, 6, 384, 12, 12, 32)
    smollm2 = ModelGeometry("llama", True, 30, 576, 9, 3, 64)
    table = {
        (minilm, 3): (42_624, 5_309_568),
        (minilm, 7): (226_944, 12_387_456),
        (smollm2, 1): (13_248, 6_637_248),
        (smollm2, 5): (289_728, 33_179_328),
    }
    for (geo, l), (scores, attention) in table.items():
        assert parameter_count(geo, "prefix", l, pooling="scores") == scores
        assert parameter_count(geo, "prefix", l, pooling="attention") == attention
    d = 384
    assert parameter_count(minilm, "prefix", 3, pooling="scores") == 2 * 3**2 * 6 * d + 3 * d  # A.5, MHA
    assert parameter_count(minilm, "prompt", 3) == 148_224 and parameter_count(smollm2, "prompt", 1) == 332_928


def test_the_lm_score_head_has_no_parameters_of_its_own(vocab_file):
    lm = build_tiny("llama", vocab_file, **GQA)
    model, data = build(lm, "ltuning-prefix", score_head="lm")
    count = sum(p.numel() for p in model.trainable_parameters().values())
    assert count == parameter_count(lm.geometry, "prefix", model.label_length, score_head="lm")
    assert not any(n.startswith("classifier.head") for n in model.trainable_parameters())
    model.eval()
    with torch.no_grad():
        assert model(**data[0]).logits.shape == (8, 2)


# -- the frozen model is untouched; every trainable parameter moves -------------------------------------------
@pytest.mark.parametrize("name,params", VARIANTS)
def test_frozen_backbone_is_bit_identical_and_every_trainable_parameter_changes(backbone, name, params):
    torch.manual_seed(0)
    model, data = build(backbone, name, **params)
    assert model.classifier.model is backbone.model  # no copy: L-Tuning never changes the backbone
    before_backbone = clone_state(backbone.model)
    trainable = model.trainable_parameters()
    assert trainable and not any(n.startswith("classifier.model.") for n in trainable)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    cached = model.label_hidden.clone()
    train_steps(model, data, steps=3)
    after = backbone.model.state_dict()
    for key, tensor in before_backbone.items():
        assert torch.equal(tensor, after[key]), f"backbone tensor {key} changed"
    for key, p in backbone.model.named_parameters():
        assert not p.requires_grad and p.grad is None, key
    unchanged = [n for n, p in trainable.items() if torch.equal(before[n], p.detach())]
    assert not unchanged, f"parameters that never changed: {unchanged}"
    assert torch.equal(model.label_hidden, cached)


# -- appendix A.3: NLI pairs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pairing", ["both", "split"])
def test_a_negative_pair_never_uses_the_true_label(tiny_bert, pairing):
    ds = four_class()
    spec = build_task_spec(ds, tiny_bert.geometry, tiny_bert.tokenizer, PromptFormat())
    model = registry.build_method(
        registry.method_config("ltuning-prefix", {"pairing": pairing, "negative_seed": 3}), tiny_bert, spec
    )
    gen = torch.Generator().manual_seed(0)
    drawn = {k: set() for k in range(4)}
    for _ in range(300):
        b = int(torch.randint(1, 12, (1,), generator=gen))
        true = torch.randint(0, 4, (b,), generator=gen)
        rows, labels, targets = model.sample_pairs(true)
        positive = targets == 1
        assert torch.equal(labels[positive], true[rows[positive]])
        negative_true = true[rows[~positive]]
        assert not (labels[~positive] == negative_true).any()
        for t, y in zip(negative_true.tolist(), labels[~positive].tolist()):
            drawn[t].add(y)
        if pairing == "both":  # every example once with its label and once with a wrong one
            assert torch.equal(rows, torch.cat([torch.arange(b), torch.arange(b)])) and positive.sum() == b
        else:  # eq. 3: the first half true, the rest false
            assert torch.equal(rows, torch.arange(b)) and int(positive.sum()) == (b + 1) // 2
    assert drawn == {k: {0, 1, 2, 3} - {k} for k in range(4)}  # every wrong label is drawn
    # Through forward, on real batches: the pairs it trained on.
    collator = Collator(tiny_bert.tokenizer, tiny_bert.geometry, 4, PromptFormat())
    model.train()
    for batch in batches(ds, collator, 8):
        model(**batch)
        pairs = model.last_pairs
        wrong = pairs["targets"] == 0
        assert not (pairs["labels"][wrong] == batch["labels"][pairs["rows"][wrong]]).any()


def test_negatives_are_reproducible_from_the_seed(tiny_bert):
    spec4 = TaskSpec(num_classes=4, label_names=("a", "b", "c", "d"))
    true = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    draws = []
    for seed in (5, 5, 6):
        model = registry.build_method(
            registry.method_config("ltuning-prompt", {"negative_seed": seed}), tiny_bert, spec4
        )
        draws.append(torch.cat([model.sample_pairs(true)[1] for _ in range(5)]))
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_soft_targets_pair_the_text_with_their_most_likely_label(tiny_bert):
    model, data = build(tiny_bert, "ltuning-prefix")
    batch = dict(data[0])
    batch["target_dist"] = torch.tensor([[0.3, 0.7], [0.8, 0.2]] * 4)
    batch["labels"] = torch.zeros(8, dtype=torch.long)
    model.train()
    model(**batch)
    pairs = model.last_pairs
    true_pairs = pairs["labels"] == pairs["true"][pairs["rows"]]
    assert torch.equal(pairs["labels"][true_pairs], torch.tensor([1, 0] * 4))
    # each pair's BCE target is the soft target of its label: 0.7 / 0.8 for the true pairs, 0.3 / 0.2 otherwise
    assert torch.equal(pairs["targets"], batch["target_dist"][pairs["rows"], pairs["labels"]])


# -- appendix A.4: prediction is the argmax over labels ------------------------------------------------------
@pytest.mark.parametrize("name,params", VARIANTS)
def test_eval_logits_score_every_label_and_prediction_is_their_argmax(backbone, name, params):
    torch.manual_seed(0)
    model, data = build(backbone, name, **params)
    train_steps(model, data, steps=2)
    model.eval()
    batch = data[0]
    with torch.no_grad():
        out = model(**batch)
        b, c = batch["input_ids"].shape[0], 2
        assert out.logits.shape == (b, c) and torch.isfinite(out.loss)
        # Each entry is the score of that (text, label) pair scored alone.
        tt = batch.get("token_type_ids")
        for i in (0, 5):
            for k in range(c):
                alone = model.score_pairs(
                    batch["input_ids"], batch["attention_mask"], torch.tensor([i]), torch.tensor([k]), tt
                )
                torch.testing.assert_close(out.logits[i, k], alone[0], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(out.logits[:, 0], out.logits[:, 1])  # the label conditions the score
    predicted = out.logits.argmax(-1)
    metrics = accuracy_metrics(EvalPrediction(predictions=out.logits.numpy(), label_ids=batch["labels"].numpy()))
    assert metrics["accuracy"] == pytest.approx((predicted == batch["labels"]).float().mean().item())
    # The eval loss is the expected training loss: half true pairs, half wrong ones.
    per = torch.nn.functional.binary_cross_entropy_with_logits(
        out.logits, torch.nn.functional.one_hot(batch["labels"], 2).float(), reduction="none"
    )
    onehot = torch.nn.functional.one_hot(batch["labels"], 2).bool()
    assert out.loss.item() == pytest.approx(0.5 * (per[onehot].mean() + per[~onehot].mean()).item(), rel=1e-5)


# -- the frozen pass over label tokens runs once ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["ltuning-prefix", "ltuning-prompt"])
def test_label_states_are_computed_once_not_every_step(backbone, name, monkeypatch):
    calls = {"encode": 0}
    original = LTuningModel.encode_labels

    def counting(self):
        calls["encode"] += 1
        return original(self)

    monkeypatch.setattr(LTuningModel, "encode_labels", counting)
    model, data = build(backbone, name)
    assert calls["encode"] == 1
    passes = []
    hook = model.classifier.backbone().register_forward_hook(
        lambda m, args, kw, out: passes.append(1), with_kwargs=True
    )
    train_steps(model, data, steps=3)
    model.eval()
    with torch.no_grad():
        model(**data[0])
    hook.remove()
    assert calls["encode"] == 1 and len(passes) == 4  # one backbone pass per step, text pairs only
    assert "label_hidden" not in model.state_dict() and "label_hidden" not in model.trainable_state_dict()
    expected = original(model)
    assert torch.equal(model.label_hidden, expected)
    assert model.label_hidden.shape == (2, model.label_length, backbone.geometry.hidden_size)


# -- label texts -------------------------------------------------------------------------------------------------
def test_label_texts_come_from_the_names_a_mapping_or_a_list(tiny_bert):
    ds, spec, _ = sentiment_setup(tiny_bert, n=8)
    tok = tiny_bert.tokenizer
    by_name = registry.build_method(registry.method_config("ltuning-prefix", {}), tiny_bert, spec)
    assert by_name.label_texts == ["negative", "positive"]
    mapped = registry.build_method(
        registry.method_config("ltuning-prefix", {"label_texts": {"positive": "very good"}}), tiny_bert, spec
    )
    assert mapped.label_texts == ["negative", "very good"]
    dot = tok.convert_tokens_to_ids(".")
    ids = [tok.convert_tokens_to_ids(w) for w in ("[CLS]", "negative", "[SEP]", "very", "good")]
    # Shorter labels are padded with '.' inside the special tokens, as the authors' collator does.
    assert mapped.label_ids.tolist() == [[ids[0], ids[1], dot, ids[2]], [ids[0], ids[3], ids[4], ids[2]]]
    listed = registry.build_method(
        registry.method_config("ltuning-prompt", {"label_texts": ["bad", "good"], "label_length": 5}), tiny_bert, spec
    )
    assert listed.label_texts == ["bad", "good"] and listed.label_ids.shape == (2, 5)
    bare = registry.build_method(
        registry.method_config("ltuning-prompt", {"label_special_tokens": False}), tiny_bert, spec
    )
    assert bare.label_ids.shape == (2, 1)
    for bad in ({"label_texts": {"neutral": "x"}}, {"label_texts": ["one"]}, {"label_length": 2}):
        with pytest.raises(ConfigError):
            registry.build_method(registry.method_config("ltuning-prefix", bad), tiny_bert, spec)
    with pytest.raises(ConfigError, match="label texts|label names"):
        registry.build_method(registry.method_config("ltuning-prefix", {}), tiny_bert, TaskSpec(num_classes=2))


def test_registry_checks_the_prefix_reaches_the_model_and_copies_no_backbone(tiny_llama, monkeypatch):
    checked = []
    monkeypatch.setattr(registry, "check_prefix_reaches_model", lambda model, geo: checked.append(model))
    _, spec, _ = sentiment_setup(tiny_llama, n=4)
    for name in ("ltuning-prefix", "ltuning-prompt"):
        model = registry.build_method(registry.method_config(name, {}), tiny_llama, spec)
        assert model.name == name and model.classifier.model is tiny_llama.model
    assert checked == [tiny_llama.model]  # the prefix variant only


def test_tasks_it_cannot_run_are_config_errors(tiny_bert, tiny_llama):
    with pytest.raises(ConfigError, match="multiple-choice"):
        registry.build_method(
            registry.method_config("ltuning-prefix", {}),
            tiny_bert,
            TaskSpec(2, multiple_choice=True, label_names=("a", "b")),
        )
    with pytest.raises(ConfigError, match="generation"):
        registry.build_method(registry.method_config("ltuning-prompt", {}), tiny_llama, TaskSpec(2, generation=True))
    with pytest.raises(ConfigError, match="decoder"):
        registry.build_method(
            registry.method_config("ltuning-prefix", {"score_head": "lm"}),
            tiny_bert,
            TaskSpec(2, label_names=("a", "b")),
        )
    with pytest.raises(ConfigError):
        registry.method_config("ltuning-prefix", {"pooling": "max"})


# -- checkpoints and the runner -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,params", [("ltuning-prefix", {"label_texts": {"positive": "very good"}}), ("ltuning-prompt", {})]
)
def test_save_load_round_trip_gives_identical_logits(backbone, tmp_path, name, params):
    torch.manual_seed(0)
    model, data = build(backbone, name, **params)
    train_steps(model, data, steps=2)
    model.eval()
    with torch.no_grad():
        expected = model(**data[0]).logits
    registry.save_method(model, tmp_path / "ckpt", backbone=backbone)
    saved = json.loads((tmp_path / "ckpt" / "prefalign_config.json").read_text())
    assert saved["task"]["label_names"] == ["negative", "positive"]
    loaded, meta = registry.load_method(tmp_path / "ckpt", backbone=backbone)
    assert meta["method"] == name and loaded.label_texts == model.label_texts
    assert set(loaded.trainable_state_dict()) == set(model.trainable_state_dict())
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**data[0]).logits, expected)


@pytest.mark.parametrize("kind,name", [("bert", "ltuning-prefix"), ("llama", "ltuning-prompt")])
def test_three_steps_of_runner_train_on_a_saved_model(vocab_file, tmp_path, kind, name):
    from prefalign.inference import evaluate, load_for_inference, predict_proba
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    model_dir = save_tiny_model(kind, vocab_file, tmp_path / f"tiny-{kind}")
    data = {"max_length": 16}
    if kind == "llama":
        data["template"] = "review: {text} sentiment:"
    cfg = ExperimentConfig.from_dict(
        {
            "model": {"name": str(model_dir)},
            "data": data,
            "method": {"name": name},
            "training": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 3,
                "eval_steps": 2,
                "batch_size": 4,
                "eval_batch_size": 4,
                "learning_rate": 1e-2,
                "device": "cpu",
                "progress": False,
                "logging_steps": 1,
            },
        }
    )
    result = train(cfg, splits=(toy_sentiment(12), toy_sentiment(4, seed=1), toy_sentiment(4, seed=2)))
    m = result.metrics
    assert m["train_steps"] == 3 and 0.0 <= m["test_accuracy"] <= 1.0 and "validation_loss" in m
    logged = [h for h in result.log_history if "loss" in h]
    assert logged and all("loss_true_pairs" in h and "pair_accuracy" in h for h in logged)
    model, backbone, collator, meta = load_for_inference(str(tmp_path / "run" / "adapter"))
    assert meta["method"] == name
    test = toy_sentiment(4, seed=2)
    assert evaluate(model, collator, test)["accuracy"] == pytest.approx(m["test_accuracy"])
    probs = predict_proba(model, collator, test)
    assert probs.shape == (4, 2) and np.allclose(probs.sum(-1), 1.0)
