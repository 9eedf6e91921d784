"""Loaders of the SuperGLUE / Alpaca tasks in their original file formats (fixtures, and the shared copies)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefalign.errors import DataError
from prefalign.tasks import TASKS, load_task

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RECORD_FIXTURE = Path(__file__).resolve().parent / "data" / "record"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"the shared data is not at {path}")
    return path.parent if path.is_file() else path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def boolq_rows(n: int, key: str = "answer") -> list[dict]:
    return [
        {"question": f"is thing {i} true", "passage": f"Passage {i} says thing {i} is {i % 3 != 0}.", key: i % 3 != 0}
        for i in range(n)
    ]


def copa_rows(n: int = 6) -> list[dict]:
    return [
        {
            "premise": f"The man did thing {i}.",
            "choice1": "He went home.",
            "choice2": "It rained.",
            "question": "cause" if i % 2 else "effect",
            "label": i % 2,
            "idx": i,
        }
        for i in range(n)
    ]


def test_registered_tasks_declare_kind_metric_and_shift():
    expected = {
        "boolq": ("classification", "accuracy", "boolq-ps"),
        "copa": ("multiple_choice", "accuracy", "copa-bs"),
        "record": ("generation", "f1-em", "record-r"),
        "alpaca": ("generation", "gpt-score", "alpaca-is"),
    }
    for name, (kind, metric, shift) in expected.items():
        task = TASKS[name]
        assert (task.kind, task.metric, task.shift) == (kind, metric, shift)
    assert TASKS["boolq"].verbalizers == [" no", " yes"]
    assert "{text}" in TASKS["boolq"].decoder_template and "{text_pair}" in TASKS["boolq"].decoder_template


def test_boolq_hf_export_only_validation_holds_out_a_fixed_test(tmp_path):
    (tmp_path / "boolq_validation.json").write_text(json.dumps(boolq_rows(12)))
    train, validation, test = load_task("boolq", tmp_path, seed=0)
    assert validation is None and len(train) == 6 and len(test) == 6  # half of a small set
    assert train.label_names == ["no", "yes"]
    ex = test[0]
    assert ex.text.startswith("Passage") and ex.text_pair.startswith("is thing")
    assert ex.label == int("is True" in ex.text)
    again = load_task("boolq", tmp_path, seed=5)  # the held-out split does not follow the run seed
    assert [e.text for e in again[2]] == [e.text for e in test]


def test_boolq_superglue_layout(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{**r, "idx": i} for i, r in enumerate(boolq_rows(4, "label"))])
    write_jsonl(tmp_path / "val.jsonl", boolq_rows(3, "label"))
    train, validation, test = load_task("boolq", tmp_path)
    assert (len(train), validation, len(test)) == (4, None, 3)
    assert [e.label for e in train] == [0, 1, 1, 0] and train[1].meta["idx"] == 1


def test_boolq_errors_name_file_and_field(tmp_path):
    with pytest.raises(DataError, match="val.jsonl, boolq_validation.json"):
        load_task("boolq", tmp_path)
    rows = boolq_rows(3)
    del rows[1]["passage"]
    (tmp_path / "boolq_validation.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"boolq_validation.json record 2 has no field 'passage'"):
        load_task("boolq", tmp_path)
    rows = boolq_rows(3)
    rows[0]["answer"] = "maybe"
    (tmp_path / "boolq_validation.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match="record 1: field 'answer'"):
        load_task("boolq", tmp_path)


def test_copa_text_carries_the_question_type(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", copa_rows(6))
    write_jsonl(tmp_path / "val.jsonl", copa_rows(2))
    train, validation, test = load_task("copa", tmp_path)
    assert (len(train), validation, len(test)) == (6, None, 2)
    assert train.is_multiple_choice and train.label_names == ["choice1", "choice2"]
    assert train[0].text == "The man did thing 0. What happened as a result?"
    assert train[1].text == "The man did thing 1. What was the cause?"
    assert train[1].choices == ["He went home.", "It rained."] and train[1].label == 1
    assert train[1].meta["question"] == "cause"


@pytest.mark.parametrize(
    "change, match",
    [
        ({"question": "why"}, "field 'question' is 'why'"),
        ({"label": 2}, "field 'label' is 2"),
        ({"choice2": ""}, "field 'choice2' is empty"),
        ({"label": None}, "has no field 'label'"),
    ],
)
def test_copa_bad_records(tmp_path, change, match):
    rows = copa_rows(3)
    rows[2].update(change)
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "val.jsonl", copa_rows(2))
    with pytest.raises(DataError, match=match) as err:
        load_task("copa", tmp_path)
    assert "train.jsonl record 3" in str(err.value) and "\n" not in str(err.value)


def test_record_fixture_one_example_per_query():
    train, validation, test = load_task("record", RECORD_FIXTURE)
    assert (len(train), validation, len(test)) == (3, None, 2)
    assert train.is_generation and train.label_names == []
    ex = train[0]
    assert "@highlight" not in ex.text and "\n- Marie Curie was the first person" in ex.text
    assert "@placeholder" in ex.text_pair
    assert ex.answer == "Chemistry" and ex.references == ["Chemistry"]
    assert "Henri Becquerel" in ex.meta["entities"] and "Physics" in ex.meta["entities"]
    assert test[1].answer == "Charles Babbage" and test[1].references == ["Charles Babbage", "Babbage"]


def test_record_entity_spans_are_inclusive_and_checked(tmp_path):
    row = json.loads((RECORD_FIXTURE / "val.jsonl").read_text().splitlines()[0])
    text, span = row["passage"]["text"], row["passage"]["entities"][0]
    assert text[span["start"] : span["end"] + 1] == "Ada Lovelace"
    row["passage"]["entities"].append({"start": 5, "end": 10_000})
    write_jsonl(tmp_path / "train.jsonl", [row])
    write_jsonl(tmp_path / "val.jsonl", [row])
    with pytest.raises(DataError, match="passage.entities"):
        load_task("record", tmp_path)


def test_record_unlabelled_queries_are_refused(tmp_path):
    row = json.loads((RECORD_FIXTURE / "val.jsonl").read_text().splitlines()[0])
    for qa in row["qas"]:
        qa["answers"] = []
    write_jsonl(tmp_path / "train.jsonl", [row])
    write_jsonl(tmp_path / "val.jsonl", [row])
    with pytest.raises(DataError, match=r"train.jsonl record 1: field 'qas\[0\].answers'"):
        load_task("record", tmp_path)


def test_alpaca_json_array_with_held_out_test(tmp_path):
    rows = [
        {"instruction": f"Do task {i}.", "input": "some input" if i % 2 else "", "output": f"Done {i}."}
        for i in range(30)
    ]
    (tmp_path / "alpaca_data.json").write_text(json.dumps(rows))
    train, validation, test = load_task("alpaca", tmp_path)
    assert (len(train), validation, len(test)) == (27, None, 3)
    assert train.is_generation
    by_text = {e.text: e for e in list(train) + list(test)}
    assert by_text["Do task 1."].text_pair == "some input" and by_text["Do task 2."].text_pair is None
    assert by_text["Do task 2."].answer == "Done 2."


def test_alpaca_errors(tmp_path):
    with pytest.raises(DataError, match="alpaca_data.json"):
        load_task("alpaca", tmp_path)
    (tmp_path / "mine.json").write_text(json.dumps([{"instruction": "x", "input": ""}, {"instruction": "y"}]))
    with pytest.raises(DataError, match=r"mine.json record 1 has no field 'output'"):
        load_task("alpaca", tmp_path)


def test_real_boolq():
    train, _, test = load_task("boolq", shared("boolq", "boolq_validation.json"))
    assert (len(train), len(test)) == (2270, 1000)
    assert sum(e.label for e in list(train) + list(test)) == 2033


def test_real_copa():
    train, _, test = load_task("copa", shared("copa", "val.jsonl"))
    assert (len(train), len(test)) == (400, 100)
    assert test[0].text == "The man turned on the faucet. What happened as a result?" and test[0].label == 1
    assert sum(e.label == 0 for e in test) == 55


def test_real_alpaca():
    train, _, test = load_task("alpaca", shared("alpaca_en_demo", "alpaca_en_demo.json"))
    assert (len(train), len(test)) == (900, 99)
    assert sum(e.text_pair is not None for e in list(train) + list(test)) == 412


def test_boolq_ps_config_trains_on_styled_answers_and_scores_the_test_labels(tmp_path):
    """data.shift = boolq-ps turns train/validation into styled answers; the test split keeps its
    yes/no labels, as answers the yes/no accuracy reads (training.splits.as_generation)."""
    from prefalign.generation import gold_polarity
    from prefalign.training.config import DataConfig
    from prefalign.training.splits import load_splits

    (tmp_path / "boolq_validation.json").write_text(json.dumps(boolq_rows(40)))
    cfg = DataConfig(task="boolq", path=str(tmp_path), shift={"name": "boolq-ps"}, validation_fraction=0.25)
    train, validation, test = load_splits(cfg, seed=0)
    assert train.is_generation and validation.is_generation and test.is_generation
    plain = load_task("boolq", tmp_path, seed=0)[2]
    assert [gold_polarity(ex) for ex in test] == [plain.label_names[ex.label] for ex in plain]
    assert [ex.answer for ex in test] == [plain.label_names[ex.label] for ex in plain]  # not restyled
    assert all(ex.answer not in ("yes", "no") for ex in train)  # every training answer is restyled
