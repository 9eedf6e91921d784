"""The bias-aware PEFT paper's baselines (appendix D): CC, DC, CRISPR, LoRA on all linear layers; the
TweetEval tasks, weighted F1 and perplexity they are reported with."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import build_tiny
from helpers_models import clone_state, sentiment_setup
from prefalign.errors import ConfigError, DataError
from prefalign.methods.baselines.calibration import calibrate, domain_texts
from prefalign.methods.registry import build_method, load_method, method_config, save_method


# -- CC / DC: worked examples ------------------------------------------------------------------------------
def test_calibrate_worked_examples():
    # p = (0.6, 0.3, 0.1), p_cf = (0.5, 0.25, 0.25): p / p_cf = (1.2, 1.2, 0.4), sum 2.8 -> (3/7, 3/7, 1/7).
    q = calibrate(torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(q, torch.tensor([3 / 7, 3 / 7, 1 / 7]))
    # A prior leaning to label 0 flips the prediction: (0.5, 0.4, 0.1) / (0.7, 0.2, 0.1) = (5/7, 2, 1) -> label 1.
    q = calibrate(torch.tensor([0.5, 0.4, 0.1]), torch.tensor([0.7, 0.2, 0.1]))
    total = 5 / 7 + 2 + 1
    assert torch.allclose(q, torch.tensor([5 / 7 / total, 2 / total, 1 / total])) and q.argmax() == 1


def test_domain_texts_draw_in_domain_words_at_the_mean_length():
    texts = ["a b c d", "e f", "g h i"]  # 9 words in 3 texts: length 3
    out = domain_texts(texts, 5, seed=0)
    assert len(out) == 5 and all(len(t.split()) == 3 for t in out)
    assert set(w for t in out for w in t.split()) <= set("abcdefghi")
    assert out == domain_texts(texts, 5, seed=0) and out != domain_texts(texts, 5, seed=1)
    with pytest.raises(ConfigError):
        domain_texts(["", " "], 2, seed=0)


@pytest.fixture
def decoder(vocab_file):
    lm = build_tiny("llama", vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=16, soft=False)
    return lm, ds, spec, collator


@pytest.mark.parametrize("method", ["cc", "dc"])
def test_cc_dc_divide_by_the_prior_of_their_inputs(decoder, method):
    lm, ds, spec, collator = decoder
    model = build_method(method_config(method, {}), lm, spec)
    assert not model.trainable_parameters()
    model.prepare(collator, ds, 0)
    inputs = model.inputs(ds)
    if method == "cc":
        assert [ex.text for ex in inputs] == ["N/A", "", "[MASK]"]
    else:
        assert len(inputs) == 20
    # The prior by hand: the mean label-word distribution of the untuned model over those inputs.
    zero = build_method(method_config("zero-shot", {}), lm, spec)
    with torch.no_grad():
        prior = torch.softmax(zero(**{k: v for k, v in collator(inputs).items() if k != "labels"}).logits, -1).mean(0)
        batch = collator(ds.examples[:8])
        raw = torch.softmax(zero(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
        got = torch.softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
    assert torch.allclose(model.log_prior.exp(), prior, atol=1e-6)
    assert torch.allclose(got, calibrate(raw, prior), atol=1e-5)


def test_calibration_survives_save_and_load(decoder, tmp_path):
    lm, ds, spec, collator = decoder
    model = build_method(method_config("dc", {"num_samples": 4}), lm, spec)
    model.prepare(collator, ds, 0)
    save_method(model, tmp_path / "dc", backbone=lm)
    loaded, _ = load_method(tmp_path / "dc", lm)
    assert torch.equal(loaded.log_prior, model.log_prior) and loaded.log_prior.abs().sum() > 0


def test_calibration_needs_a_decoder(vocab_file):
    bert = build_tiny("bert", vocab_file)
    _, spec, _ = sentiment_setup(bert, n=4)
    with pytest.raises(ConfigError, match="decoder"):
        build_method(method_config("cc", {}), bert, spec)


# -- CRISPR ---------------------------------------------------------------------------------------------------
def test_crispr_prunes_the_top_attributed_neurons_and_nothing_else(decoder, tmp_path):
    lm, ds, spec, collator = decoder
    model = build_method(method_config("crispr", {"num_neurons": 5, "probe_examples": 8}), lm, spec)
    assert not model.trainable_parameters()
    before = clone_state(model)
    model.prepare(collator, ds, 0)
    neurons = model.config.neurons
    assert len(neurons) == 5 and len({tuple(n) for n in neurons}) == 5
    after = clone_state(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"classifier.model.model.layers.{l}.mlp.down_proj.weight" for l, _ in neurons}
    for layer, unit in neurons:
        w = after[f"classifier.model.model.layers.{layer}.mlp.down_proj.weight"]
        assert torch.all(w[:, unit] == 0)
    # The pruned set is the top of the attribution (activation x gradient of log p(y^) - log p(y)).
    import random

    picked = random.Random(0).sample(range(len(ds)), 8)
    fresh = build_method(method_config("crispr", {"num_neurons": 5, "probe_examples": 8}), lm, spec)
    fresh.eval()
    attr = fresh.attribution(
        collator([ds.examples[i] for i in picked]), torch.tensor([ds.examples[i].label for i in picked])
    )
    top = {(int(i // attr.shape[1]), int(i % attr.shape[1])) for i in torch.topk(attr.flatten(), 5).indices}
    assert top == {tuple(n) for n in neurons}
    # A checkpoint re-prunes the same neurons on a fresh backbone.
    save_method(model, tmp_path / "crispr", backbone=lm)
    loaded, _ = load_method(tmp_path / "crispr", lm)
    batch = collator(ds.examples[:4])
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-6)


# -- LoRA over all linear modules (appendix D) ------------------------------------------------------------------
def test_lora_all_linear_adapts_every_projection_but_not_the_lm_head(tiny_llama):
    from conftest import toy_sentiment
    from helpers_models import DECODER_PROMPT
    from prefalign.data.collator import build_task_spec

    spec = build_task_spec(toy_sentiment(4), tiny_llama.geometry, tiny_llama.tokenizer, DECODER_PROMPT)
    model = build_method(method_config("lora", {"r": 8, "target_modules": ["all-linear"]}), tiny_llama, spec)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in model.trainable_parameters() if "lora_A" in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("lm_head" in n for n in model.trainable_parameters())
    assert all(p.shape[0] == 8 for n, p in model.trainable_parameters().items() if "lora_A" in n)


# -- weighted F1, perplexity ---------------------------------------------------------------------------------
def test_weighted_f1_by_hand():
    from transformers import EvalPrediction

    from prefalign.training.trainer import accuracy_metrics

    labels = np.array([0, 0, 0, 1])
    preds = np.array([0, 0, 1, 1])
    logits = np.eye(2)[preds]
    m = accuracy_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    # class 0: P 1, R 2/3, F1 0.8 (3 samples); class 1: P 1/2, R 1, F1 2/3 (1 sample).
    assert m["accuracy"] == 0.75
    assert m["f1_weighted"] == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 4)


def test_perplexity_is_exp_of_the_mean_token_nll(tiny_llama):
    from prefalign.evaluation.perplexity import perplexity

    text = "the movie was very good and the plot was really bad but the actor was superb"
    got = perplexity(tiny_llama.model, tiny_llama.tokenizer, text, max_tokens=12, window=6)
    ids = tiny_llama.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0][:12]
    nll = []
    with torch.no_grad():
        for chunk in (ids[:6], ids[6:12]):
            out = tiny_llama.model(input_ids=chunk[None], labels=chunk[None])  # HF's mean over 5 predicted tokens
            nll.append(out.loss.item() * 5)
    assert got["perplexity_tokens"] == 10
    assert got["perplexity"] == pytest.approx(math.exp(sum(nll) / 10), rel=1e-5)


# -- TweetEval in its original layout ------------------------------------------------------------------------
def _tweeteval(folder, texts, labels, mapping="0\tnot-hate\n1\thate\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mapping.txt").write_text(mapping)
    for split in ("train", "val", "test"):
        (folder / f"{split}_text.txt").write_text("\n".join(texts) + "\n")
        (folder / f"{split}_labels.txt").write_text("\n".join(labels) + "\n")
    return folder


def test_tweeteval_reads_the_original_files_and_skips_blank_tweets(tmp_path):
    from prefalign.tasks import get_task, load_task

    folder = _tweeteval(tmp_path / "hate", ["i hate it\u2028really", "", "nice day"], ["1", "0", "0"])
    train, val, test = load_task("tweeteval-hate", folder)
    assert train.label_names == ["not-hate", "hate"] and len(train) == 2 and len(test) == 2
    assert train[0].text == "i hate it\u2028really" and train[0].label == 1  # split on \n only
    assert get_task("tweeteval-emotion").verbalizers == [" anger", " joy", " optimism", " sadness"]
    bad = _tweeteval(tmp_path / "bad", ["a", "b"], ["0"])
    with pytest.raises(DataError, match="lines"):
        load_task("tweeteval-hate", bad)
    bad = _tweeteval(tmp_path / "bad2", ["a"], ["7"])
    with pytest.raises(DataError, match="label id"):
        load_task("tweeteval-hate", bad)


# -- compare: a row's own seeds, extra metric columns ------------------------------------------------------------
def test_compare_rows_with_own_seeds_and_extra_metric_columns():
    from prefalign.compare.config import CompareConfig, DatasetEntry, MethodEntry
    from prefalign.compare.grid import plan
    from prefalign.compare.report import markdown_tables

    cfg = CompareConfig(
        seeds=[0, 1, 2],
        methods=[
            MethodEntry(name="zero-shot", label="Untuned", seeds=[0]),
            MethodEntry(name="bias-aware", label="Ours"),
        ],
        datasets=[
            DatasetEntry(
                name="TE", data={"task": "tweeteval-emotion"}, metric="f1_weighted", also=["accuracy", "perplexity"]
            )
        ],
    )
    runs = plan(cfg)
    assert [(r.method.label, r.seed) for r in runs] == [("Untuned", 0), ("Ours", 0), ("Ours", 1), ("Ours", 2)]

    def record(method, seed, f1, ppl):
        return {
            "model": "minilm",
            "method": method,
            "column": "TE",
            "metric": "f1_weighted",
            "status": "ok",
            "seed": seed,
            "tunable_params": 0 if method == "Untuned" else 1500,
            "metrics": {"test_f1_weighted": f1, "test_accuracy": f1 + 0.1, "perplexity": ppl},
        }

    results = [record("Untuned", 0, 0.5, 20.0)] + [record("Ours", s, 0.6 + s / 100, 21.0 + s) for s in range(2)]
    table = markdown_tables(cfg, results)
    assert "| TE (f1_weighted) | TE (accuracy) | TE (perplexity) |" in table
    assert "| Untuned | 0 | 50.0 | 60.0 | 20.00 |" in table  # training-free: 0 parameters; 1 of its 1 seed
    assert "60.5 (2/3 seeds)" in table and "21.50 (2/3 seeds)" in table
    assert "Rows with their own seeds: Untuned seeds 0." in table
    cfg.datasets[0].also.append("target_layer")  # reported by no run here: a plain '–', no seed count
    assert "| 21.50 (2/3 seeds) | – |" in markdown_tables(cfg, results)
    with pytest.raises(ConfigError, match="seeds is empty"):
        MethodEntry(name="cc", seeds=[])
