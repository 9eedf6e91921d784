"""polarity_shift (SST-2-P, DCPC appendix A.1.1 eq. 16-18), its card and the JSON lines round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from prefalign.data.examples import Example, TaskDataset
from prefalign.data.readers import read_table
from prefalign.errors import ConfigError
from prefalign.shifts import polarity_shift, write_card, write_dataset_jsonl

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
NAMES = ["negative", "positive"]


def binary(n_pos: int, n_neg: int, name: str = "toy") -> TaskDataset:
    examples = [Example(text=f"pos {i}", label=1, meta={"i": i}) for i in range(n_pos)]
    examples += [Example(text=f"neg {i}", label=0, meta={"i": i}) for i in range(n_neg)]
    return TaskDataset(examples, list(NAMES), name)


def shifted_texts(ds: TaskDataset) -> list[str]:
    return [ex.text for ex in ds if ex.meta.get("shifted")]


def test_soft_labels_match_eq_17_and_18():
    shifted, card = polarity_shift(binary(10, 10))
    for ex in shifted:
        if ex.meta.get("shifted"):
            # eq. 17: positives with delta 0.3 -> P(positive) = 0.7; eq. 18: negatives with 0.4 -> 0.4
            expected = [0.3, 0.7] if ex.label == 1 else [0.6, 0.4]
            assert ex.soft_label == pytest.approx(expected)
        else:
            assert ex.soft_label is None
    assert [ex.label for ex in shifted] == [1] * 10 + [0] * 10  # hard labels are the original annotation
    assert card["n_changed_by_class"] == {"negative": 5, "positive": 5}
    assert shifted.name == "toy-P"


def test_exact_counts_per_class_use_round():
    # round(0.3 * 7) = 2, round(0.3 * 5) = round(1.5) = 2 (half to even)
    shifted, card = polarity_shift(binary(7, 5), fraction=0.3)
    assert sum(1 for ex in shifted if ex.meta.get("shifted") and ex.label == 1) == 2
    assert sum(1 for ex in shifted if ex.meta.get("shifted") and ex.label == 0) == 2
    assert card["n_changed"] == 4 and card["n_examples"] == 12
    assert polarity_shift(binary(7, 5), fraction=0.0)[1]["n_changed"] == 0
    assert polarity_shift(binary(7, 5), fraction=1.0)[1]["n_changed"] == 12


def test_input_is_not_mutated():
    original = binary(8, 6)
    before = copy.deepcopy(original)
    shifted, _ = polarity_shift(original, fraction=1.0)
    assert original == before
    assert all(a is not b and a.meta is not b.meta for a, b in zip(original, shifted))


def test_deterministic_for_a_seed():
    a, card_a = polarity_shift(binary(30, 30), seed=3)
    b, card_b = polarity_shift(binary(30, 30), seed=3)
    assert shifted_texts(a) == shifted_texts(b) and card_a == card_b
    c, _ = polarity_shift(binary(30, 30), seed=4)
    assert shifted_texts(a) != shifted_texts(c)


def test_positive_label_zero_and_flips():
    data = TaskDataset([Example(text=f"t{i}", label=i % 2) for i in range(10)], ["positive", "negative"])
    shifted, card = polarity_shift(data, fraction=1.0, positive_label=0, delta_positive=0.7, delta_negative=0.2)
    for ex in shifted:
        # class 0 is positive: y' = 0.3 for positives, 0.2 for negatives, stored at index 0
        assert ex.soft_label == pytest.approx([0.3, 0.7] if ex.label == 0 else [0.2, 0.8])
    assert card["hard_label_flips"] == 5  # only the positives, whose delta exceeds 0.5


def test_card_fields():
    _, card = polarity_shift(binary(10, 10), seed=7)
    assert card["shift"] == "sst2-p"
    assert card["paper"] == "DCPC appendix A.1.1 eq. 16-18"
    assert card["parameters"] == {
        "fraction": 0.5,
        "delta_positive": 0.3,
        "delta_negative": 0.4,
        "positive_label": 1,
        "seed": 7,
    }
    assert card["label_names"] == NAMES
    assert card["label_distribution_before"] == {"negative": 10.0, "positive": 10.0}
    # 5 positives move 0.3 of their mass to negative, 5 negatives move 0.4 to positive
    expected = {"negative": 10 - 2.0 + 1.5, "positive": 10 + 2.0 - 1.5}
    assert card["label_distribution_after"] == pytest.approx(expected)
    assert card["hard_label_flips"] == 0
    json.dumps(card)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fraction": 1.5}, r"fraction must be a number in \[0, 1\]"),
        ({"delta_positive": -0.1}, "delta_positive must be"),
        ({"delta_negative": "0.4"}, "delta_negative must be"),
        ({"positive_label": 2}, "positive_label must be 0 or 1"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        polarity_shift(binary(4, 4), **kwargs)


def test_needs_a_binary_hard_labelled_dataset():
    three = TaskDataset([Example(text="a", label=2), Example(text="b", label=0)], ["neg", "neu", "pos"], "tri")
    with pytest.raises(ConfigError, match=r"needs a binary sentiment dataset; tri has classes \['neg', 'neu'"):
        polarity_shift(three)
    shifted, _ = polarity_shift(binary(4, 4), fraction=1.0)
    with pytest.raises(ConfigError, match="already has a soft label"):
        polarity_shift(shifted)


def test_card_and_jsonl_written_and_read_back(tmp_path):
    shifted, card = polarity_shift(binary(9, 7))
    json_path, md_path = write_card(tmp_path / "out", card)
    assert json.loads(json_path.read_text(encoding="utf-8")) == card
    md = md_path.read_text(encoding="utf-8")
    assert md.startswith("# Dataset card: toy-P")
    assert "- delta_positive: 0.3" in md and "| label | before | after |" in md
    after = card["label_distribution_after"]["positive"]
    assert f"| positive | 9 | {after:g} |" in md

    data_path = write_dataset_jsonl(tmp_path / "out" / "train.jsonl", shifted)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["DATASET_CARD.json", "DATASET_CARD.md", "train.jsonl"]  # no temporary files left
    back = read_table(data_path, soft_label_column="soft_label", label_names=card["label_names"])

    def fields(ds):
        return [(ex.text, ex.label, ex.soft_label) for ex in ds]

    assert fields(back) == fields(shifted)
    first = json.loads(data_path.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"text", "label", "soft_label"}


def test_jsonl_round_trip_for_pairs_and_choices(tmp_path):
    examples = [Example(text="p", text_pair="h", label=0), Example(text="q", text_pair="i", label=1)]
    pairs = TaskDataset(examples, ["a", "b"])
    back = read_table(
        write_dataset_jsonl(tmp_path / "pairs.jsonl", pairs), text_pair_column="text_pair", label_names=["a", "b"]
    )
    assert [(ex.text, ex.text_pair, ex.label) for ex in back] == [("p", "h", 0), ("q", "i", 1)]
    first = json.loads((tmp_path / "pairs.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"text", "label", "text_pair"}


def test_write_card_replaces_an_existing_card(tmp_path):
    write_card(tmp_path, {"shift": "x", "n_examples": 1})
    write_card(tmp_path, {"shift": "x", "n_examples": 2})
    assert json.loads((tmp_path / "DATASET_CARD.json").read_text())["n_examples"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DATASET_CARD.json", "DATASET_CARD.md"]


def test_real_sst2_dev():
    dev = SHARED / "data" / "sst2" / "dev.tsv"
    if not dev.is_file():
        pytest.skip(f"the shared SST-2 data is not at {dev}")
    ds = read_table(dev, text_column="sentence", label_names=NAMES)
    # SOURCE.md: 872 rows, 428 negative / 444 positive, the first one "it 's a charming ..."
    assert len(ds) == 872
    assert ds.label_counts() == {"negative": 428.0, "positive": 444.0}
    assert ds[0].text.startswith("it 's a charming and often affecting journey")
    shifted, card = polarity_shift(ds)
    assert card["n_changed_by_class"] == {"negative": 214, "positive": 222}
    assert card["label_distribution_after"] == pytest.approx(
        {"negative": 428 - 0.4 * 214 + 0.3 * 222, "positive": 444 + 0.4 * 214 - 0.3 * 222}
    )
    assert shifted.name == "dev-P"
