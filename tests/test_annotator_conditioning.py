"""Annotator models: data.target annotators (one example per annotation row), the three conditionings
(per-annotator heads, annotator embeddings, per-annotator prefix offsets) on LoRA and DCPC, the
population fallback for unseen annotators, aggregation over an item's annotators, save/load with the
annotator vocabulary."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers_models import clone_state, train_steps
from prefalign.annotations import AnnotationWarning
from prefalign.data.collator import Collator, build_task_spec
from prefalign.data.examples import Example
from prefalign.errors import ConfigError
from prefalign.methods import build_method, load_method, method_config, save_method
from prefalign.methods.conditioning import UNSEEN, AnnotatorVocab, annotator_inputs
from prefalign.tasks import load_task

FIXTURES = Path(__file__).parent / "data" / "annotations"
pytestmark = pytest.mark.filterwarnings("ignore::prefalign.annotations.AnnotationWarning")


def quiet_load(name: str, folder: Path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        return load_task(name, folder, 0, options)


def setup(lm, name: str, kind: str, task: str = "md-agreement", **params):
    """A method with ``kind`` conditioning on ``task``'s annotation rows, its collator and the splits."""
    folder = FIXTURES / ("popquorn" if task == "popquorn" else "lewidi")
    train, val, test = quiet_load(task, folder, target="annotators")
    vocab = AnnotatorVocab.from_examples(train.examples)
    spec = build_task_spec(train, lm.geometry, lm.tokenizer, Collator(lm.tokenizer, lm.geometry, 2).prompt)
    config = method_config(name, {"annotator_conditioning": kind, **params})
    model = build_method(config, lm, spec, annotators=vocab)
    collator = Collator(lm.tokenizer, lm.geometry, train.num_classes, **annotator_inputs(vocab))
    return model, collator, vocab, (train, val, test)


# -- data.target: annotators ---------------------------------------------------------------------------------
def test_annotator_target_gives_one_example_per_annotation_row():
    train, val, _ = quiet_load("md-agreement", FIXTURES / "lewidi", target="annotators")
    items, _, _ = quiet_load("md-agreement", FIXTURES / "lewidi", target="soft")
    assert len(train) == sum(ex.meta["n_annotations"] for ex in items.examples)
    first = [ex for ex in train.examples if ex.meta["item"] == items.examples[0].meta["item"]]
    # 'the movie was good': annotations 0,0,0,0,1 by Ann1..Ann5
    assert [ex.meta["annotators"] for ex in first] == [["Ann1"], ["Ann2"], ["Ann3"], ["Ann4"], ["Ann5"]]
    assert [ex.label for ex in first] == [0, 0, 0, 0, 1] and all(ex.soft_label is None for ex in first)
    assert all(ex.meta["annotator_row"] for ex in train.examples)
    # validation items keep one example each, with the annotators who labelled them
    assert all("annotator_row" not in ex.meta and len(ex.meta["annotators"]) == 5 for ex in val.examples)


def test_max_train_examples_caps_items_not_rows_for_annotator_rows():
    from prefalign.training.splits import first

    train, _, _ = quiet_load("md-agreement", FIXTURES / "lewidi", target="annotators")
    capped = first(train, 2)
    assert len({ex.meta["item"] for ex in capped.examples}) == 2 and len(capped) == 10


def test_popquorn_rows_carry_their_annotators_attributes():
    train, _, _ = quiet_load("popquorn", FIXTURES / "popquorn", target="annotators")
    vocab = AnnotatorVocab.from_examples(train.examples)
    assert vocab.attributes["0"]["gender"] == "Man" and "gender=Woman" in vocab.attribute_values
    collator = Collator(None, None, 2, **annotator_inputs(vocab))
    ex = Example(
        text="x", label=0, meta={"annotators": ["0", "nobody"], "annotator_attributes": [{}, {"gender": "Man"}]}
    )
    slots = collator._annotator_slots([ex])
    assert slots["annotators"].tolist() == [[vocab.index["0"], UNSEEN]]
    assert slots["annotator_attributes"][0, 1, 0].item() == vocab.attribute_index["gender=Man"]


