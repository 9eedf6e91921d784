"""prefalign.compare.records: compact run records, the committed JSONL files, and the bootstrap intervals
that paired comparisons print beside their median differences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers_cli import run_main
from prefalign.compare import load_compare_config, plan
from prefalign.compare.grid import config_digest
from prefalign.compare.pairs import (
    bootstrap_interval,
    difference_cell,
    method_differences_table,
    paired_differences,
    pairs_table,
)
from prefalign.compare.records import (
    RecordsError,
    compact,
    fill_from_records,
    read_records,
    records_from_csv,
    upsert_record,
)
from prefalign.compare.report import results_csv

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONVERTED = sorted(RESULTS.glob("compare_*.csv"))


def result(run_id="M/RT/DCPC/seed0", acc=0.7, digest="abc", **extra):
    return {
        "run_id": run_id,
        "model": "M",
        "column": "RT",
        "method": "DCPC",
        "seed": 0,
        "metric": "accuracy",
        "status": "ok",
        "metrics": {"test_accuracy": acc, "gate_cos_rate_mean": 0.08, "loss_align_mean": 0.5},
        "config_digest": digest,
        "config": {"training": {"seed": 0}},
        "curve": [{"step": 10, "eval_loss": 0.6}],
        "seconds": 12.5,
        **extra,
    }


def test_a_record_keeps_every_metric_and_the_digest_but_not_the_config(tmp_path):
    record = compact(result())
    assert "config" not in record
    assert record["config_digest"] == "abc"
    assert record["metrics"] == {"test_accuracy": 0.7, "gate_cos_rate_mean": 0.08, "loss_align_mean": 0.5}
    assert record["curve"] == [{"step": 10, "eval_loss": 0.6}]
    path = tmp_path / "r.jsonl"
    upsert_record(path, result(acc=0.6))
    upsert_record(path, result(run_id="M/RT/DCPC/seed1"))
    upsert_record(path, result(acc=0.9))  # the same run again: replaces, does not append
    records = read_records(path)
    assert [(r["run_id"], r["metrics"]["test_accuracy"]) for r in records] == [
        ("M/RT/DCPC/seed0", 0.9),
        ("M/RT/DCPC/seed1", 0.7),
    ]
    assert len(path.read_text().splitlines()) == 2


def test_a_broken_records_file_names_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(compact(result())) + "\n[1, 2]\n")
    with pytest.raises(RecordsError, match=r"r.jsonl line 2 is not a run record"):
        read_records(path)
    with pytest.raises(RecordsError, match="not found"):
        read_records(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("csv_path", CONVERTED, ids=lambda p: p.stem)
def test_committed_records_hold_exactly_what_the_committed_csv_holds(csv_path):
    """Each committed JSONL, read in grid order through the config, writes its CSV back byte for byte; one
    converted from its CSV holds exactly the CSV's records (a grid run with --records holds more)."""
    records = read_records(csv_path.with_suffix(".jsonl"))
    if all(str(r.get("source", "")).startswith("converted from") for r in records):
        converted = sorted(records_from_csv(csv_path), key=lambda r: r["run_id"])
        assert records == json.loads(json.dumps(converted))  # the file is sorted by run id
    cfg = load_compare_config(str(ROOT / "configs" / "compare" / f"{csv_path.stem.removeprefix('compare_')}.yaml"))
    status = [(spec, spec.experiment(cfg, Path("runs") / spec.run_id), None, None) for spec in plan(cfg)]
    results = [r for r in fill_from_records(status, records, config_digest) if r is not None]
    assert len(results) == len(records)  # every record is a run of the config
    assert results_csv(results) == csv_path.read_text()


def test_records_stand_in_for_runs_only_with_the_same_settings(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        f"output_dir: {tmp_path / 'out'}\nseeds: [0, 1, 2]\n"
        "models: [{name: minilm, label: M}]\nmethods: [{name: dcpc, label: DCPC}]\n"
        "datasets: [{name: RT, data: {task: rotten_tomatoes-demo}}]\n"
    )
    cfg = load_compare_config(str(path))
    status = [(spec, spec.experiment(cfg, tmp_path / spec.run_id), None, None) for spec in plan(cfg)]
    digest = config_digest(status[0][1])
    from_runs = result("M/RT/DCPC/seed2", acc=0.1)
    status[2] = (*status[2][:3], from_runs)
    records = [
        compact(result("M/RT/DCPC/seed0", digest=digest)),  # same settings: used
        compact(result("M/RT/DCPC/seed1", digest="changed")),  # other settings: the run is unfinished
        compact(result("M/RT/DCPC/seed2", acc=0.99, digest=digest)),  # runs/ has it: runs/ wins
    ]
    filled = fill_from_records(status, records, config_digest)
    assert filled[0]["metrics"]["test_accuracy"] == 0.7
    assert filled[1] is None
    assert filled[2] is from_runs
    converted = {**records[1], "config_digest": None}  # converted from a CSV: matched by run id alone
    assert fill_from_records(status, [converted], config_digest)[1] is converted


