"""Disagreement-aware metrics against worked values, and their input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefalign.evaluation.disagreement import (
    disagreement_metrics,
    expected_calibration_error,
    group_scores,
    jensen_shannon_divergence,
    macro_f1,
    soft_cross_entropy,
)


def test_soft_cross_entropy_worked_value():
    # item 1: -ln 0.8; item 2: -(0.6 ln 0.5 + 0.4 ln 0.5) = ln 2
    p = [[0.8, 0.2], [0.5, 0.5]]
    q = [[1.0, 0.0], [0.6, 0.4]]
    assert soft_cross_entropy(p, q) == pytest.approx((-math.log(0.8) + math.log(2)) / 2)


def test_jensen_shannon_divergence_worked_values():
    assert jensen_shannon_divergence([[1.0, 0.0]], [[0.0, 1.0]]) == pytest.approx(1.0)  # disjoint: 1 bit
    assert jensen_shannon_divergence([[0.3, 0.7]], [[0.3, 0.7]]) == pytest.approx(0.0, abs=1e-12)
    # p = (.5, .5), q = (1, 0), m = (.75, .25): KL(p||m) = .5 log2(2/3) + .5 log2 2, KL(q||m) = log2(4/3)
    expected = (0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3)) / 2
    assert jensen_shannon_divergence([[0.5, 0.5]], [[1.0, 0.0]]) == pytest.approx(expected)
    assert expected == pytest.approx(0.3112781, abs=1e-7)


def test_jensen_shannon_matches_scipy_when_present():
    scipy_distance = pytest.importorskip("scipy.spatial.distance")
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet([1, 1, 1], 20), rng.dirichlet([1, 1, 1], 20)
    ref = np.mean(scipy_distance.jensenshannon(p, q, base=2, axis=1) ** 2)
    assert jensen_shannon_divergence(p, q) == pytest.approx(ref, abs=1e-9)


def test_expected_calibration_error_worked_value():
    # confidences 0.9 (right), 0.6 (wrong), 0.72 (right), 0.55 (right); bins of width 0.1:
    # (0.5, 0.6]: acc 1/2, conf 0.575 -> 2/4 * 0.075; (0.7, 0.8]: 1/4 * 0.28; (0.8, 0.9]: 1/4 * 0.1
    probs = [[0.9, 0.1], [0.4, 0.6], [0.72, 0.28], [0.45, 0.55]]
    labels = [0, 0, 0, 1]
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.5 * 0.075 + 0.07 + 0.025)
    # perfectly confident and right: zero
    assert expected_calibration_error([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == pytest.approx(0.0)


def test_macro_f1_worked_value():
    # class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 2, fp 1 -> 0.8; class 2: fn 1 -> 0
    assert macro_f1([0, 1, 1, 1, 0], [0, 0, 1, 1, 2], 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1([1, 1], [1, 1], 3) == pytest.approx(1.0)  # absent classes are skipped


def test_group_scores_cover_only_the_items_a_group_labelled():
    probs = np.array([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]])
    # group a labelled items 0 and 2; group b only item 1; group c nothing
    group_dist = np.zeros((3, 3, 2))
    group_dist[0, 0] = [1, 0]
    group_dist[2, 0] = [0.5, 0.5]
    group_dist[1, 1] = [0, 1]
    scores = group_scores(probs, group_dist, ["a", "b", "c"])
    assert set(scores) == {"a", "b"}
    assert scores["a"] == pytest.approx((-math.log(0.8) - 0.5 * math.log(0.1) - 0.5 * math.log(0.9)) / 2)
    assert scores["b"] == pytest.approx(math.log(2))


def test_disagreement_metrics_names_the_worst_group():
    probs = [[0.8, 0.2], [0.3, 0.7]]
    out = disagreement_metrics(
        probs, [0, 0], [[0.6, 0.4], [1.0, 0.0]], group_dist=[[[1, 0], [0, 1]], [[1, 0], [0, 0]]], groups=["g=x", "g=y"]
    )
    assert out["accuracy"] == 0.5
    assert out["soft_ce"] == pytest.approx(soft_cross_entropy(probs, [[0.6, 0.4], [1.0, 0.0]]))
    assert out["group_ce/g=y"] == pytest.approx(-math.log(0.2))
    assert out["worst_group"] == "g=y" and out["worst_group_ce"] == out["group_ce/g=y"]


@pytest.mark.parametrize(
    "call",
    [
        lambda: soft_cross_entropy([[0.5, 0.6]], [[0.5, 0.5]]),  # row does not sum to 1
        lambda: soft_cross_entropy([[0.5, 0.5]], [[0.2, 0.3, 0.5]]),  # shapes differ
        lambda: jensen_shannon_divergence([[-0.1, 1.1]], [[0.5, 0.5]]),  # negative probability
        lambda: expected_calibration_error([[0.5, 0.5]], [2]),  # label outside the classes
        lambda: macro_f1([0, 1], [0], 2),  # lengths differ
        lambda: group_scores([[0.5, 0.5]], np.zeros((1, 2, 2)), ["only-one-name"]),
    ],
)
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


# -- Le-Wi-Di 2023 as the organisers score it: against the labels the data releases ------------------------------
LEWIDI = __import__("pathlib").Path(__file__).parent / "data" / "annotations" / "lewidi"


pytestmark_one_label = pytest.mark.filterwarnings("ignore:.*gave one label only")


def _armis_test():
    from prefalign.annotations.dataset import to_task_dataset
    from prefalign.annotations.readers import read_lewidi

    items = read_lewidi(LEWIDI / "ArMIS" / "ArMIS_test.json", "ArMIS")
    return items, to_task_dataset(items, "soft")


@pytestmark_one_label
def test_lewidi_reader_keeps_the_released_labels_it_is_scored_against():
    from prefalign.annotations.readers import read_lewidi

    items, data = _armis_test()
    # "1,0,1" and "0,1,0": the release rounds 2/3 to 0.67 and 1/3 to 0.33
    assert items.reference_labels.tolist() == [1, 0]
    assert items.reference_dist.tolist() == [[0.33, 0.67], [0.67, 0.33]]
    assert data[0].meta["reference_dist"] == [0.33, 0.67] and data[0].meta["reference_label"] == 1
    assert data[0].meta["annotation_dist"] == pytest.approx([1 / 3, 2 / 3])  # the annotations stay exact
    assert items.subset([1]).reference_dist.tolist() == [[0.67, 0.33]]
    # a file without hard_label / soft_label (our ConvAbuse fixture) has no reference: scores fall back
    convabuse = read_lewidi(LEWIDI / "ConvAbuse" / "ConvAbuse_test.json", "ConvAbuse")
    assert convabuse.reference_labels is None and convabuse.reference_dist is None


def test_lewidi_scores_read_the_released_soft_label_not_the_annotations():
    from prefalign.annotations.metrics import dataset_metrics

    _, data = _armis_test()
    probs = np.array([[0.5, 0.5], [0.9, 0.1]])
    scores = dataset_metrics(probs, data)
    # the scorer: -(0.33 ln .5 + 0.67 ln .5 + 0.67 ln .9 + 0.33 ln .1) / 2, each p + 1e-9 inside the log
    by_hand = (
        -(
            0.33 * math.log(0.5 + 1e-9)
            + 0.67 * math.log(0.5 + 1e-9)
            + 0.67 * math.log(0.9 + 1e-9)
            + 0.33 * math.log(0.1 + 1e-9)
        )
        / 2
    )
    assert scores["lewidi_ce"] == pytest.approx(by_hand, abs=1e-12)
    exact = -(math.log(0.5) + 2 / 3 * math.log(0.9) + 1 / 3 * math.log(0.1)) / 2  # against 1/3, 2/3
    assert scores["soft_ce"] == pytest.approx(exact, abs=1e-12)
    assert abs(scores["lewidi_ce"] - scores["soft_ce"]) > 1e-3  # the rounding shows at this size
    # hard: argmax of (.5, .5) is class 0 (numpy takes the first), released hard label 1 -> wrong; item 2 right
    assert scores["micro_f1"] == 0.5


@pytestmark_one_label
def test_micro_f1_follows_the_released_tie_break_not_ours(tmp_path):
    import json

    from prefalign.annotations.dataset import to_task_dataset
    from prefalign.annotations.metrics import dataset_metrics
    from prefalign.annotations.readers import read_lewidi
    from prefalign.annotations.targets import majority_vote

    tie = np.array([[1.0, 1.0]])
    ours = int(majority_vote(tie, seed=0)[0])  # our seed-0 draw; the organisers drew the other class
    record = {"text": "a tweet", "annotators": "Ann1,Ann2", "annotations": "0,1", "hard_label": str(1 - ours)}
    record["soft_label"] = {"0": 0.5, "1": 0.5}
    (tmp_path / "ArMIS_test.json").write_text(json.dumps({"1": record}), encoding="utf-8")
    data = to_task_dataset(read_lewidi(tmp_path / "ArMIS_test.json", "ArMIS"), "majority")
    assert data[0].label == ours
    probs = np.array([[0.2, 0.8]]) if ours == 0 else np.array([[0.8, 0.2]])  # predicts the released label
    scores = dataset_metrics(probs, data)
    assert scores["micro_f1"] == 1.0 and scores["accuracy"] == 0.0


def test_trainer_metrics_take_the_reference_from_the_batch_keys():
    from types import SimpleNamespace

    from prefalign.annotations.metrics import annotation_keys, dataset_metrics, trainer_metrics

    _, data = _armis_test()
    keys = annotation_keys(data)
    assert keys == ["annotation_dist", "reference_dist", "reference_label"]
    logits = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    arrays = [np.array([ex.meta[k] for ex in data.examples]) for k in keys]  # as the Trainer gathers them
    labels = np.array([ex.hard_label() for ex in data.examples])
    got = trainer_metrics(keys)(SimpleNamespace(predictions=logits, label_ids=(labels, *arrays)))
    want = dataset_metrics(np.array([[0.5, 0.5], [0.9, 0.1]]), data)
    assert got["lewidi_ce"] == pytest.approx(want["lewidi_ce"]) and got["micro_f1"] == want["micro_f1"] == 0.5


def test_lewidi_result_lines_compare_hard_labels_as_text():
    from prefalign.evaluation.disagreement import lewidi2023_micro_f1, parse_lewidi_results

    hard, soft = parse_lewidi_results("1.0\t0.2\t0.8\n0\t0.9\t0.1\n")
    assert hard == ["1.0", "0"] and soft.tolist() == [[0.2, 0.8], [0.9, 0.1]]
    assert lewidi2023_micro_f1(["1", "0"], hard) == 0.5  # "1.0" is not "1" to the scorer's string compare


def test_a_malformed_released_label_is_a_one_line_data_error(tmp_path):
    import json

    from prefalign.annotations.readers import read_lewidi
    from prefalign.errors import DataError, UserError

    record = {"text": "t", "annotators": "Ann1,Ann2,Ann3", "annotations": "0,1,1", "hard_label": "x"}
    record["soft_label"] = {"0": 0.33, "1": 0.67}
    (tmp_path / "ArMIS_test.json").write_text(json.dumps({"7": record}), encoding="utf-8")
    with pytest.raises(DataError, match=r"item 7: hard_label must be 0 or 1 .* remove both fields") as info:
        read_lewidi(tmp_path / "ArMIS_test.json", "ArMIS")
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    record["hard_label"] = "2"  # a class the set does not have
    (tmp_path / "ArMIS_test.json").write_text(json.dumps({"7": record}), encoding="utf-8")
    with pytest.raises(DataError, match="hard_label must be 0 or 1"):
        read_lewidi(tmp_path / "ArMIS_test.json", "ArMIS")