def test_conditioning_needs_annotator_rows_and_the_right_method(tiny_bert):
    train, _, _ = quiet_load("md-agreement", FIXTURES / "lewidi", target="annotators")
    spec = build_task_spec(train, tiny_bert.geometry, tiny_bert.tokenizer, Collator(None, None, 2).prompt)
    with pytest.raises(ConfigError, match="needs data.target: annotators"):
        build_method(method_config("lora", {"annotator_conditioning": "heads"}), tiny_bert, spec)
    vocab = AnnotatorVocab.from_examples(train.examples)
    with pytest.raises(ConfigError, match="needs a prefix method"):
        build_method(method_config("lora", {"annotator_conditioning": "prefix"}), tiny_bert, spec, annotators=vocab)
    with pytest.raises(ConfigError, match="not one of"):
        method_config("lora", {"annotator_conditioning": "votes"})


# -- gradients, fallbacks, aggregation -----------------------------------------------------------------------
def test_per_annotator_heads_get_gradient_only_from_their_own_rows(tiny_bert):
    torch.manual_seed(0)
    model, collator, vocab, (train, _, _) = setup(tiny_bert, "lora", "heads")
    rows = [ex for ex in train.examples if ex.meta["annotators"][0] in ("Ann1", "Ann3")]
    model.train()
    out = model(**collator(rows))
    out.loss.backward()
    cond = model.classifier.conditioning
    norms = cond.head_weight.grad.flatten(1).norm(dim=1) + cond.head_bias.grad.norm(dim=1)
    own = {vocab.index["Ann1"], vocab.index["Ann3"]}
    assert all(norms[i] > 0 for i in own)
    assert all(norms[i] == 0 for i in range(len(vocab.ids)) if i not in own)
    assert model.classifier.head[-1].weight.grad.norm() > 0  # the shared head learns from every row


@pytest.mark.parametrize("kind", ["heads", "embedding"])
def test_an_unseen_annotator_gets_the_population_prediction(tiny_bert, kind):
    torch.manual_seed(0)
    model, collator, vocab, (train, _, _) = setup(tiny_bert, "lora", kind)
    cond = model.classifier.conditioning
    with torch.no_grad():  # give every annotator a different view
        for p in cond.parameters():
            p.normal_(std=0.5)
    model.eval()
    text = train.examples[0].text
    everyone = Example(text=text, label=0, meta={"annotators": list(vocab.ids)})
    stranger = Example(text=text, label=0, meta={"annotators": ["someone new"]})
    plain = Example(text=text, label=0)  # no annotators at all: the population too
    with torch.no_grad():
        p_all = torch.softmax(model(**collator([everyone])).logits, -1)
        each = [
            torch.softmax(model(**collator([Example(text=text, label=0, meta={"annotators": [a]})])).logits, -1)
            for a in vocab.ids
        ]
        p_new = torch.softmax(model(**collator([stranger])).logits, -1)
        p_plain = torch.softmax(model(**collator([plain])).logits, -1)
    assert torch.allclose(p_all, torch.stack(each).mean(0), atol=1e-6)  # an item's view: its annotators' mean
    assert torch.allclose(p_new, p_all, atol=1e-6) and torch.allclose(p_plain, p_all, atol=1e-6)
    assert not torch.allclose(each[0], each[1], atol=1e-3)


