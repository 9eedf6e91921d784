"""read_table: every format reads the same examples; labels, soft labels, choices; every error."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
from pathlib import Path

import pytest

from prefalign.data.readers import read_table
from prefalign.errors import ConfigError, DataError

ROWS = [
    {"text": "a fine film", "premise": "p1", "label": "pos"},
    {"text": "dull, and long", "premise": "p2", "label": "neg"},
    {"text": 'he said "wow"', "premise": "p3", "label": "pos"},
]


def write_rows(path: Path, rows: list[dict], fmt: str | None = None) -> Path:
    """Write rows in the format named by fmt (default: the path's suffixes)."""
    fmt = fmt or "".join(path.suffixes)
    opener = gzip.open if fmt.endswith(".gz") else bz2.open if fmt.endswith(".bz2") else open
    base = fmt.replace(".gz", "").replace(".bz2", "")
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        if base in (".csv", ".tsv"):
            columns = list(dict.fromkeys(k for row in rows for k in row))
            if base == ".tsv":  # GLUE style: no quoting at all
                writer = csv.DictWriter(f, columns, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None)
            else:
                writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        elif base == ".jsonl":
            f.write("".join(json.dumps(row) + "\n" for row in rows))
        else:
            json.dump(rows, f, indent=1)
    return path


def simple(ds) -> list[tuple]:
    return [(ex.text, ex.label, ex.text_pair, ex.choices, ex.soft_label) for ex in ds]


@pytest.mark.parametrize(
    "filename",
    ["d.csv", "d.tsv", "d.jsonl", "d.json", "d.csv.gz", "d.tsv.bz2", "d.jsonl.gz", "d.json.bz2", "D.CSV"],
)
def test_every_format_reads_the_same_examples(tmp_path, filename):
    path = write_rows(tmp_path / filename, ROWS, "".join(Path(filename.lower()).suffixes))
    ds = read_table(path, text_pair_column="premise", label_names=["neg", "pos"])
    assert simple(ds) == [
        ("a fine film", 1, "p1", None, None),
        ("dull, and long", 0, "p2", None, None),
        ('he said "wow"', 1, "p3", None, None),
    ]
    assert ds.name == path.name.split(".")[0]
    assert [ex.meta["row"] for ex in ds] == [1, 2, 3]


def test_json_file_may_hold_json_lines(tmp_path):
    path = write_rows(tmp_path / "d.json", ROWS, ".jsonl")
    assert simple(read_table(path)) == simple(read_table(write_rows(tmp_path / "e.jsonl", ROWS)))


def test_saved_dataset_folder_reads_the_same_and_uses_class_label_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    ds = datasets.Dataset.from_list(
        [{"text": r["text"], "label": 1 if r["label"] == "pos" else 0} for r in ROWS], features=features
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    got = read_table(tmp_path / "saved")
    assert got.label_names == ["neg", "pos"]
    assert got.name == "saved"
    from_jsonl = read_table(write_rows(tmp_path / "d.jsonl", ROWS), label_names=["neg", "pos"])
    assert simple(got) == simple(from_jsonl)
    assert len(read_table(tmp_path / "saved", limit=2)) == 2

    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(DataError, match=r"DatasetDict with splits \['train', 'test'\].*one split folder"):
        read_table(tmp_path / "dict")


def test_folder_that_is_not_a_saved_dataset(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not one saved by datasets.save_to_disk"):
        read_table(tmp_path / "plain")


def test_label_names_map_names_and_integer_strings(tmp_path):
    rows = [{"text": "x", "label": "pos"}, {"text": "y", "label": "0"}, {"text": "z", "label": " 1 "}]
    ds = read_table(write_rows(tmp_path / "d.csv", rows), label_names=["neg", "pos"])
    assert [ex.label for ex in ds] == [1, 0, 1]
    assert ds.label_names == ["neg", "pos"]


def test_numeric_label_names_match_by_name_in_text_and_by_index_in_json(tmp_path):
    rows = [{"text": "x", "label": "1"}, {"text": "y", "label": "3"}]
    stars = ["1", "2", "3"]
    assert [ex.label for ex in read_table(write_rows(tmp_path / "d.csv", rows), label_names=stars)] == [0, 2]
    rows = [{"text": "x", "label": 0}, {"text": "y", "label": 2}]
    ds = read_table(write_rows(tmp_path / "d.jsonl", rows), label_names=stars)
    assert [ex.label for ex in ds] == [0, 2]


def test_inferred_integer_labels(tmp_path):
    rows = [{"text": "x", "label": 0}, {"text": "y", "label": 2}, {"text": "z", "label": 1.0}]
    ds = read_table(write_rows(tmp_path / "d.jsonl", rows))
    assert ds.label_names == ["0", "1", "2"]
    assert [ex.label for ex in ds] == [0, 2, 1]
    rows = [{"text": "x", "label": "0"}, {"text": "y", "label": "2"}]
    csv_ds = read_table(write_rows(tmp_path / "d.csv", rows))
    assert csv_ds.label_names == ["0", "1", "2"] and [ex.label for ex in csv_ds] == [0, 2]


def test_inferred_named_labels_are_sorted(tmp_path):
    rows = [{"text": "x", "label": "pos"}, {"text": "y", "label": "neg"}, {"text": "z", "label": "mixed"}]
    ds = read_table(write_rows(tmp_path / "d.tsv", rows))
    assert ds.label_names == ["mixed", "neg", "pos"]
    assert [ex.label for ex in ds] == [2, 1, 0]


def test_label_column_option(tmp_path):
    rows = [{"sentence": "x", "y": "1"}, {"sentence": "y", "y": "0"}]
    ds = read_table(write_rows(tmp_path / "d.csv", rows), text_column="sentence", label_column="y", name="mine")
    assert [ex.label for ex in ds] == [1, 0] and ds.name == "mine"


def test_soft_labels_from_lists_strings_and_single_numbers(tmp_path):
    rows = [
        {"text": "a", "label": "1", "soft": "[0.3, 0.7]"},
        {"text": "b", "label": "0", "soft": "0.4"},
        {"text": "c", "label": "0", "soft": ""},
    ]
    ds = read_table(write_rows(tmp_path / "d.csv", rows), soft_label_column="soft", label_names=["neg", "pos"])
    assert [ex.label for ex in ds] == [1, 0, 0]
    assert ds[0].soft_label == pytest.approx([0.3, 0.7])
    assert ds[1].soft_label == pytest.approx([0.6, 0.4])
    assert ds[2].soft_label is None

    rows = [{"text": "a", "p": [0.2, 0.8]}, {"text": "b", "p": 0.1}]
    ds = read_table(write_rows(tmp_path / "d.jsonl", rows), soft_label_column="p")
    assert ds.label_names == ["0", "1"]
    assert [ex.label for ex in ds] == [1, 0]  # argmax, since there is no label column
    assert ds[1].soft_label == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize("filename", ["s.csv", "s.tsv", "s.jsonl", "s.json.gz"])
def test_soft_labels_read_the_same_in_every_format(tmp_path, filename):
    rows = [{"text": "a", "label": 1, "soft": [0.25, 0.75]}, {"text": "b", "label": 0, "soft": 0.5}]
    ds = read_table(write_rows(tmp_path / filename, rows), soft_label_column="soft", label_names=["n", "p"])
    assert simple(ds) == [("a", 1, None, None, [0.25, 0.75]), ("b", 0, None, None, [0.5, 0.5])]


def test_soft_labels_with_named_labels_need_label_names(tmp_path):
    rows = [{"text": "a", "label": "pos", "p": [0.2, 0.8]}, {"text": "b", "label": "neg", "p": [0.9, 0.1]}]
    path = write_rows(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match="pass label_names"):
        read_table(path, soft_label_column="p")
    assert [ex.label for ex in read_table(path, soft_label_column="p", label_names=["neg", "pos"])] == [1, 0]


@pytest.mark.parametrize(
    "soft, message",
    [
        ([0.5, 0.6], "summing to 1"),
        ([0.2, 0.3, 0.5], "must be 2 non-negative numbers"),
        (1.5, r"P\(class 1\) in \[0, 1\]"),
        ("lots", "write a list of probabilities"),
        ({"a": 1}, "write a list of probabilities"),
    ],
)
def test_bad_soft_labels(tmp_path, soft, message):
    rows = [{"text": "a", "label": 0, "p": [1.0, 0.0]}, {"text": "b", "label": 1, "p": soft}]
    with pytest.raises(DataError, match=rf"row 2 .*{message}"):
        read_table(write_rows(tmp_path / "d.jsonl", rows), soft_label_column="p", label_names=["n", "p"])


def test_single_number_soft_label_needs_two_classes(tmp_path):
    rows = [{"text": "a", "p": 0.5}]
    with pytest.raises(DataError, match="needs two classes, not 3"):
        read_table(write_rows(tmp_path / "d.jsonl", rows), soft_label_column="p", label_names=["a", "b", "c"])


def test_choice_columns(tmp_path):
    rows = [
        {"premise": "The man broke his toe.", "choice1": "He dropped it.", "choice2": "He sang.", "label": 0},
        {"premise": "I opened the window.", "choice1": "It got dark.", "choice2": "Air came in.", "label": "choice2"},
    ]
    ds = read_table(
        write_rows(tmp_path / "copa.jsonl", rows), text_column="premise", choice_columns=["choice1", "choice2"]
    )
    assert ds.label_names == ["choice1", "choice2"]
    assert ds.is_multiple_choice
    assert ds[0].choices == ["He dropped it.", "He sang."]
    assert [ex.label for ex in ds] == [0, 1]


def test_choice_columns_with_empty_choice_and_wrong_label_names(tmp_path):
    rows = [{"text": "t", "c1": "a", "c2": "", "label": 0}]
    path = write_rows(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match="row 1: the text in column 'c2' is ''"):
        read_table(path, choice_columns=["c1", "c2"])
    with pytest.raises(ConfigError, match="same length"):
        read_table(path, choice_columns=["c1", "c2"], label_names=["a", "b", "c"])


def test_limit_keeps_the_first_rows(tmp_path):
    for suffix in (".csv", ".jsonl", ".json"):
        ds = read_table(write_rows(tmp_path / f"d{suffix}", ROWS), limit=2, label_names=["neg", "pos"])
        assert [ex.text for ex in ds] == ["a fine film", "dull, and long"]
    with pytest.raises(ConfigError, match="limit must be a positive number"):
        read_table(tmp_path / "d.csv", limit=0)


def test_tsv_keeps_quote_characters(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text('text\tlabel\n" so - called " art \t1\nplain \t0\n', encoding="utf-8")
    ds = read_table(path)
    assert ds[0].text == '" so - called " art ' and ds[1].text == "plain "


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"^no such data file: .*nope\.csv$"):
        read_table(tmp_path / "nope.csv")


def test_unknown_column_lists_available_columns(tmp_path):
    path = write_rows(tmp_path / "d.csv", ROWS)
    with pytest.raises(
        DataError,
        match=r"no column 'sentence' \(set by text_column\); available columns: "
        r"\['text', 'premise', 'label'\]",
    ):
        read_table(path, text_column="sentence")
    with pytest.raises(DataError, match="no column 'gold' .set by label_column."):
        read_table(path, label_column="gold")
    with pytest.raises(DataError, match="no column 'soft' .set by soft_label_column."):
        read_table(path, soft_label_column="soft")


@pytest.mark.parametrize(
    "suffix, content", [(".csv", ""), (".csv", "text,label\n"), (".jsonl", "\n\n"), (".json", "[]"), (".tsv", "")]
)
def test_empty_files(tmp_path, suffix, content):
    path = tmp_path / f"d{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="is empty|has no data rows"):
        read_table(path)


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_or_missing_text_names_the_row(tmp_path, text):
    rows = [{"text": "ok", "label": 0}, {"label": 1} if text is None else {"text": text, "label": 1}]
    with pytest.raises(DataError, match=r"row 2: the text in column 'text' (is missing|is '\s*')"):
        read_table(write_rows(tmp_path / "d.jsonl", rows))


def test_missing_label_names_the_row(tmp_path):
    rows = [{"text": "a", "label": "0"}, {"text": "b", "label": ""}, {"text": "c", "label": "1"}]
    with pytest.raises(DataError, match="row 2 has no label in column 'label'"):
        read_table(write_rows(tmp_path / "d.csv", rows))


def test_unsupported_suffix_lists_formats(tmp_path):
    for name in ("d.parquet", "d.txt.gz", "noext"):
        (tmp_path / name).write_text("x", encoding="utf-8")
        with pytest.raises(DataError, match=r"unsupported data file .*formats: \.csv, \.tsv, \.jsonl, \.json"):
            read_table(tmp_path / name)


def test_json_rows_must_be_objects(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"text": "a", "label": 0}, ["b", 1]]', encoding="utf-8")
    with pytest.raises(DataError, match="row 2 is a JSON list, not an object"):
        read_table(path)
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 0}\n"b"\n', encoding="utf-8")
    with pytest.raises(DataError, match="row 2 is a JSON str, not an object"):
        read_table(path)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 0}\n\n{"text": "b", \n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        read_table(path)
    path = tmp_path / "d.json"
    path.write_text('[{"text": "a"},', encoding="utf-8")
    with pytest.raises(DataError, match="is not valid JSON"):
        read_table(path)


def test_label_outside_the_set_names_row_value_and_set(tmp_path):
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": "meh"}]
    with pytest.raises(DataError, match=r"row 2 has label 'meh' outside the label set \['neg', 'pos'\]"):
        read_table(write_rows(tmp_path / "d.csv", rows), label_names=["neg", "pos"])
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 2}]
    with pytest.raises(DataError, match=r"row 2 has label 2 outside the label set \['neg', 'pos'\]"):
        read_table(write_rows(tmp_path / "d.jsonl", rows), label_names=["neg", "pos"])


