"""benchmarks/gpu_grid.py: a compare grid seed after seed inside a time budget, rehearsed on the CPU."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import load_benchmark
from test_compare import tiny_llama_grid

gpu_grid = load_benchmark("gpu_grid")


@pytest.fixture(scope="module")
def grid_config(tmp_path_factory, vocab_file):
    """test_compare's tiny grid (two seeds, one dataset and its SST-2-P twin) with DCPC on a tiny LLaMA, in bf16."""
    root = tmp_path_factory.mktemp("gpu_grid")
    path = tiny_llama_grid(
        root,
        vocab_file,
        title="tiny GPU grid",
        output_dir=str(root / "runs"),
        keep="metrics",
        methods=[{"name": "dcpc", "label": "DCPC", "method": {"prefix_length": 2}}],
    )
    cfg = yaml.safe_load(path.read_text())
    cfg["base"]["training"]["bf16"] = True
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_it_refuses_in_one_line_unless_rehearsing(grid_config, tmp_path, capsys):
    assert gpu_grid.main(["--config", str(grid_config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gpu_grid: torch sees no GPU; pass --allow-cpu to rehearse on the CPU"]
    assert not (tmp_path / "out").exists()


def test_a_rehearsal_runs_each_seed_in_turn_and_collects_every_run(grid_config, tmp_path):
    out = tmp_path / "out"
    rc = gpu_grid.main(["--config", str(grid_config), "--out", str(out), "--allow-cpu", "--workers", "1"])
    assert rc == 0
    log = json.loads((out / "gpu_grid.json").read_text())
    assert [s.get("seed") for s in log["steps"]] == [0, 1, None] and log["steps"][-1]["report"]
    assert all(s["rc"] == 0 and not s["stopped_at_limit"] for s in log["steps"])
    assert log["finished"] == {"0": 2, "1": 2}
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(r["run_id"] for r in records) == sorted(
        f"tiny/{column}/DCPC/seed{seed}" for column in ("toy", "toy-P") for seed in (0, 1)
    )
    assert (out / "table.md").read_text().startswith("## tiny GPU grid")
    # bf16 autocast on the CPU: DCPC's loss terms still reach the records.
    assert all("gate_cos_rate_mean" in r["metrics"] for r in records)


def test_a_budget_that_cannot_start_a_seed_skips_it_and_says_so(grid_config, tmp_path):
    out = tmp_path / "out"
    rc = gpu_grid.main(
        [
            "--config",
            str(grid_config),
            "--out",
            str(out),
            "--allow-cpu",
            "--budget",
            "40",
            "--reserve",
            "30",
            "--set",
            f"output_dir={tmp_path / 'runs'}",
        ]
    )
    log = json.loads((out / "gpu_grid.json").read_text())
    assert [s["skipped"] for s in log["steps"][:2]] and all(
        "left of the budget" in s["skipped"] for s in log["steps"][:2]
    )
    assert log["finished"] == {"0": 0, "1": 0} and rc in (0, 1)


def test_a_fresh_machine_takes_the_runs_a_records_file_holds_and_trains_only_the_rest(grid_config, tmp_path):
    first, records = tmp_path / "first", tmp_path / "records.jsonl"
    argv = ["--config", str(grid_config), "--allow-cpu", "--workers", "1", "--records", str(records)]
    assert gpu_grid.main([*argv, "--out", str(first), "--seeds", "0", "--set", f"output_dir={tmp_path / 'a'}"]) == 0
    seed0 = {r["run_id"]: r for r in map(json.loads, records.read_text().splitlines())}
    assert sorted(seed0) == ["tiny/toy-P/DCPC/seed0", "tiny/toy/DCPC/seed0"]
    # A new runs folder stands for a new machine: seed 0 comes from the records, seed 1 trains.
    second = tmp_path / "second"
    assert gpu_grid.main([*argv, "--out", str(second), "--seeds", "1", "--set", f"output_dir={tmp_path / 'b'}"]) == 0
    after = {r["run_id"]: r for r in map(json.loads, (second / "records.jsonl").read_text().splitlines())}
    assert sorted(after) == sorted([*seed0, "tiny/toy-P/DCPC/seed1", "tiny/toy/DCPC/seed1"])
    assert all(after[run]["seconds"] == seed0[run]["seconds"] for run in seed0)  # restored, not trained again
    assert records.read_text() == (second / "records.jsonl").read_text()