def test_an_unseen_annotator_takes_the_mean_prefix_offset(tiny_bert):
    torch.manual_seed(0)
    model, collator, vocab, (train, _, _) = setup(tiny_bert, "ptuning-v2", "prefix", annotator_rank=4)
    cond = model.classifier.conditioning
    with torch.no_grad():
        cond.up.normal_(std=0.5)
        shared = torch.randn(cond.embed.shape[1])
        cond.embed.copy_(shared.expand_as(cond.embed))  # every annotator the same: the mean is each of them
    model.eval()
    text = train.examples[0].text
    with torch.no_grad():
        known = model(**collator([Example(text=text, label=0, meta={"annotators": ["Ann1"]})])).logits
        new = model(**collator([Example(text=text, label=0, meta={"annotators": ["stranger"]})])).logits
        cond.embed.add_(torch.randn_like(cond.embed))
        moved = model(**collator([Example(text=text, label=0, meta={"annotators": ["Ann1"]})])).logits
    assert torch.allclose(known, new, atol=1e-6) and not torch.allclose(known, moved, atol=1e-4)


def test_a_perfect_annotator_model_aggregates_to_the_soft_target(tiny_bert):
    """Annotators who always give the same label, per-annotator heads that know it: the mean over each
    item's annotators is the item's annotation distribution."""
    torch.manual_seed(0)
    model, collator, vocab, (_, val, test) = setup(tiny_bert, "lora", "heads")
    cond = model.classifier.conditioning
    habit = {a: i % 2 for i, a in enumerate(vocab.ids)}  # annotator -> the label they always give
    with torch.no_grad():
        model.classifier.head[-1].weight.zero_()
        model.classifier.head[-1].bias.zero_()
        cond.head_weight.zero_()
        for a, i in vocab.index.items():
            cond.head_bias[i] = torch.tensor([40.0, -40.0]) if habit[a] == 0 else torch.tensor([-40.0, 40.0])
    model.eval()
    items = [ex for ex in (test or val).examples if all(a in vocab.index for a in ex.meta["annotators"])]
    assert items
    soft = np.array([[np.mean([habit[a] == c for a in ex.meta["annotators"]]) for c in (0, 1)] for ex in items])
    with torch.no_grad():
        probs = torch.softmax(model(**collator(items)).logits, -1).numpy()
    np.testing.assert_allclose(probs, soft, atol=1e-6)


# -- training moves everything; save and load ------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,kind",
    [("lora", "heads"), ("lora", "embedding"), ("dcpc", "heads"), ("dcpc", "embedding"), ("dcpc", "prefix")],
)
def test_conditioned_training_moves_every_trainable_parameter(tiny_bert, name, kind):
    torch.manual_seed(0)
    callers = clone_state(tiny_bert.model)
    model, collator, vocab, (train, _, _) = setup(tiny_bert, name, kind, task="popquorn")
    trainable = model.trainable_parameters()
    assert any(n.startswith("classifier.conditioning.") for n in trainable)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    data = [collator(train.examples[i : i + 8]) for i in range(0, 32, 8)]
    train_steps(model, data, steps=4)
    unchanged = [n for n, p in trainable.items() if torch.equal(before[n], p.detach())]
    assert not unchanged, unchanged
    now = tiny_bert.model.state_dict()
    assert all(torch.equal(callers[k], now[k]) for k in callers)


@pytest.mark.parametrize("name,kind", [("lora", "heads"), ("dcpc", "prefix")])
def test_a_conditioned_method_saves_and_loads_with_its_annotator_vocabulary(tiny_bert, tmp_path, name, kind):
    torch.manual_seed(0)
    model, collator, vocab, (train, val, _) = setup(tiny_bert, name, kind, task="popquorn")
    data = [collator(train.examples[i : i + 8]) for i in range(0, 16, 8)]
    train_steps(model, data, steps=2)
    model.eval()
    batch = collator(val.examples[:4])
    with torch.no_grad():
        expected = model(**batch).logits
    save_method(model, tmp_path / "adapter", backbone=tiny_bert)
    loaded, meta = load_method(tmp_path / "adapter", tiny_bert)
    assert meta["annotators"]["ids"] == vocab.ids and meta["annotators"]["attributes"] == vocab.attributes
    with torch.no_grad():
        assert torch.equal(loaded.eval()(**batch).logits, expected)