def test_label_inference_errors(tmp_path):
    one = [{"text": "a", "label": "pos"}, {"text": "b", "label": "pos"}]
    with pytest.raises(DataError, match=r"only the label\(s\) \['pos'\].*pass label_names"):
        read_table(write_rows(tmp_path / "one.csv", one))
    mixed = [{"text": "a", "label": 1}, {"text": "b", "label": "pos"}]
    with pytest.raises(DataError, match="mixes integer labels and class names"):
        read_table(write_rows(tmp_path / "mixed.jsonl", mixed))
    negative = [{"text": "a", "label": -1}, {"text": "b", "label": 1}]
    with pytest.raises(DataError, match="negative label -1"):
        read_table(write_rows(tmp_path / "neg.jsonl", negative))
    fractional = [{"text": "a", "label": 0.5}]
    with pytest.raises(DataError, match="row 1 has label 0.5.*soft_label_column"):
        read_table(write_rows(tmp_path / "frac.jsonl", fractional))


def test_corrupt_or_non_utf8_files(tmp_path):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read .*corrupt"):
        read_table(path)
    path = tmp_path / "e.csv"
    path.write_bytes("text,label\ncaf\u00e9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        read_table(path)


def test_error_messages_are_one_line(tmp_path):
    path = write_rows(tmp_path / "d.csv", ROWS)
    with pytest.raises(DataError) as info:
        read_table(path, text_column="missing")
    assert "\n" not in str(info.value)
