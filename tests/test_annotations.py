"""Multi-annotator data: formats and their checks, targets against hand-worked aggregation, the real
sets' loaders on small fixtures in their original formats, and a soft-label training run."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from prefalign.annotations import (
    AnnotationWarning,
    compute_targets,
    encode_labels,
    from_counts,
    from_label_lists,
    from_long,
    label_distribution,
    majority_vote,
)
from prefalign.errors import ConfigError, DataError
from prefalign.tasks import load_task
from prefalign.training.config import DataConfig

FIXTURES = Path(__file__).parent / "data" / "annotations"
pytestmark = pytest.mark.filterwarnings("ignore::prefalign.annotations.AnnotationWarning")


def quiet_load(name: str, folder: Path, **annotation):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        return load_task(name, folder, 0, annotation)


# -- formats ---------------------------------------------------------------------------------------------------
def test_long_rows_become_counts_in_first_seen_item_order():
    frame = pd.DataFrame(
        {
            "task": ["b", "a", "b", "a", "b"],
            "worker": ["w1", "w1", "w2", "w2", "w3"],
            "label": ["pos", "neg", "pos", "pos", "neg"],
            "text": ["tb", "ta", "tb", "ta", "tb"],
        }
    )
    items = from_long(frame, label_names=["neg", "pos"])
    assert items.item_ids == ["b", "a"] and items.texts == ["tb", "ta"]
    np.testing.assert_array_equal(items.counts, [[1, 2], [1, 1]])
    assert sorted(items.long.itertuples(index=False)) == [
        (0, "w1", 1),
        (0, "w2", 1),
        (0, "w3", 0),
        (1, "w1", 0),
        (1, "w2", 1),
    ]


def test_label_lists_and_counts_agree():
    lists = from_label_lists(["x", "y"], [[0, 1, 1], [0]], [["a", "b", "c"], ["a"]])
    counts = from_counts(["x", "y"], [[1, 2], [1, 0]], ["0", "1"])
    np.testing.assert_array_equal(lists.counts, counts.counts)
    assert lists.has_annotators and not counts.has_annotators


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: from_label_lists(["x", "y"], [[0, 1], []]), "no annotations"),
        (lambda: from_counts(["x", "y"], [[1, 2], [0, 0]], ["a", "b"]), "no annotations"),
        (lambda: from_counts(["x"], [[1.5, 2]], ["a", "b"]), "whole numbers"),
        (lambda: from_label_lists(["x"], [["pos", "maybe"]], label_names=["neg", "pos"]), "outside the label set"),
        (lambda: from_label_lists(["x"], [[1, 2]], label_names=["neg", "pos"]), "outside the label set"),
        (lambda: from_label_lists(["x"], [[1.0, 2.5, 4.0]]), "rating_bins"),
        (
            lambda: from_long(
                pd.DataFrame({"task": [1, 1], "worker": ["a", "a"], "label": [0, 1], "text": ["t", "t"]})
            ),
            "twice",
        ),
        (lambda: from_long(pd.DataFrame({"task": [1], "worker": ["a"], "label": [0]})), "no column 'text'"),
    ],
)
def test_bad_annotations_raise_data_error(build, message):
    with pytest.raises(DataError, match=message):
        build()


def test_ratings_bin_into_classes():
    codes, names = encode_labels([1.0, 2.0, 2.9, 3.0, 5.0], rating_bins=[3])
    assert codes.tolist() == [0, 0, 0, 1, 1] and names == ["<3", ">=3"]
    codes, names = encode_labels([1, 2, 3, 4, 5], rating_bins=[2, 4])
    assert codes.tolist() == [0, 1, 1, 2, 2] and names == ["<2", "2-4", ">=4"]
    with pytest.raises(DataError, match="ascending"):
        encode_labels([1, 2], rating_bins=[4, 2])


def test_annotators_with_one_label_only_warn():
    with pytest.warns(AnnotationWarning, match="1 of 2 annotators gave one label only"):
        from_label_lists(["x", "y"], [[0, 1], [1]], [["a", "b"], ["a"]])


# -- targets ---------------------------------------------------------------------------------------------------
def test_majority_and_soft_targets_by_hand():
    counts = np.array([[3, 1], [0, 2], [2, 2], [1, 1]])
    np.testing.assert_allclose(label_distribution(counts), [[0.75, 0.25], [0, 1], [0.5, 0.5], [0.5, 0.5]])
    assert majority_vote(counts, ties="lowest").tolist() == [0, 1, 0, 0]
    picks = {tuple(majority_vote(counts, seed=s).tolist()) for s in range(20)}
    assert all(p[:2] == (0, 1) for p in picks)  # clear majorities never move
    assert {p[2] for p in picks} == {0, 1}  # ties are drawn among the tied classes ...
    assert majority_vote(counts, seed=3).tolist() == majority_vote(counts, seed=3).tolist()  # ... reproducibly


def spammer_items():
    """G1-G3 always agree with each other; S1 and S2 say 1 whatever the item. On items 8 and 9 only G1
    and the two spammers answer: majority vote says 1, a reliability model should follow G1 (0)."""
    truth = [0, 1, 0, 1, 0, 1, 0, 1]
    labels, workers = [], []
    for t in truth:
        labels.append([t, t, t, 1, 1])
        workers.append(["G1", "G2", "G3", "S1", "S2"])
    for _ in range(2):
        labels.append([0, 1, 1])
        workers.append(["G1", "S1", "S2"])
    return from_label_lists([f"item {i}" for i in range(10)], labels, workers)


@pytest.mark.parametrize("target", ["dawid-skene", "one-coin-dawid-skene", "glad", "mace"])
def test_aggregates_discount_annotators_who_always_say_the_same(target):
    pytest.importorskip("crowdkit")
    items = spammer_items()
    assert majority_vote(items.counts).tolist()[8:] == [1, 1]
    hard, soft = compute_targets(items, f"{target}-soft")  # one fit each: GLAD and MACE take seconds
    assert hard.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 0]
    assert soft.shape == (10, 2) and np.allclose(soft.sum(1), 1) and (soft.argmax(1) == hard).all()
    assert (soft[8:, 0] > 0.5).all()


def test_hard_aggregate_targets_are_the_posterior_argmax_without_soft_labels():
    pytest.importorskip("crowdkit")
    hard, soft = compute_targets(spammer_items(), "dawid-skene")
    assert soft is None and hard.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 0]


def test_aggregate_output_is_put_back_in_item_and_class_order():
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    # class 'c' never chosen; crowd-kit's own frame has only columns 0 and 1
    items = from_label_lists(
        ["x", "y", "z"],
        [["b", "a"], ["a", "a"], ["b", "b"]],
        [["u", "v"], ["u", "v"], ["u", "v"]],
        label_names=["a", "b", "c"],
    )
    _, soft = compute_targets(items, "dawid-skene-soft")
    direct = crowdkit.DawidSkene().fit_predict_proba(items.long)
    assert soft.shape == (3, 3) and (soft[:, 2] == 0).all()
    np.testing.assert_allclose(soft[:, :2], direct.sort_index()[[0, 1]].to_numpy())


def test_aggregates_need_annotator_ids():
    pytest.importorskip("crowdkit")
    with pytest.raises(DataError, match="annotator ids"):
        compute_targets(from_counts(["x"], [[1, 2]], ["a", "b"]), "dawid-skene")


# -- the registered tasks on fixtures in their original formats ------------------------------------------------
def test_md_agreement_reads_every_annotation_and_keeps_splits():
    with pytest.warns(AnnotationWarning, match="different number of annotators"):  # test item 3: 6 ids, 5 labels
        train, val, test = load_task("md-agreement", FIXTURES / "lewidi", 0, {"target": "soft"})
    assert (len(train), len(val), len(test)) == (6, 2, 3)
    assert train[1].soft_label == [0.4, 0.6] and train[1].label == 1  # "1,1,1,0,0"
    assert val[1].soft_label is None and val[1].label == 1  # validation and test: majority, distribution in meta
    assert test[0].meta["annotation_dist"] == [0.8, 0.2] and test[0].meta["n_annotations"] == 5


def test_convabuse_maps_severity_and_renders_the_dialogue():
    train, _, test = quiet_load("convabuse", FIXTURES / "lewidi" / "ConvAbuse", target="soft")
    # severities "-2,-1,1": two of three <= -1 -> abusive; "1,1,0,1": none; "-3,1": a tie
    assert train[0].soft_label == pytest.approx([1 / 3, 2 / 3]) and train[1].soft_label == [1.0, 0.0]
    assert train[2].soft_label == [0.5, 0.5]
    assert train[0].text.splitlines() == [
        "Agent: Hi. How can I help?",
        "User: hello",
        "Agent: What would you like?",
        "User: you are stupid",
    ]
    assert train.label_names == ["not_abusive", "abusive"] and test[1].label == 1


def test_armis_groups_are_its_annotators_groups():
    _, _, test = quiet_load("armis", FIXTURES / "lewidi")
    meta = test[0].meta  # "1,0,1" by Moderate_Female, Liberal_Female, Conservative_Male
    assert meta["groups"] == ("group=Conservative_Male", "group=Liberal_Female", "group=Moderate_Female")
    assert meta["group_dist"] == [[0, 1], [1, 0], [0, 1]]


def test_popquorn_bins_ratings_and_builds_demographic_groups():
    train, val, test = quiet_load(
        "popquorn", FIXTURES / "popquorn", target="soft", annotations={"min_group_annotators": 2}
    )
    assert (len(train), len(val), len(test)) == (7, 1, 2)  # 10 items: 2 test, 1 validation
    seen = {ex.meta["item"] for d in (train, val, test) for ex in d}
    assert len(seen) == 10
    by_item = {ex.meta["item"]: ex for ex in train.examples + val.examples + test.examples}
    assert by_item["101"].meta["annotation_dist"] == [0.25, 0.75]  # ratings 4, 5, 3, 2 with >= 3 offensive
    groups = by_item["101"].meta["groups"]
    assert "gender=Woman" in groups and "race=White" in groups and "race=Asian" not in groups  # 1 Asian annotator
    # item 101 was rated by users 1 (Woman, White: 4), 2 (Woman, Black: 5), 3 (Man, Asian: 3), 4 (Woman, White: 2)
    women = by_item["101"].meta["group_dist"][groups.index("gender=Woman")]
    assert women == pytest.approx([1 / 3, 2 / 3])
    five = quiet_load("popquorn", FIXTURES / "popquorn", annotations={"rating_bins": [2, 3, 4, 5]})[0]
    assert five.label_names == ["<2", "2-3", "3-4", "4-5", ">=5"]


def test_davidson_reads_counts_and_refuses_aggregates():
    train, val, test = quiet_load("davidson", FIXTURES / "davidson", target="soft")
    assert (len(train), len(val), len(test)) == (7, 1, 2)
    assert train.label_names == ["hate_speech", "offensive_language", "neither"]
    items = {ex.meta["item"]: ex for ex in train.examples + val.examples + test.examples}
    assert items["3"].meta["annotation_dist"] == pytest.approx([1 / 3] * 3) and items["3"].meta["n_annotations"] == 6
    with pytest.raises(DataError, match="annotator ids"):
        quiet_load("davidson", FIXTURES / "davidson", target="glad")


@pytest.mark.parametrize(
    "annotations, train_file, expected",
    [
        ({"format": "long"}, "long.csv", [[2 / 3, 1 / 3], [1 / 3, 2 / 3]]),
        ({"format": "lists", "annotator_column": "annotators"}, "lists.jsonl", [[1.0, 0.0], [1 / 3, 2 / 3]]),
        ({"format": "counts", "count_columns": ["neg", "pos"]}, "counts.csv", [[1.0, 0.0], [2 / 3, 1 / 3]]),
    ],
)
def test_own_files_in_each_format_train_through_load_splits(annotations, train_file, expected):
    from prefalign.training.splits import load_splits

    cfg = DataConfig(
        train=str(FIXTURES / "own" / train_file), target="soft", annotations=annotations, validation_fraction=0.2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        train, val, _ = load_splits(cfg, seed=0)
    every = {ex.text: ex.meta["annotation_dist"] for ex in train.examples + val.examples}
    first_two = [every[t] for t in ("the movie was good", "the plot was awful")]
    assert first_two == [pytest.approx(e) for e in expected]
    assert all(ex.soft_label == ex.meta["annotation_dist"] for ex in train)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"task": "sst2", "target": "soft"}, "multi-annotator"),
        ({"task": "md-agreement", "target": "median"}, "not one of"),
        ({"task": "popquorn", "annotations": {"rating_bin": [3]}}, "did you mean 'rating_bins'"),
        ({"train": "x.csv", "target": "soft"}, "annotations.format"),
        ({"task": "md-agreement", "annotations": {"format": "long"}}, "your own files"),
    ],
)
def test_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig.from_dict(data)


# -- CROWDLAB weights and the sampler ------------------------------------------------------------------------------
def test_crowdlab_weights_rank_unanimous_items_above_split_ones():
    pytest.importorskip("cleanlab")
    pytest.importorskip("sklearn")
    from prefalign.annotations.weights import crowdlab_weights

    texts = [f"{w} film {i}" for i, w in enumerate(["good", "bad"] * 10)]
    labels = [[i % 2] * 3 if i % 5 else [0, 1, i % 2] for i in range(20)]
    items = from_label_lists(texts, labels, [["a", "b", "c"]] * 20)
    w = crowdlab_weights(items)
    assert w.shape == (20,) and ((w >= 0) & (w <= 1)).all()
    split = np.array([i % 5 == 0 for i in range(20)])
    assert w[~split].min() > w[split].max()


def test_weighted_examples_are_drawn_by_a_weighted_sampler(tiny_bert, tmp_path):
    from transformers import TrainingArguments

    from prefalign.data.examples import Example, TaskDataset
    from prefalign.training.splits import ListDataset
    from prefalign.training.trainer import PrefalignTrainer

    data = TaskDataset(
        [Example(text="good", label=1, meta={"weight": 0.9}), Example(text="bad", label=0, meta={"weight": 0.1})],
        ["neg", "pos"],
    )
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], seed=1)
    trainer = PrefalignTrainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=ListDataset(data))
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, torch.utils.data.WeightedRandomSampler)
    assert sampler.weights.tolist() == pytest.approx([0.9, 0.1])


# -- training on soft targets ------------------------------------------------------------------------------------
def test_dcpc_task_loss_is_the_cross_entropy_against_soft_targets(tiny_bert):
    from prefalign.data.collator import Collator, PromptFormat, build_task_spec
    from prefalign.methods import build_method, method_config

    train, _, _ = quiet_load("md-agreement", FIXTURES / "lewidi", target="soft")
    spec = build_task_spec(train, tiny_bert.geometry, tiny_bert.tokenizer, PromptFormat())
    model = build_method(
        method_config("dcpc", {"prefix_length": 4, "tau_cos": 0.0, "tau_ambiguity": 0.0}), tiny_bert, spec
    )
    batch = Collator(tiny_bert.tokenizer, tiny_bert.geometry, 2)(train.examples)
    q = torch.tensor([ex.soft_label for ex in train.examples])
    assert torch.equal(batch["target_dist"], q) and torch.equal(batch["annotation_dist"], q)
    # the released hard_label / soft_label ride along for Le-Wi-Di's own scores (metrics only, never the model)
    assert batch["reference_label"].tolist() == [0, 1, 0, 1, 0, 1]
    assert torch.equal(batch["reference_dist"], q)  # MD-Agreement's fifths are exact in the release
    model.eval()
    out = model(**batch)
    expected = -(q * torch.log_softmax(out.logits.float(), -1)).sum(-1).mean()
    assert out.terms["loss_task"] == pytest.approx(expected.item(), rel=1e-5)
    assert {"loss_ambiguity", "loss_align", "loss_kl"} <= set(out.terms)  # DCPC's terms run on soft targets too


TRAINED_ON_THE_TASK_LOSS = [
    "ptuning-v2",
    "full-ft",
    "lora",
    "adalora",
    "ia3",
    "prompt-tuning",
    "bitfit",
    "houlsby",
    "learned-adapter",
    "lpt",
    "pedro",
]


@pytest.mark.parametrize("name", TRAINED_ON_THE_TASK_LOSS)
def test_every_baseline_trains_on_soft_targets(tiny_bert, name):
    """The runner's other methods take the same soft cross-entropy, and its gradient reaches them."""
    from prefalign.data.collator import Collator, PromptFormat, build_task_spec
    from prefalign.methods import build_method, method_config

    train, _, _ = quiet_load("md-agreement", FIXTURES / "lewidi", target="soft")
    spec = build_task_spec(train, tiny_bert.geometry, tiny_bert.tokenizer, PromptFormat())
    model = build_method(method_config(name, {}), tiny_bert, spec, copy_backbone=True)
    batch = Collator(tiny_bert.tokenizer, tiny_bert.geometry, 2)(train.examples)
    q = batch["target_dist"]
    assert not torch.equal(q, q.round())  # the fixture's items are split, so these targets are soft
    model.eval()
    out = model(**batch)
    expected = -(q * torch.log_softmax(out.logits.float(), -1)).sum(-1).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out.loss.backward()
    grads = [p.grad for p in model.trainable_parameters().values()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_ltuning_pairs_take_the_soft_target_of_their_label(tiny_bert):
    from prefalign.data.collator import Collator, PromptFormat, build_task_spec
    from prefalign.methods import build_method, method_config

    train, _, _ = quiet_load("md-agreement", FIXTURES / "lewidi", target="soft")
    spec = build_task_spec(train, tiny_bert.geometry, tiny_bert.tokenizer, PromptFormat())
    model = build_method(method_config("ltuning-prefix", {}), tiny_bert, spec)
    model.train()
    batch = Collator(tiny_bert.tokenizer, tiny_bert.geometry, 2)(train.examples)
    model(**batch)
    pairs = model.last_pairs
    q = batch["target_dist"]
    assert torch.equal(pairs["targets"], q[pairs["rows"], pairs["labels"]])


@pytest.mark.parametrize("method", ["dcpc", "lora"])
def test_soft_label_training_run_reports_disagreement_metrics(tiny_bert, tmp_path, method):
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    cfg = ExperimentConfig.from_dict(
        {
            "data": {
                "task": "popquorn",
                "path": str(FIXTURES / "popquorn"),
                "target": "soft",
                "annotations": {"min_group_annotators": 2},
            },
            "method": {"name": method},
            "training": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 3,
                "eval_steps": 2,
                "batch_size": 4,
                "learning_rate": 1e-2,
                "device": "cpu",
                "progress": False,
                "logging_steps": 1,
            },
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        result = train(cfg, backbone=tiny_bert)
    m = result.metrics
    assert {
        "test_accuracy",
        "test_f1",
        "test_soft_ce",
        "test_jsd",
        "test_ece",
        "test_worst_group_ce",
        "validation_soft_ce",
    } <= set(m)
    groups = [k for k in m if k.startswith("test_group_ce/")]
    assert groups and m["test_worst_group_ce"] == pytest.approx(max(m[k] for k in groups))
    assert 0 <= m["test_jsd"] <= 1 and m["test_soft_ce"] > 0 and m["train_steps"] == 3


def test_best_metric_picks_the_checkpoint_with_the_lowest_validation_soft_ce(tiny_bert, tmp_path):
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.run import train

    cfg = ExperimentConfig.from_dict(
        {
            "data": {
                "task": "popquorn",
                "path": str(FIXTURES / "popquorn"),
                "target": "soft",
                "annotations": {"min_group_annotators": 2},
            },
            "method": {"name": "ptuning-v2"},
            "training": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 6,
                "eval_steps": 1,
                "batch_size": 4,
                "learning_rate": 5e-2,
                "device": "cpu",
                "progress": False,
                "save_total_limit": 1,
                "best_metric": "soft_ce",
                "early_stopping_patience": 10,
            },
        }
    )
    result = train(cfg, backbone=tiny_bert)
    history = json.loads((tmp_path / "run" / "log_history.json").read_text())
    curve = [e["eval_soft_ce"] for e in history if "eval_soft_ce" in e]
    assert len(curve) == 6 and min(curve) < max(curve)
    kept = [p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint-*")]
    assert kept == [f"checkpoint-{curve.index(min(curve)) + 1}"]  # smaller is better for soft CE
    assert result.metrics["validation_soft_ce"] == pytest.approx(min(curve), abs=1e-6)  # the kept checkpoint's


@pytest.mark.parametrize(
    "data, metric, message",
    [
        ({"task": "sst2"}, "soft_ce", "needs a multi-annotator task"),
        ({"task": "md-agreement"}, "worst_group_ce", "needs annotator groups"),
        ({"task": "md-agreement"}, "f1_weighted", "use f1 here"),
    ],
)
def test_best_metric_the_data_cannot_give_is_refused_before_training(metric, data, message):
    from prefalign.data.examples import Example, TaskDataset
    from prefalign.training.run import checkpoint_metric

    meta = {"annotation_dist": [0.5, 0.5], "groups": []} if data["task"] == "md-agreement" else {}
    split = TaskDataset([Example(text="a", label=0, meta=meta)], ["no", "yes"])
    with pytest.raises(ConfigError, match=message):
        checkpoint_metric(metric, split, split, split)
    assert checkpoint_metric("accuracy", split, split, split) == "accuracy"


def test_a_compare_row_can_choose_its_target():
    from prefalign.compare.config import CompareConfig, DatasetEntry, MethodEntry
    from prefalign.compare.grid import plan
    from prefalign.compare.report import _score

    cfg = CompareConfig(
        methods=[
            MethodEntry(name="ptuning-v2", label="soft", data={"target": "soft"}),
            MethodEntry(name="ptuning-v2", label="majority"),
        ],
        datasets=[DatasetEntry(name="MD", data={"task": "md-agreement", "path": "x"}, also=["soft_ce", "jsd"])],
        seeds=[0],
    )
    targets = [spec.experiment(cfg, Path("out")).data.target for spec in plan(cfg)]
    assert targets == ["soft", None]
    assert _score(0.4567, "soft_ce") == "0.46" and _score(0.0432, "jsd") == "4.3"  # CE as is, JSD x100


def test_evaluate_scores_an_annotated_file_against_its_annotators(tiny_bert):
    from prefalign.annotations.own_files import read_annotated_split
    from prefalign.data.collator import Collator, PromptFormat, build_task_spec
    from prefalign.evaluation.disagreement import soft_cross_entropy
    from prefalign.inference import evaluate, predict_proba
    from prefalign.methods import build_method, method_config

    cfg = DataConfig(
        annotations={"format": "lists", "annotator_column": "annotators"}, target="majority", train="unused.jsonl"
    )
    data = read_annotated_split(FIXTURES / "own" / "lists.jsonl", cfg, ["0", "1"])
    assert data[0].soft_label is None and data[1].meta["annotation_dist"] == pytest.approx([1 / 3, 2 / 3])
    spec = build_task_spec(data, tiny_bert.geometry, tiny_bert.tokenizer, PromptFormat())
    model = build_method(method_config("ptuning-v2", {"prefix_length": 4}), tiny_bert, spec)
    collator = Collator(tiny_bert.tokenizer, tiny_bert.geometry, 2)
    scores = evaluate(model, collator, data)
    probs = predict_proba(model, collator, data).astype(float)
    expected = soft_cross_entropy(probs / probs.sum(1, keepdims=True), [ex.meta["annotation_dist"] for ex in data])
    assert scores["soft_ce"] == pytest.approx(expected) and {"f1", "jsd", "ece", "accuracy"} <= set(scores)