def test_report_only_rebuilds_the_tables_from_records_without_runs(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        f"output_dir: {tmp_path / 'out'}\nseeds: [0, 1]\ntitle: T\n"
        "models: [{name: minilm, label: M}]\nmethods: [{name: dcpc, label: DCPC}, {name: lora, label: LoRA}]\n"
        "datasets: [{name: RT, data: {task: rotten_tomatoes-demo}}]\n"
    )
    cfg = load_compare_config(str(path))
    records = tmp_path / "records.jsonl"
    for spec in plan(cfg):
        acc = {"DCPC": 0.70, "LoRA": 0.80}[spec.method.label] + 0.02 * spec.seed
        upsert_record(records, {**result(spec.run_id, acc=acc, digest=None), "method": spec.method.label})
    code, out, _ = run_main(["compare", "-c", str(path), "--report-only", "--records", str(records)])
    assert code == 0
    assert "4 of 4 runs finished" in out
    assert "| DCPC | ? | 71.0 |" in out  # median of 0.70 and 0.72, x100
    assert "| LoRA | ? | **81.0** |" in out
    assert not (tmp_path / "out" / "runs").exists()
    rewritten = read_records(tmp_path / "out" / "records.jsonl")
    assert sorted(r["run_id"] for r in rewritten) == sorted(s.run_id for s in plan(cfg))


def test_bootstrap_interval_of_the_median_on_hand_checkable_cases():
    # One value, or all equal: every resample's median is that value.
    assert bootstrap_interval([0.25]) == (0.25, 0.25)
    assert bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    # Two values 0 and 1: a resample's median is 0 (p 1/4), 0.5 (1/2) or 1 (1/4), so the 2.5% and
    # 97.5% quantiles are the two values themselves.
    assert bootstrap_interval([0.0, 1.0]) == (0.0, 1.0)
    # Three values: the median of a resample is 0 with p 7/27 (two or three zeros), so the interval is
    # the whole observed range.
    assert bootstrap_interval([0.0, 1.0, 2.0]) == (0.0, 2.0)
    # Many pairs all of one sign: the interval leaves 0 out.
    low, high = bootstrap_interval([0.01 * k for k in range(1, 21)])
    assert 0.05 < low < 0.105 < high < 0.16
    # Seeded: the same input and seed give the same interval; the level narrows it.
    data = [0.3, -0.1, 0.5, 0.2, 0.0, 0.4, 0.1]
    assert bootstrap_interval(data, seed=3) == bootstrap_interval(data, seed=3)
    wide, narrow = bootstrap_interval(data), bootstrap_interval(data, level=0.5)
    assert wide[0] <= narrow[0] <= narrow[1] <= wide[1]
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_method_differences_pair_by_column_and_seed_and_print_the_interval():
    runs = [
        {"method": m, "column": "SST-2", "seed": s, "status": "ok", "metrics": {"test_accuracy": v}}
        for m, s, v in [("A", 0, 0.70), ("B", 0, 0.72), ("A", 1, 0.80), ("B", 1, 0.81), ("B", 2, 0.9)]
    ] + [None]
    assert paired_differences(runs, "A", "B", "accuracy") == {"SST-2": pytest.approx([0.02, 0.01])}
    # median 0.015 -> +1.5; interval (0.01, 0.02) -> [+1.0, +2.0]; 2 pairs (seed 2 has no A run)
    assert difference_cell([0.02, 0.01], "accuracy") == "+1.5 [+1.0, +2.0] (2)"
    assert difference_cell([-0.05], "soft_ce") == "-0.05 [-0.05, -0.05] (1)"  # nats, not x100
    table = method_differences_table(runs, "A", "B", "accuracy")
    assert "| SST-2 | +1.5 [+1.0, +2.0] (2) |" in table
    assert "No finished" in method_differences_table(runs, "A", "C", "accuracy")


