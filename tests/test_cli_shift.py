"""`prefalign shift` and `prefalign tasks`: files and card written, one-line errors, no partial output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers_cli import assert_one_error, run_main, run_script

RECORD_FIXTURE = Path(__file__).resolve().parent / "data" / "record"


@pytest.fixture
def copa_dir(tmp_path):
    d = tmp_path / "copa"
    d.mkdir()
    rows = [
        {
            "premise": f"Premise {i}.",
            "choice1": "The man went to the store." if i % 2 else "The rain fell.",
            "choice2": "The rain fell." if i % 2 else "The woman called her friend.",
            "question": "effect",
            "label": 0,
            "idx": i,
        }
        for i in range(20)
    ]  # odd rows already answer the human option
    for name in ("train.jsonl", "val.jsonl"):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tasks_lists_every_task():
    rc, out, _ = run_main(["tasks"])
    assert rc == 0
    for name, kind, metric, shift in (
        ("boolq", "classification", "accuracy", "boolq-ps"),
        ("copa", "multiple_choice", "accuracy", "copa-bs"),
        ("record", "generation", "f1-em", "record-r"),
        ("alpaca", "generation", "gpt-score", "alpaca-is"),
        ("sst2", "", "", "sst2-p"),
    ):
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert kind in line and metric in line and shift in line
    assert "files:" in out


def test_shift_list_shows_parameters():
    rc, out, _ = run_main(["shift", "--list"])
    assert rc == 0
    assert "copa-bs" in out and "alpha=1.5" in out and "rephraser='rule'" in out and "rte-e" in out


def test_copa_bs_writes_dataset_and_card(copa_dir, tmp_path):
    out_dir = tmp_path / "out"
    rc, out, err = run_main(
        [
            "shift",
            "copa-bs",
            "--task",
            "copa",
            "--path",
            str(copa_dir),
            "--output",
            str(out_dir),
            "--seed",
            "1",
            "--set",
            "fraction=1.0",
            "--set",
            "alpha=2",
        ]
    )
    assert rc == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["train.card.json", "train.card.md", "train.jsonl"]
    rows = read_jsonl(out_dir / "train.jsonl")
    assert [r["label"] for r in rows] == [1, 0] * 10  # every answer is now the human option
    card = json.loads((out_dir / "train.card.json").read_text())
    assert card["parameters"]["alpha"] == 2 and card["parameters"]["seed"] == 1
    assert card["n_changed"] == 10 and card["task"] == "copa" and card["split"] == "train"
    assert card["label_distribution_after"] == {"choice1": 10.0, "choice2": 10.0}
    md = (out_dir / "train.card.md").read_text()
    assert "n_changed: 10" in md and "| choice1 | 20 | 10 |" in md
    assert "wrote" in out


def test_record_r_writes_answers_and_references(tmp_path):
    out_dir = tmp_path / "rr"
    rc, _, err = run_main(
        [
            "shift",
            "record-r",
            "--task",
            "record",
            "--path",
            str(RECORD_FIXTURE),
            "--split",
            "test",
            "--output",
            str(out_dir),
            "--rephraser",
            "rule",
        ]
    )
    assert rc == 0, err
    rows = read_jsonl(out_dir / "test.jsonl")
    assert [r["references"] for r in rows] == [["Analytical Engine"], ["Charles Babbage", "Babbage"]]
    assert all(r["references"][0] in r["answer"] and r["meta"]["style"].startswith("rephrasing") for r in rows)
    card = json.loads((out_dir / "test.card.json").read_text())
    assert card["n_changed"] == 2 and card["parameters"]["rephraser"].startswith("rule-based")


def test_same_seed_same_files(copa_dir, tmp_path):
    args = ["shift", "copa-bs", "--task", "copa", "--path", str(copa_dir), "--set", "fraction=0.5"]
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert run_main(args + ["--output", str(tmp_path / name), "--seed", seed])[0] == 0
    a, b, c = ((tmp_path / n / "train.jsonl").read_text() for n in "abc")
    assert a == b and a != c


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["shift", "nope", "--task", "copa", "--output", "{out}"], ["unknown shift 'nope'"]),
        (
            ["shift", "copa-bs", "--task", "copa", "--path", "{copa}", "--output", "{out}", "--set", "colour=red"],
            ["no parameter colour"],
        ),
        (
            ["shift", "copa-bs", "--task", "copa", "--path", "{copa}", "--output", "{out}", "--set", "fraction=7"],
            ["fraction must be"],
        ),
        (["shift", "copa-bs", "--output", "{out}"], ["needs --task"]),
        (["shift", "copa-bs", "--task", "copa", "--path", "{missing}", "--output", "{out}"], ["is not a folder"]),
        (
            ["shift", "copa-bs", "--task", "copa", "--path", "{copa}", "--split", "validation", "--output", "{out}"],
            ["no separate validation split"],
        ),
        (["shift", "sst2-p", "--task", "copa", "--path", "{copa}", "--output", "{out}"], ["binary sentiment"]),
        (
            ["shift", "copa-bs", "--task", "copa", "--path", "{copa}", "--output", "{out}", "--rephraser", "chat"],
            ["takes no rephraser"],
        ),
        (["shift", "boolq-ps", "--task", "copa", "--path", "{copa}", "--output", "{out}"], ["yes/no"]),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_files(copa_dir, tmp_path, argv, needles):
    out_dir = tmp_path / "never"
    subs = {"{out}": str(out_dir), "{copa}": str(copa_dir), "{missing}": str(tmp_path / "missing")}
    rc, _, err = run_main([subs.get(a, a) for a in argv])
    assert rc == 2
    assert_one_error(rc, err, *needles)
    assert not out_dir.exists()


def test_failed_shift_leaves_an_existing_output_folder_as_it_was(copa_dir, tmp_path, monkeypatch):
    for var in ("PREFALIGN_API_BASE", "PREFALIGN_API_MODEL"):
        monkeypatch.delenv(var, raising=False)
    out_dir = tmp_path / "kept"
    out_dir.mkdir()
    (out_dir / "other.txt").write_text("x")
    (copa_dir.parent / "bq").mkdir()
    (copa_dir.parent / "bq" / "boolq_validation.json").write_text(
        json.dumps([{"question": f"q{i}", "passage": "p", "answer": bool(i % 2)} for i in range(6)])
    )
    rc, _, err = run_main(
        [
            "shift",
            "boolq-ps",
            "--task",
            "boolq",
            "--path",
            str(copa_dir.parent / "bq"),
            "--output",
            str(out_dir),
            "--rephraser",
            "chat",
        ]
    )
    assert_one_error(rc, err, "PREFALIGN_API_BASE")
    assert [p.name for p in out_dir.iterdir()] == ["other.txt"]


def test_console_script_reports_one_line(tmp_path):
    proc = run_script(
        ["shift", "copa-bs", "--task", "copa", "--path", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o")],
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert_one_error(proc.returncode, proc.stderr, "is not a folder")
    assert not (tmp_path / "o").exists()