def test_a_training_run_on_annotator_rows_scores_items_and_keeps_the_vocabulary(tiny_bert, tmp_path):
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    cfg = ExperimentConfig.from_dict(
        {
            "data": {"task": "md-agreement", "path": str(FIXTURES / "lewidi"), "target": "annotators"},
            "method": {"name": "lora", "annotator_conditioning": "embedding"},
            "training": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 2,
                "eval_steps": 1,
                "batch_size": 4,
                "device": "cpu",
                "progress": False,
                "best_metric": "soft_ce",
            },
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        result = train(cfg, backbone=tiny_bert)
    assert {"test_soft_ce", "validation_soft_ce", "test_f1"} <= set(result.metrics)
    _, meta = load_method(tmp_path / "run" / "adapter", tiny_bert)
    assert "Ann1" in meta["annotators"]["ids"]


def test_conditioning_without_annotator_rows_is_refused_before_training(tiny_bert, tmp_path):
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    cfg = ExperimentConfig.from_dict(
        {
            "data": {"task": "md-agreement", "path": str(FIXTURES / "lewidi"), "target": "soft"},
            "method": {"name": "lora", "annotator_conditioning": "heads"},
            "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "device": "cpu", "progress": False},
        }
    )
    with pytest.raises(ConfigError, match="set data.target: annotators"):
        train(cfg, backbone=tiny_bert)


# -- prediction: one annotator, a panel, the population -------------------------------------------------------
@pytest.fixture(scope="module")
def conditioned_run(vocab_file, tmp_path_factory):
    """`train` on MD-Agreement rows with per-annotator heads, the tiny encoder saved as a folder (so the
    CLI can load the adapter's base model), plus an unconditioned soft-label run."""
    from helpers_cli import save_tiny_model
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    root = tmp_path_factory.mktemp("annotator-runs")
    model_dir = save_tiny_model("bert", vocab_file, root / "model")
    runs = {}
    for name, target, method in [
        ("heads", "annotators", {"name": "lora", "annotator_conditioning": "heads"}),
        ("soft", "soft", {"name": "lora"}),
    ]:
        cfg = ExperimentConfig.from_dict(
            {
                "model": {"name": str(model_dir)},
                "data": {"task": "md-agreement", "path": str(FIXTURES / "lewidi"), "target": target},
                "method": method,
                "training": {
                    "output_dir": str(root / name),
                    "max_steps": 3,
                    "eval_steps": 3,
                    "batch_size": 4,
                    "learning_rate": 0.05,
                    "device": "cpu",
                    "progress": False,
                },
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnnotationWarning)
            train(cfg)
        runs[name] = root / name / "adapter"
    return runs


def test_adapter_predicts_an_annotator_a_panel_and_the_population(conditioned_run, tmp_path):
    from prefalign.inference import Adapter

    adapter = Adapter.from_pretrained(conditioned_run["heads"], device="cpu")
    assert "Ann1" in adapter.annotators
    cond = adapter.model.classifier.conditioning
    with torch.no_grad():  # make the annotators disagree, so that whose view it is shows
        cond.head_bias.normal_(std=2.0)
    texts = ["the movie was good", "a bad plot"]
    one = adapter.predict_proba(texts, annotator="Ann1")
    two = adapter.predict_proba(texts, annotator="Ann2")
    panel = adapter.predict_proba(texts, panel=["Ann1", "Ann2"])
    np.testing.assert_allclose(panel, (one + two) / 2, atol=1e-6)
    file = tmp_path / "panel.txt"
    file.write_text("Ann1\nAnn2\n")
    np.testing.assert_allclose(adapter.predict_proba(texts, panel=str(file)), panel, atol=1e-6)
    everyone = adapter.predict_proba(texts, panel=adapter.annotators)
    np.testing.assert_allclose(adapter.predict_proba(texts), everyone, atol=1e-6)  # no view asked: the population
    np.testing.assert_allclose(adapter.predict_proba(texts, annotator="nobody"), everyone, atol=1e-6)
    first = adapter.labels[0]
    assert adapter.predict(texts, annotator="Ann1")[0].probabilities[first] == pytest.approx(float(one[0, 0]))
    with pytest.raises(ConfigError, match="not both"):
        adapter.predict_proba(texts, annotator="Ann1", panel=["Ann2"])


def test_predict_cli_takes_an_annotator_or_a_panel_file(conditioned_run, tmp_path):
    import json

    from helpers_cli import assert_one_error, run_main
    from prefalign.inference import Adapter

    adapter = Adapter.from_pretrained(conditioned_run["heads"], device="cpu")
    expected = adapter.predict_proba(["the movie was good"], annotator="Ann3")[0]
    rc, out, err = run_main(
        ["predict", "--adapter", str(conditioned_run["heads"]), "--text", "the movie was good", "--annotator", "Ann3"]
    )
    assert rc == 0, err
    line = json.loads(out.strip())
    assert line["annotator"] == "Ann3" and line["probabilities"][adapter.labels[0]] == pytest.approx(
        float(expected[0]), abs=1e-6
    )
    panel = tmp_path / "panel.csv"
    panel.write_text("annotator,group\nAnn1,a\nAnn3,b\n")
    rc, out, err = run_main(
        ["predict", "--adapter", str(conditioned_run["heads"]), "--text", "the movie was good", "--panel", str(panel)]
    )
    assert rc == 0, err
    want = adapter.predict_proba(["the movie was good"], panel=["Ann1", "Ann3"])[0]
    assert json.loads(out.strip())["probabilities"][adapter.labels[1]] == pytest.approx(float(want[1]), abs=1e-6)
    rc, out, err = run_main(
        ["predict", "--adapter", str(conditioned_run["soft"]), "--text", "the movie was good", "--annotator", "Ann3"]
    )
    assert_one_error(rc, err, "without annotator conditioning")
    rc, out, err = run_main(
        ["predict", "--adapter", str(conditioned_run["heads"]), "--text", "x", "--panel", str(tmp_path / "none.txt")]
    )
    assert_one_error(rc, err, "does not exist")


# -- scoring as the shared tasks score -------------------------------------------------------------------------
def test_lewidi_2023_scores_of_a_worked_result_file():
    from prefalign.evaluation.disagreement import (
        lewidi2023_cross_entropy,
        lewidi2023_micro_f1,
        parse_lewidi_results,
        soft_cross_entropy,
    )

    folder = FIXTURES / "lewidi_results"
    hard_ref, soft_ref = parse_lewidi_results((folder / "truth.tsv").read_text())
    hard_pred, soft_pred = parse_lewidi_results((folder / "ArMIS_results.tsv").read_text())
    assert hard_ref == ["0", "1", "0", "1"] and soft_pred.shape == (4, 2)
    # by hand: ln 2; 0.2 ln 10 + 0.8 ln(10/9); -ln(1e-12 + 1e-9) (the clipped zero); 0.4 ln(10/3) + 0.6 ln(10/7)
    items = [
        np.log(2),
        0.2 * np.log(10) + 0.8 * np.log(10 / 9),
        -np.log(1.001e-9),
        0.4 * np.log(10 / 3) + 0.6 * np.log(10 / 7),
    ]
    assert lewidi2023_cross_entropy(soft_ref, soft_pred) == pytest.approx(sum(items) / 4, abs=1e-6)
    assert lewidi2023_cross_entropy(soft_ref, soft_pred) == pytest.approx(5.6639532, abs=1e-6)
    # the clip and the + 1e-9 matter: a plain clip at 1e-12 gives the third item -ln(1e-12)
    assert soft_cross_entropy(soft_pred, soft_ref) == pytest.approx((sum(items) - items[2] - np.log(1e-12)) / 4)
    assert lewidi2023_micro_f1(hard_ref, hard_pred) == 0.75  # 3 of 4 right: 2*3 / (2*3 + 1 + 1)
    with pytest.raises(ValueError, match="line 1"):
        parse_lewidi_results("0\tx\t0.5\n")


def test_perspectivist_error_rate_by_hand():
    from prefalign.evaluation.disagreement import perspectivist_error_rate

    # item 1: one of three annotators mispredicted; item 2: both of two
    assert perspectivist_error_rate([[0, 0, 1], [1, 1]], [[0, 1, 1], [0, 0]]) == pytest.approx((1 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="item 0"):
        perspectivist_error_rate([[0, 1]], [[0]])


def test_a_run_reports_the_shared_tasks_scores_and_the_perspectivist_error(tiny_bert, tmp_path):
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import annotator_error, train

    cfg = ExperimentConfig.from_dict(
        {
            "data": {"task": "md-agreement", "path": str(FIXTURES / "lewidi"), "target": "annotators"},
            "method": {"name": "lora", "annotator_conditioning": "heads"},
            "training": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 2,
                "eval_steps": 2,
                "batch_size": 4,
                "device": "cpu",
                "progress": False,
                "best_metric": "lewidi_ce",
            },
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        result = train(cfg, backbone=tiny_bert)
    m = result.metrics
    assert m["test_micro_f1"] == pytest.approx(m["test_accuracy"])
    assert 0 <= m["test_annotator_error"] <= 1 and m["test_lewidi_ce"] > 0
    # the error by hand: predict every (item, annotator) row for that annotator
    from prefalign.annotations.metrics import annotator_rows_of

    _, _, test = quiet_load("md-agreement", FIXTURES / "lewidi", target="annotators")
    rows, owner = annotator_rows_of(test)
    vocab = AnnotatorVocab.from_dict(load_method(tmp_path / "run" / "adapter", tiny_bert)[1]["annotators"])
    collator = Collator(tiny_bert.tokenizer, tiny_bert.geometry, 2, **annotator_inputs(vocab))
    model = result.model.eval()
    with torch.no_grad():
        pred = model(**{k: v for k, v in collator(rows).items() if k not in ("labels", "target_dist")}).logits
    pred = pred.argmax(-1).tolist()
    truth = [lab for ex in test.examples for lab in ex.meta["annotator_labels"]]
    per_item = {}
    for i, p, t in zip(owner, pred, truth):
        per_item.setdefault(i, []).append(p != t)
    assert m["test_annotator_error"] == pytest.approx(np.mean([np.mean(v) for v in per_item.values()]))
    assert annotator_error(model, collator, test, 3) == pytest.approx(m["test_annotator_error"])


@pytest.mark.parametrize("name,kind", [("lora", "embedding"), ("ptuning-v2", "prefix")])
def test_an_unseen_annotator_with_attributes_is_their_attributes(tiny_bert, name, kind):
    """A stranger who shares annotator 0's attributes is annotator 0 minus 0's own vector."""
    torch.manual_seed(0)
    model, collator, vocab, (train, _, _) = setup(tiny_bert, name, kind, task="popquorn")
    cond = model.classifier.conditioning
    with torch.no_grad():
        for p in cond.parameters():
            p.normal_(std=0.5)
        cond.embed[vocab.index["0"]] = 0.0  # annotator 0's own vector: nothing beyond their attributes
    model.eval()
    text, attrs = train.examples[0].text, vocab.attributes["0"]

    def probs(worker, given):
        ex = Example(text=text, label=0, meta={"annotators": [worker], "annotator_attributes": [given]})
        with torch.no_grad():
            return torch.softmax(model(**collator([ex])).logits, -1)

    known, stranger = probs("0", attrs), probs("stranger", attrs)
    population = probs("stranger", {})
    assert torch.allclose(known, stranger, atol=1e-6) and not torch.allclose(stranger, population, atol=1e-4)