def test_soft_vs_majority_table_prints_the_median_difference_and_interval():
    runs = [
        {"method": f"LoRA / {t}", "column": "MD", "seed": s, "status": "ok", "metrics": {"test_f1": v}}
        for t, s, v in [("majority", 0, 0.60), ("soft", 0, 0.65), ("majority", 1, 0.70), ("soft", 1, 0.70)]
    ]
    table = pairs_table(runs, "majority", "soft")
    assert "| MD | – | 1/2 | – | – | – | – |" in table
    # differences 0.05 and 0.0: median 0.025, interval (0, 0.05)
    assert "| MD | – | +2.5 [+0.0, +5.0] (2) | – | – | – | – |" in table


def tiny_dcpc_grid(vocab_file, tmp_path, title: str, eval_steps: int) -> dict:
    """A compare config: one DCPC row (gates open) on a saved tiny BERT, one seed, a toy train/test CSV pair."""
    from helpers_cli import save_tiny_model, toy_rows, write_csv

    model = save_tiny_model("bert", vocab_file, tmp_path / "tiny-bert")
    write_csv(tmp_path / "train.csv", toy_rows(48, seed=0))
    write_csv(tmp_path / "test.csv", toy_rows(24, seed=1))
    training = {"batch_size": 8, "max_steps": 2, "eval_steps": eval_steps, "logging_steps": 1, "progress": False}
    return {
        "title": title,
        "output_dir": str(tmp_path / "out"),
        "seeds": [0],
        "keep": "metrics",
        "models": [{"name": str(model), "label": "tiny"}],
        "base": {"data": {"max_length": 16}, "training": training},
        "methods": [
            {"name": "dcpc", "label": "DCPC", "method": {"prefix_length": 2, "tau_cos": 0.0, "tau_ambiguity": 0.0}}
        ],
        "datasets": [
            {"name": "toy", "data": {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}}
        ],
    }


def test_a_grid_run_writes_records_and_report_only_rebuilds_its_table_from_them_alone(vocab_file, tmp_path):
    """The fresh-clone path: train with --records, delete runs/, and --report-only --records gives the
    same table; the record holds the loss-term means and gate rates; a changed setting is not filled in."""
    import shutil

    import yaml

    cfg = tiny_dcpc_grid(vocab_file, tmp_path, "records", eval_steps=1)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(cfg))
    records = tmp_path / "committed" / "compare_toy.jsonl"
    rc, out, err = run_main(["compare", "-c", str(path), "--records", str(records)])
    assert rc == 0, err
    (record,) = read_records(records)
    result = json.loads((tmp_path / "out" / "runs" / "tiny" / "toy" / "DCPC" / "seed0" / "result.json").read_text())
    assert record == compact(result) and record["config_digest"] == config_digest(result["config"])
    metrics = record["metrics"]
    assert {"test_accuracy", "validation_accuracy", "loss_mean", "loss_task_mean"} <= set(metrics)
    assert 0.0 <= metrics["gate_cos_rate_mean"] <= 1.0 and "gate_ambiguity_rate_mean" in metrics
    assert {"loss_ambiguity_mean", "loss_align_mean"} <= set(metrics)
    assert [p["step"] for p in record["curve"]] == [1, 2]
    assert record["versions"]["torch"] and record["hardware"]
    assert len(records.read_text()) < 4000  # compact: no config
    table = (tmp_path / "out" / "table.md").read_text()

    shutil.rmtree(tmp_path / "out")  # a fresh clone: no runs/
    rc, out, err = run_main(["compare", "-c", str(path), "--report-only", "--records", str(records)])
    assert rc == 0, err
    rebuilt = (tmp_path / "out" / "table.md").read_text()
    assert rebuilt.split("\n", 4)[4] == table.split("\n", 4)[4]  # all but the title and command lines
    assert "1 of 1 runs finished" in rebuilt
    rc, out, err = run_main(
        [
            "compare",
            "-c",
            str(path),
            "--report-only",
            "--records",
            str(records),
            "--set",
            "seeds=[0]",
            "--set",
            "methods=[{name: dcpc, label: DCPC, method: {prefix_length: 3, tau_cos: 0.0, tau_ambiguity: 0.0}}]",
        ]
    )
    assert rc == 0, err
    assert "0 of 1 runs finished" in out  # another setting: the record does not stand in for it


