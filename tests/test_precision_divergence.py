"""benchmarks/precision_divergence.py: two runs compared item by item and parameter by parameter."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import load_benchmark
from test_compare import tiny_llama_grid, write_config

bench = load_benchmark("precision_divergence")


def test_compare_runs_counts_flipped_items_and_measures_each_group_by_hand():
    ref = {"prefix.kv": torch.tensor([3.0, 4.0]), "pcm.meta": torch.tensor([1.0]), "classifier.w": torch.tensor([2.0])}
    other = {
        "prefix.kv": torch.tensor([3.0, 4.5]),
        "pcm.meta": torch.tensor([1.0]),
        "classifier.w": torch.tensor([1.0]),
    }
    got = bench.compare_runs(other, [[0.6, 0.4], [0.2, 0.8]], ref, [[0.4, 0.6], [0.25, 0.75]])
    assert got["items_predicted_differently"] == 1
    assert got["max_probability_change"] == pytest.approx(0.2)
    assert got["prefix_relative_distance"] == pytest.approx(0.5 / 5.0)
    assert got["pcm_relative_distance"] == 0.0 and got["head_relative_distance"] == pytest.approx(0.5)


def test_a_tiny_grid_row_against_itself_and_a_nudged_copy(tmp_path, vocab_file):
    methods = [
        {"name": "dcpc", "label": "DCPC", "method": {"prefix_length": 2}},
        {"name": "dcpc-no-clpa", "label": "w/o CLPA", "method": {"prefix_length": 2}},
    ]
    base = {
        "data": {"max_length": 16},
        "training": {"batch_size": 8, "max_steps": 6, "eval_steps": 6, "logging_steps": 1, "progress": False},
    }
    config = tiny_llama_grid(tmp_path, vocab_file, keep="metrics", seeds=[0], methods=methods, base=base)
    records = tmp_path / "records.jsonl"
    argv = ["--config", str(config), "--column", "toy", "--rows", "DCPC", "w/o CLPA", "--records", str(records)]
    argv += ["--control", "training.learning_rate=1.00001e-4"]
    assert bench.main(argv) == 0
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [(r["run"].split("/")[2], r["control"], r["precision"]) for r in rows] == [
        (row, control, precision)
        for precision in ("fp32", "bf16")
        for row, control in (("DCPC", None), ("w-o CLPA", None), ("DCPC", "training.learning_rate=1.00001e-4"))
    ]
    for r in rows:
        assert len(r["test_probabilities"]) == 16 and r["train_losses"]
        if r["run"].endswith("/DCPC/seed0") and r["control"] is None:  # the reference against itself
            assert r["items_predicted_differently"] == 0 and r["prefix_relative_distance"] == 0.0
    nudged = [r for r in rows if r["control"]]
    assert all(r["prefix_relative_distance"] > 0 for r in nudged)  # the nudge moved the prefix
    assert bench.main(argv) == 0  # everything recorded: nothing trains again
    assert len(records.read_text().splitlines()) == 6


def test_a_row_the_config_does_not_hold_is_one_line(tmp_path, vocab_file, capsys):
    config = write_config(tmp_path, tmp_path / "no-model", keep="metrics")
    argv = ["--config", str(config), "--column", "toy", "--rows", "DCPC", "--records", str(tmp_path / "r.jsonl")]
    assert bench.main(argv) == 2
    assert capsys.readouterr().err.strip().startswith("error: no single run for toy / DCPC / seed 0")
