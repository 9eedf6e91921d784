"""benchmarks/lpt_start.py: untrained methods scored beside the untuned model, and where their attention goes."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark
from test_compare import tiny_llama_grid, write_config

bench = load_benchmark("lpt_start")


def test_a_tiny_grid_scored_before_training(tmp_path, vocab_file):
    methods = [
        {"name": "prompt-tuning", "label": "PT", "method": {"num_virtual_tokens": 2}},
        {"name": "ptuning-v2", "label": "PTv2", "method": {"prefix_length": 2}},
        {"name": "lpt", "label": "LPT", "method": {"prompt_length": 3, "bottleneck": 4}},
    ]
    config = tiny_llama_grid(tmp_path, vocab_file, keep="metrics", seeds=[0], methods=methods)
    out = tmp_path / "start.json"
    argv = ["--config", str(config), "--column", "toy", "--rows", "PT", "PTv2", "LPT", "--train-items", "12"]
    argv += ["--variant", "method.placeholder_init=text", "--output", str(out)]
    assert bench.main(argv) == 0
    rows = {r["row"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == [
        "untuned model (zero-shot)",
        "PT",
        "PTv2",
        "LPT",
        "LPT: without its generator",
        "LPT, method.placeholder_init=text",
        "LPT, method.placeholder_init=text: without its generator",
    ]
    for r in rows.values():
        assert r["train"]["items"] == 12 and sum(r["validation"]["predicted_share"]) == pytest.approx(1.0)
    assert "attention_share" not in rows["untuned model (zero-shot)"]  # it adds no positions
    layers = len(rows["PT"]["attention_share"])
    assert all(0.0 <= s <= 1.0 for r in list(rows.values())[1:] for s in r["attention_share"])
    # P-Tuning v2's text init is the keys and values of the model reading the text: prompt tuning's text init.
    assert rows["PT"]["train"]["cross_entropy"] == pytest.approx(rows["PTv2"]["train"]["cross_entropy"], abs=1e-5)
    assert rows["PT"]["attention_share"] == pytest.approx(rows["PTv2"]["attention_share"], abs=1e-5)
    # The generator acts at the insert layer, so below it removing it changes nothing.
    k = rows["LPT"]["insert_layer"]
    assert 0 < k < layers
    assert rows["LPT"]["attention_share"][:k] == pytest.approx(
        rows["LPT: without its generator"]["attention_share"][:k]
    )
    assert rows["LPT"]["attention_share"][:k] != pytest.approx(
        rows["LPT, method.placeholder_init=text"]["attention_share"][:k]
    )
    assert rows["LPT"]["prompt_rms_median"] > 0 and rows["LPT"]["real_rms_median"] > 0
    assert rows["LPT"]["placeholder_rms_median"] == 0.0  # zero placeholders stay zero below the insert layer
    assert rows["LPT, method.placeholder_init=text"]["placeholder_first_rms_median"] > 0


def test_a_row_the_config_does_not_hold_is_one_line(tmp_path, capsys):
    config = write_config(tmp_path, tmp_path / "no-model", keep="metrics")
    argv = ["--config", str(config), "--column", "toy", "--rows", "LPT", "--output", str(tmp_path / "o.json")]
    assert bench.main(argv) == 2
    assert capsys.readouterr().err.strip().startswith("error: no single run for toy / LPT / seed 0")