def test_a_grown_grid_trains_only_the_runs_its_records_lack(vocab_file, tmp_path):
    """A fresh clone (no runs/) whose committed records hold the old rows: adding a row trains that row alone,
    the old records come back unchanged, and a record whose settings differ from its row's is trained again."""
    import yaml

    cfg = tiny_dcpc_grid(vocab_file, tmp_path, "grown", eval_steps=2)
    (row,) = cfg["methods"]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(cfg))
    records = tmp_path / "committed" / "compare_toy.jsonl"
    rc, _, err = run_main(["compare", "-c", str(path), "--records", str(records)])
    assert rc == 0, err
    committed = records.read_text()
    (old,) = read_records(records)

    shutil.rmtree(tmp_path / "out")  # a fresh clone: runs/ is not committed
    cfg["methods"] = [row, {**row, "label": "DCPC p3", "method": {**row["method"], "prefix_length": 3}}]
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = run_main(["compare", "-c", str(path), "--records", str(records), "--dry-run"])
    assert rc == 0, err
    assert out.splitlines() == ["done (records)  tiny/toy/DCPC/seed0", "todo  tiny/toy/DCPC p3/seed0"]
    rc, out, err = run_main(["compare", "-c", str(path), "--records", str(records)])
    assert rc == 0, err
    assert "compare: 1 runs taken from" in out
    assert "2 runs, 1 already finished, 1 to run" in out
    lines = records.read_text().splitlines()
    assert committed.splitlines()[0] in lines  # the old row's record, byte for byte
    assert [r["run_id"] for r in read_records(records)] == ["tiny/toy/DCPC p3/seed0", "tiny/toy/DCPC/seed0"]

    # the old row's settings change: its record no longer stands in for it, so it trains again
    shutil.rmtree(tmp_path / "out")
    cfg["methods"] = [{**row, "method": {**row["method"], "prefix_length": 4}}]
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = run_main(["compare", "-c", str(path), "--records", str(records)])
    assert rc == 0, err
    assert "taken from" not in out and "1 runs, 0 already finished, 1 to run" in out
    kept, new = read_records(records)  # the p3 row is not in this grid: its record stays as it was
    assert kept["run_id"] == "tiny/toy/DCPC p3/seed0" and new["run_id"] == "tiny/toy/DCPC/seed0"
    assert new["config_digest"] != old["config_digest"]


def test_a_narrower_grid_keeps_the_records_of_runs_outside_it(vocab_file, tmp_path):
    """`--set seeds=[1]` (gpu_grid.py runs a seed at a time) must not drop seed 0 from the records it rewrites."""
    import yaml

    cfg = tiny_dcpc_grid(vocab_file, tmp_path, "narrow", eval_steps=2)
    cfg["seeds"] = [0, 1]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(cfg))
    records = tmp_path / "records.jsonl"
    for seed in (0, 1):
        rc, _, err = run_main(["compare", "-c", str(path), "--set", f"seeds=[{seed}]", "--records", str(records)])
        assert rc == 0, err
    ids = ["tiny/toy/DCPC/seed0", "tiny/toy/DCPC/seed1"]
    assert [r["run_id"] for r in read_records(records)] == ids
    before = records.read_text()
    rc, _, err = run_main(
        ["compare", "-c", str(path), "--set", "seeds=[1]", "--records", str(records), "--report-only"]
    )
    assert rc == 0, err
    assert records.read_text() == before


# Grids whose committed records all describe today's settings: each record's digest must equal its run's, so
# `--records` restores them instead of training again (and a changed default, such as eq. 4's weight moving
# from 1 to 0.1, cannot silently make them stand for runs they are not).
CURRENT_GRIDS = [
    "demo_minilm",
    "issue15_demo_rt_shift_seeds",
    "issue15_demo_rt_ambiguity_probe",
    "issue15_smollm2_core",
    "issue15_smollm2",
    "issue15_smollm2_gpu",
    "paper_grid_smollm2",
    "adalora_lr_probe_smollm2",
    "issue15_smollm2_sst2_diagnosis",
    "annotator_models_dcpc_minilm",
    "ptloss_sst2_minilm",
]


@pytest.mark.parametrize("name", CURRENT_GRIDS)
def test_every_committed_record_of_a_current_grid_matches_its_config(name):
    cfg = load_compare_config(str(ROOT / "configs" / "compare" / f"{name}.yaml"))
    records = {r["run_id"]: r for r in read_records(RESULTS / f"compare_{name}.jsonl")}
    specs = {spec.run_id: spec for spec in plan(cfg)}
    assert records and set(records) <= set(specs)
    for run_id, record in records.items():
        assert record["config_digest"] == config_digest(specs[run_id].experiment(cfg, "out")), run_id
