"""prefalign.compare.pairs: seed-matched wins of one target over another, on hand-made runs."""

from __future__ import annotations

import pytest

from prefalign.compare.pairs import paired_wins, pairs_table


def run(method, seed, f1, soft_ce, column="MD", status="ok"):
    return {
        "column": column,
        "method": method,
        "seed": seed,
        "status": status,
        "metrics": {"test_f1": f1, "test_soft_ce": soft_ce},
    }


RUNS = [
    run("LoRA / majority", 0, 0.60, 0.58),
    run("LoRA / soft", 0, 0.65, 0.55),  # soft wins both
    run("LoRA / majority", 1, 0.70, 0.50),
    run("LoRA / soft", 1, 0.70, 0.52),  # tie on F1, loses CE
    run("DCPC / majority", 0, 0.40, 0.70),
    run("DCPC / soft", 0, 0.50, 0.60),  # soft wins both
    run("DCPC / soft", 2, 0.90, 0.10),  # no majority run with seed 2: not a pair
    run("PTv2 / majority", 0, 0.1, 0.9),
    run("PTv2 / soft", 0, 0.9, 0.1, status="failed"),
    None,
]  # a run of the grid not finished yet


def test_pairs_match_method_and_seed_and_respect_the_direction_of_each_metric():
    wins = paired_wins(RUNS, "majority", "soft")
    assert wins == {("MD", "f1"): (2, 3), ("MD", "soft_ce"): (2, 3)}
    assert paired_wins(RUNS, "soft", "majority") == {("MD", "f1"): (0, 3), ("MD", "soft_ce"): (1, 3)}


def test_pairs_table_has_a_cell_per_dataset_and_metric():
    table = pairs_table(RUNS, "majority", "soft")
    assert "| MD | – | 2/3 | 2/3 | – | – | – |" in table
    assert "No finished" in pairs_table(RUNS, "majority", "dawid-skene")


def test_a_compare_config_with_pairs_adds_the_table_to_its_report(tmp_path):
    from prefalign.compare import load_compare_config, write_reports

    path = tmp_path / "grid.yaml"
    path.write_text(
        f"output_dir: {tmp_path / 'out'}\nseeds: [0, 1]\npairs: [majority, soft]\n"
        "methods: [{name: lora, label: LoRA / majority}, {name: lora, label: LoRA / soft}]\n"
        "datasets: [{name: MD}]\n"
    )
    cfg = load_compare_config(str(path))
    results = [
        {
            **r,
            "model": "minilm",
            "metric": "f1",
            "tunable_params": 10,
            "seconds": 1.0,
            "machine": "test",
            "versions": {},
        }
        for r in RUNS[:4]
    ]
    table = write_reports(cfg, results, "prefalign compare")["table"].read_text()
    assert "Seed-matched pairs" in table and "| MD | – | 1/2 | 1/2 | – | – | – |" in table
    with pytest.raises(Exception, match="pairs"):
        load_compare_config(str(path), ["pairs=[soft]"])


def test_a_compare_config_with_differences_prints_the_median_difference_and_its_interval(tmp_path):
    from prefalign.compare import load_compare_config, write_reports

    path = tmp_path / "grid.yaml"
    path.write_text(
        f"output_dir: {tmp_path / 'out'}\nseeds: [0, 1, 2]\ndifferences: [[KL, PTLoss]]\n"
        "methods: [{name: ptloss, label: KL}, {name: ptloss, label: PTLoss}]\n"
        "datasets: [{name: SST-2, metric: accuracy}]\n"
    )
    cfg = load_compare_config(str(path))
    accuracy = {("KL", 0): 0.80, ("PTLoss", 0): 0.82, ("KL", 1): 0.70, ("PTLoss", 1): 0.69, ("KL", 2): 0.75}
    accuracy[("PTLoss", 2)] = 0.80
    results = [
        {
            "model": "minilm",
            "column": "SST-2",
            "method": method,
            "seed": seed,
            "status": "ok",
            "metric": "accuracy",
            "metrics": {"test_accuracy": acc},
            "tunable_params": 10,
            "seconds": 1.0,
            "machine": "test",
            "versions": {},
        }
        for (method, seed), acc in accuracy.items()
    ]
    table = write_reports(cfg, results, "prefalign compare")["table"].read_text()
    # PTLoss minus KL per seed: +2, -1, +5 points; median +2; every bootstrap median is one of them
    assert "'PTLoss' minus 'KL', test accuracy" in table
    assert "| SST-2 | +2.0 [-1.0, +5.0] (3) |" in table
    with pytest.raises(Exception, match="not a method label"):
        load_compare_config(str(path), ["differences=[[KL, Focal]]"])
    with pytest.raises(Exception, match="two different rows"):
        load_compare_config(str(path), ["differences=[[KL, KL]]"])
