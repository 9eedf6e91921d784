"""Bias-aware PEFT (the bias-aware PEFT paper): balance losses, interchange ablation, what trains, the runner."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import build_tiny, toy_sentiment
from helpers_cli import run_main, save_tiny_model, toy_rows, write_csv
from helpers_models import batches, clone_state, sentiment_setup, train_steps
from prefalign.errors import ConfigError
from prefalign.methods.bias_aware import balance_losses, contain_means, interchange_ablation, total_loss
from prefalign.methods.bias_aware.layer_selection import resolve_module
from prefalign.methods.registry import build_method, load_method, method_config, save_method

# -- eq. 1-4 against hand-computed values ----------------------------------------------------------------
# Four samples, three labels; gold labels 0, 0, 1, 2 (one-hot 'Contain').
SCORES = torch.tensor([[0.5, 0.3, 0.2], [0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
CONTAIN = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
# By hand: H^C = [(0.5+0.7)/2, 0.6, 0.4] = [0.6, 0.6, 0.4], ct_in = 1.6/3;
#          H^N = [(0.1+0.3)/2, (0.3+0.2+0.3)/3, (0.2+0.1+0.3)/3] = [0.2, 0.8/3, 0.2], ct_out = (0.4+0.8/3)/3.
BAL1 = math.sqrt(2 * (0.6 - 1.6 / 3) ** 2 + (0.4 - 1.6 / 3) ** 2) + math.sqrt(
    2 * (0.2 - 2 / 9) ** 2 + (0.8 / 3 - 2 / 9) ** 2
)
BAL2 = -math.sqrt(0.4**2 + (0.6 - 0.8 / 3) ** 2 + 0.2**2)


def test_contain_means_eq1_by_hand():
    h_c, h_n = contain_means(SCORES, CONTAIN)
    assert torch.allclose(h_c, torch.tensor([0.6, 0.6, 0.4]))
    assert torch.allclose(h_n, torch.tensor([0.2, 0.8 / 3, 0.2]))


def test_balance_losses_eq2_eq3_by_hand():
    out = balance_losses(SCORES, CONTAIN)
    assert out["bal1"].item() == pytest.approx(BAL1, abs=1e-6)
    assert out["bal2"].item() == pytest.approx(BAL2, abs=1e-6)
    assert out["labels_both_sides"].item() == 3
    capped = balance_losses(SCORES, CONTAIN, margin=0.5)
    assert capped["bal2"].item() == pytest.approx(-0.5)  # ||H^C - H^N|| = 0.558 > 0.5


def test_balance_losses_take_multi_label_samples():
    # Sample 0 carries labels 0 and 1 (TweetEmotion-style): it counts as 'Contain' for both.
    contain = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    h_c = [0.6, (0.3 + 0.6) / 2, 0.4]
    h_n = [0.2, (0.2 + 0.3) / 2, 0.2]
    out = balance_losses(SCORES, contain)
    norm = lambda v: math.sqrt(sum(x * x for x in v))  # noqa: E731
    assert out["bal1"].item() == pytest.approx(
        norm([h - sum(h_c) / 3 for h in h_c]) + norm([h - sum(h_n) / 3 for h in h_n]), abs=1e-6
    )
    assert out["bal2"].item() == pytest.approx(-norm([a - b for a, b in zip(h_c, h_n)]), abs=1e-6)


def test_balance_losses_skip_labels_absent_from_a_side():
    # Label 2 has no 'Contain' sample: H^C covers labels 0 and 1, L_bal2 too; H^N all three.
    scores, contain = SCORES[:3], CONTAIN[:3]
    out = balance_losses(scores, contain)
    h_c = [0.6, 0.6]
    h_n = [0.1, 0.25, (0.2 + 0.1 + 0.3) / 3]
    ct = sum(h_n) / 3
    assert out["bal1"].item() == pytest.approx(math.sqrt(sum((h - ct) ** 2 for h in h_n)), abs=1e-6)
    assert out["bal2"].item() == pytest.approx(-math.sqrt((h_c[0] - h_n[0]) ** 2 + (h_c[1] - h_n[1]) ** 2), abs=1e-6)
    assert out["labels_both_sides"].item() == 2


def test_balance_gradients_are_finite_when_a_label_is_missing_from_the_batch():
    # A batch of 16 over 4 classes often lacks a label: 0/0 there must not reach the gradients (it did: NaN at step 2).
    scores = SCORES[:3].clone().requires_grad_(True)
    out = balance_losses(scores, CONTAIN[:3])
    (out["bal1"] + out["bal2"]).backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0


def test_balance_gradients_are_finite_when_every_label_scores_alike():
    scores = torch.full((4, 3), 0.25, requires_grad=True)
    out = balance_losses(scores, CONTAIN)
    (out["bal1"] + out["bal2"]).backward()
    assert torch.isfinite(scores.grad).all()


def test_total_loss_eq4():
    assert (
        total_loss(torch.tensor(2.0), torch.tensor(3.0), torch.tensor(-1.0), 0.5, 2.0, 4.0).item() == 3.0
    )  # 1 + 6 - 4


# -- the model on a tiny LLaMA ---------------------------------------------------------------------------
@pytest.fixture
def setup(vocab_file):
    lm = build_tiny("llama", vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=16, soft=False)
    return lm, ds, spec, collator


def test_forward_loss_is_eq4_of_the_label_lm_loss_and_the_balance_terms(setup):
    lm, ds, spec, collator = setup
    params = {"layers": [1], "alpha": 2.0, "beta": 0.5, "gamma": 3.0}
    model = build_method(method_config("bias-aware", params), lm, spec)
    batch = collator(ds.examples[:8])
    out = model(**batch)
    # L_LM by hand: the gold label word's log-probability after the prompt, over the whole vocabulary.
    logits = model.classifier.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    last = batch["attention_mask"].sum(-1) - 1
    logp = torch.log_softmax(logits[torch.arange(8), last].float(), -1)
    gold_ids = torch.tensor(spec.verbalizer_ids)[batch["labels"]]
    lm_loss = -logp[torch.arange(8), gold_ids].mean()
    assert out.terms["loss_lm"].item() == pytest.approx(lm_loss.item(), rel=1e-5)
    probs = torch.softmax(logp[:, list(spec.verbalizer_ids)], -1)
    bal = balance_losses(probs, torch.nn.functional.one_hot(batch["labels"], 2))
    assert out.terms["loss_bal1"].item() == pytest.approx(bal["bal1"].item(), abs=1e-5)
    assert out.terms["loss_bal2"].item() == pytest.approx(bal["bal2"].item(), abs=1e-5)
    assert out.loss.item() == pytest.approx(
        2.0 * lm_loss.item() + 0.5 * bal["bal1"].item() + 3.0 * bal["bal2"].item(), abs=1e-5
    )


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, {"self_attn.o_proj.weight", "mlp.down_proj.weight"}),  # the paper's default: o and down
        ({"modules": ["q_proj", "v_proj"], "refine": False}, {"self_attn.q_proj.weight", "self_attn.v_proj.weight"}),
    ],
)
def test_only_the_chosen_modules_and_the_refine_vector_change(setup, params, expected):
    lm, ds, spec, collator = setup
    model = build_method(method_config("bias-aware", params), lm, spec)
    assert not model.trainable_parameters()  # nothing trains before the layer is chosen
    chosen = model.prepare(collator, ds, 0)["target_layer"]
    assert model.config.layers == [chosen]
    before = clone_state(model)
    train_steps(model, batches(ds, collator), steps=3)
    changed = _changed(before, clone_state(model))
    prefix = f"classifier.model.model.layers.{chosen}."
    want = {prefix + name for name in expected} | ({f"refine.{chosen}.vector"} if model.config.refine else set())
    assert changed == want
    assert set(model.trainable_parameters()) == want


def test_refine_vector_is_added_to_the_layer_input(setup):
    lm, ds, spec, collator = setup
    model = build_method(method_config("bias-aware", {"layers": [2], "modules": ["o_proj"]}), lm, spec)
    seen = {}

    def record(module, args, kwargs):
        seen["h"] = (args[0] if args else kwargs["hidden_states"]).clone()

    handle = model.classifier.model.model.layers[2].register_forward_pre_hook(record, with_kwargs=True)
    batch = collator(ds.examples[:2])
    with torch.no_grad():
        model(**batch)
        plain = seen.pop("h")
        model.refine["2"].vector.fill_(0.5)
        model(**batch)
    handle.remove()
    assert torch.allclose(seen["h"], plain + 0.5)  # our pre-hook ran first, then the test's


def test_save_load_round_trip_keeps_the_chosen_layer(setup, tmp_path):
    lm, ds, spec, collator = setup
    model = build_method(method_config("bias-aware", {}), lm, spec)
    model.prepare(collator, ds, 0)
    train_steps(model, batches(ds, collator), steps=2)
    model.eval()
    save_method(model, tmp_path / "a", backbone=lm)
    loaded, meta = load_method(tmp_path / "a", lm)
    assert meta["method_config"]["layers"] == model.config.layers
    batch = collator(ds.examples[:4])
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-6)


def test_bad_options_are_config_errors(setup, vocab_file):
    lm, ds, spec, collator = setup
    with pytest.raises(ConfigError, match="out of range"):
        build_method(method_config("bias-aware", {"layers": [7]}), lm, spec)
    with pytest.raises(ConfigError, match="matches no"):
        build_method(method_config("bias-aware", {"layers": [0], "modules": ["nope_proj"]}), lm, spec)
    with pytest.raises(ConfigError, match="bal2_margin"):
        build_method(method_config("bias-aware", {"balance_scores": "logprobs"}), lm, spec)
    bert = build_tiny("bert", vocab_file)
    _, bert_spec, _ = sentiment_setup(bert, n=4)
    with pytest.raises(ConfigError, match="decoder"):
        build_method(method_config("bias-aware", {}), bert, bert_spec)


# -- interchange ablation (appendix A) on a rigged model ---------------------------------------------------
@pytest.mark.parametrize("planted", [1, 2])
def test_interchange_ablation_finds_the_planted_layer(vocab_file, planted):
    lm = build_tiny("llama", vocab_file, num_hidden_layers=4)
    layers = lm.model.model.layers
    with torch.no_grad():  # only the planted layer's attention output carries anything
        for i, layer in enumerate(layers):
            layer.self_attn.o_proj.weight.mul_(4.0 if i == planted else 1e-3)
    ds, spec, collator = sentiment_setup(lm, n=8, soft=False)
    prompts = collator.prompt_ids(ds.examples)
    curve = interchange_ablation(lm.model, lm.geometry, prompts, [ex.label for ex in ds.examples], spec.verbalizer_ids)
    assert curve.layer == planted and len(curve.kl) == 4
    assert curve.kl[planted] > 20 * max(v for i, v in enumerate(curve.kl) if i != planted)
    assert all(b != g for b, g in zip(curve.biased, curve.gold))  # eq. 5: the biased label is never the gold one


def test_resolve_module_by_suffix_and_errors(tiny_llama):
    layer = tiny_llama.model.model.layers[0]
    assert resolve_module(layer, "down_proj", tiny_llama.geometry)[0] == "mlp.down_proj"
    with pytest.raises(ConfigError, match="proj"):
        resolve_module(layer, "proj", tiny_llama.geometry)


# -- the runner, the probe CLI ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def decoder_files(vocab_file, tmp_path_factory):
    d = tmp_path_factory.mktemp("ba")
    model = save_tiny_model("llama", vocab_file, d / "tiny-llama")
    corpus = d / "corpus.txt"
    corpus.write_text(" ".join(toy_sentiment(40, seed=3).examples[i].text for i in range(40)) + "\n")
    return {
        "model": model,
        "train": write_csv(d / "train.csv", toy_rows(48, seed=0)),
        "test": write_csv(d / "test.csv", toy_rows(16, seed=1)),
        "corpus": corpus,
    }


def _train(files, out, method, *extra):
    sets = [
        f"model.name={files['model']}",
        f"data.train={files['train']}",
        f"data.test={files['test']}",
        "data.template=review: {text} sentiment:",
        f"method.name={method}",
        f"training.output_dir={out}",
        "training.max_steps=2",
        "training.eval_steps=2",
        "training.logging_steps=1",
        "training.progress=false",
        "training.device=cpu",
        f"training.perplexity_text={files['corpus']}",
        "training.perplexity_tokens=64",
        "training.perplexity_window=32",
        *extra,
    ]
    return run_main(["train"] + [a for s in sets for a in ("--set", s)])


def test_runner_trains_bias_aware_and_reports_layer_f1_and_perplexity(decoder_files, tmp_path):
    rc, out, err = _train(decoder_files, tmp_path / "ba", "bias-aware")
    assert rc == 0, err
    metrics = json.loads((tmp_path / "ba" / "metrics.json").read_text())["metrics"]
    assert metrics["train_steps"] == 2 and 0 <= metrics["target_layer"] < 3
    assert 0 <= metrics["test_f1_weighted"] <= 1 and metrics["perplexity"] > 1
    rc, out, err = _train(decoder_files, tmp_path / "zs", "zero-shot")
    assert rc == 0, err
    base = json.loads((tmp_path / "zs" / "metrics.json").read_text())["metrics"]
    assert base["train_steps"] == 0 and "train_loss" not in base
    assert base["perplexity"] != metrics["perplexity"]  # the trained layer changed the LM


def test_runner_names_a_missing_perplexity_corpus(decoder_files, tmp_path):
    rc, _, err = _train(decoder_files, tmp_path / "x", "cc", "training.perplexity_text=/nonexistent/wiki.raw")
    assert rc != 0 and "perplexity_text" in err and "Traceback" not in err
    assert not (tmp_path / "x" / "metrics.json").exists()


def test_probe_target_layer_prints_the_curve_and_writes_a_png(decoder_files, tmp_path):
    out = tmp_path / "probe"
    rc, stdout, err = run_main(
        [
            "probe",
            "target-layer",
            "--model",
            str(decoder_files["model"]),
            "--data",
            str(decoder_files["train"]),
            "--template",
            "review: {text} sentiment:",
            "--examples",
            "6",
            "--output",
            str(out),
        ]
    )
    assert rc == 0, err
    assert "chosen target layer:" in stdout
    rows = (out / "layer_kl.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and sum(r.endswith(",1") for r in rows) == 1
    assert (out / "layer_kl.png").stat().st_size > 1000
    rc, _, err = run_main(["probe", "target-layer", "--data", str(decoder_files["train"]), "--output", str(out)])
    assert rc != 0 and "--model" in err
