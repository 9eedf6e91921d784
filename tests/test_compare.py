"""`prefalign compare`: a two-method, two-seed grid on tiny models, resumability, tables and errors."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pytest
import yaml

from helpers_cli import ERROR_PREFIX, run_main, save_tiny_model, toy_rows, write_csv
from prefalign.compare import CompareConfig, markdown_tables, median_table
from prefalign.compare.config import DatasetEntry, MethodEntry, ModelEntry
from prefalign.compare.curves import median_curves, validation_curve


@pytest.fixture(scope="module")
def grid_files(tmp_path_factory, vocab_file):
    root = tmp_path_factory.mktemp("compare")
    model = save_tiny_model("bert", vocab_file, root / "tiny-bert")
    write_csv(root / "train.csv", toy_rows(48, seed=0))
    write_csv(root / "test.csv", toy_rows(24, seed=1))
    return root, model


def write_config(root, model, **changes):
    cfg = {
        "title": "tiny grid",
        "output_dir": str(root / "out"),
        "seeds": [0, 1],
        "keep": "adapter",
        "models": [{"name": str(model), "label": "tiny"}],
        "base": {
            "data": {"max_length": 16},
            "training": {
                "batch_size": 8,
                "max_steps": 2,
                "eval_steps": 1,
                "logging_steps": 1,
                "progress": False,
                "learning_rate": 1e-2,
            },
        },
        "methods": [
            {"name": "ptuning-v2", "label": "PTv2", "method": {"prefix_length": 2}},
            {"name": "lora", "label": "LoRA", "training": {"learning_rate": 1e-3}},
        ],
        "datasets": [
            {
                "name": "toy",
                "data": {"train": str(root / "train.csv"), "test": str(root / "test.csv")},
                "shifted": {"name": "sst2-p"},
                "shifted_name": "toy-P",
            }
        ],
    }
    cfg.update(changes)
    path = root / "compare.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def tiny_llama_grid(root, vocab_file, **changes):
    """``write_config``'s grid (``changes`` applied) on a saved tiny LLaMA, over 32 training and 16 test rows."""
    model = save_tiny_model("llama", vocab_file, root / "tiny-llama")
    write_csv(root / "train.csv", toy_rows(32, seed=0))
    write_csv(root / "test.csv", toy_rows(16, seed=1))
    return write_config(root, model, **changes)


def test_two_methods_two_seeds_grid_writes_every_report_and_resumes(grid_files):
    root, model = grid_files
    path = write_config(root, model)
    rc, out, err = run_main(["compare", "--config", str(path)])
    assert rc == 0, err
    assert "8 to run" in out
    results = json.loads((root / "out" / "results.json").read_text())["runs"]
    assert len(results) == 8 and all(r["status"] == "ok" for r in results)
    assert {(r["method"], r["column"], r["seed"]) for r in results} == {
        (m, c, s) for m in ("PTv2", "LoRA") for c in ("toy", "toy-P") for s in (0, 1)
    }
    # The shifted runs trained on soft labels; the original ones did not.
    for r in results:
        assert (r["config"]["data"]["shift"] is not None) == (r["column"] == "toy-P")
    # Tunable parameters: PTv2 = prefixes (L x 2 x m x kv_dim) + head; LoRA = A and B of q and v + head.
    ptv2 = next(r for r in results if r["method"] == "PTv2")["tunable_params"]
    layers, hidden = 2, 32
    head = hidden * 2 + 2
    assert ptv2 == layers * 2 * 2 * hidden + head
    lora = next(r for r in results if r["method"] == "LoRA")["tunable_params"]
    assert lora == layers * 2 * (4 * hidden + 4 * hidden) + head
    # The table holds medians over the two seeds, and the drop is original minus shifted.
    table = (root / "out" / "table.md").read_text()
    assert "| Method | Tunable params | toy (accuracy) | toy-P (accuracy) | drop |" in table
    for method in ("PTv2", "LoRA"):
        orig = statistics.median(
            r["metrics"]["test_accuracy"] for r in results if r["method"] == method and r["column"] == "toy"
        )
        shifted = statistics.median(
            r["metrics"]["test_accuracy"] for r in results if r["method"] == method and r["column"] == "toy-P"
        )
        row = next(line for line in table.splitlines() if line.startswith(f"| {method} |"))
        cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
        assert cells[2] == f"{100 * orig:.1f}" and cells[3] == f"{100 * shifted:.1f}"
        assert cells[4] == f"{100 * (orig - shifted):.1f}"
    assert (root / "out" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Each run keeps its validation curve (eval every step here, 2 steps); the curves chart plots them.
    for r in results:
        assert [p["step"] for p in r["curve"]] == [1, 2]
        assert all(p["eval_loss"] > 0 and 0 <= p["eval_accuracy"] <= 1 for p in r["curve"])
    assert (root / "out" / "validation_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_lines = (root / "out" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 9 and csv_lines[0].startswith("model,dataset,variant")
    # keep: adapter leaves the adapter and drops the Trainer's checkpoints.
    run_dir = root / "out" / "runs" / "tiny" / "toy" / "PTv2" / "seed0"
    assert (run_dir / "adapter").is_dir() and not (run_dir / "checkpoints").exists()

    # Resume: nothing reruns; a missing result reruns alone; a changed setting reruns its runs.
    rc, out, _ = run_main(["compare", "--config", str(path)])
    assert rc == 0 and "8 already finished, 0 to run" in out
    (run_dir / "result.json").unlink()
    rc, out, _ = run_main(["compare", "--config", str(path), "--dry-run"])
    assert rc == 0 and out.count("todo") == 1 and "todo  tiny/toy/PTv2/seed0" in out
    # --report-only tabulates the seven finished runs and trains nothing.
    rc, out, _ = run_main(["compare", "--config", str(path), "--report-only"])
    assert rc == 0 and "7 of 8 runs finished" in out and not (run_dir / "result.json").exists()
    row = next(line for line in out.splitlines() if line.startswith("| PTv2 |"))
    seed1 = next(
        r["metrics"]["test_accuracy"]
        for r in results
        if r["method"] == "PTv2" and r["column"] == "toy" and r["seed"] == 1
    )
    assert f"{100 * seed1:.1f}" in row.split("|")[3]
    rc, out, _ = run_main(
        [
            "compare",
            "--config",
            str(path),
            "--set",
            "methods=[{name: lora, label: LoRA, training: {learning_rate: 0.002}}]",
            "--dry-run",
        ]
    )
    assert rc == 0 and out.count("todo") == 4


def test_shards_split_a_grid_between_processes_without_overlap(grid_files, tmp_path):
    from prefalign.compare.grid import shard_of

    root, model = grid_files
    path = write_config(
        root,
        model,
        output_dir=str(tmp_path / "out"),
        seeds=[0, 1],
        methods=[{"name": "ptuning-v2", "label": "PTv2", "method": {"prefix_length": 2}}],
    )
    ids = [f"tiny/{column}/PTv2/seed{seed}" for column in ("toy", "toy-P") for seed in (0, 1)]
    first = [i for i in ids if shard_of(i, 2) == 1]
    assert 0 < len(first) < len(ids)  # these four ids land in both shards
    rc, out, err = run_main(["compare", "--config", str(path), "--shard", "1/2"])
    assert rc == 0, err
    assert f"{len(first)} to run (shard 1 of 2)" in out and f"{len(first)} of 4 runs finished" in out
    rc, out, _ = run_main(["compare", "--config", str(path), "--dry-run"])
    assert out.splitlines() == [f"{'done' if i in first else 'todo'}  {i}" for i in ids]
    rc, out, _ = run_main(["compare", "--config", str(path), "--dry-run", "--shard", "2/2"])
    assert out.splitlines() == [f"todo  {i}" for i in ids if i not in first]
    rc, out, _ = run_main(["compare", "--config", str(path), "--shard", "2/2"])
    assert rc == 0 and f"{len(first)} already finished, {4 - len(first)} to run (shard 2 of 2)" in out
    assert "4 of 4 runs finished" in out
    for bad in ("3/2", "0/2", "half"):  # argparse's usage line and one error line, exit status 2
        with pytest.raises(SystemExit) as stop:
            run_main(["compare", "--config", str(path), "--shard", bad])
        assert stop.value.code == 2
    from prefalign.cli.compare import _shard

    with pytest.raises(argparse.ArgumentTypeError, match="between 1 and N"):
        _shard("3/2")


def test_validation_curves_take_eval_points_and_median_over_seeds():
    log = [
        {"loss": 0.9, "step": 1},
        {"eval_loss": 0.7, "eval_accuracy": 0.5, "step": 2},
        {"loss": 0.6, "step": 3},
        {"eval_loss": 0.5, "eval_accuracy": 0.75, "step": 4},
        {"train_loss": 1, "step": 4},
    ]
    assert validation_curve(log) == [
        {"step": 2, "eval_loss": 0.7, "eval_accuracy": 0.5},
        {"step": 4, "eval_loss": 0.5, "eval_accuracy": 0.75},
    ]
    runs = [
        {
            "model": "m",
            "method": "A",
            "column": "c",
            "status": "ok",
            "curve": [{"step": 2, "eval_loss": v}, {"step": 4, "eval_loss": v / 2}],
        }
        for v in (0.2, 0.8, 0.6)
    ]
    runs.append(
        {"model": "m", "method": "A", "column": "c", "status": "failed", "curve": [{"step": 2, "eval_loss": 9}]}
    )
    assert median_curves(runs) == {("m", "A", "c"): [(2, 0.6), (4, 0.3)]}


def test_medians_and_drops_from_hand_made_results():
    cfg = CompareConfig(
        seeds=[0, 1, 2],
        models=[ModelEntry(name="m")],
        methods=[MethodEntry(name="dcpc", label="DCPC"), MethodEntry(name="lora", label="LoRA")],
        datasets=[DatasetEntry(name="SST-2", shifted={"name": "sst2-p"}, shifted_name="SST-2-P")],
    )

    def run(method, column, seed, acc, status="ok"):
        return {
            "model": "m",
            "method": method,
            "column": column,
            "seed": seed,
            "metric": "accuracy",
            "status": status,
            "metrics": {"test_accuracy": acc} if acc is not None else {},
            "tunable_params": 1500,
            "seconds": 1.0,
        }

    results = [
        run("DCPC", "SST-2", 0, 0.80),
        run("DCPC", "SST-2", 1, 0.70),
        run("DCPC", "SST-2", 2, 0.90),
        run("DCPC", "SST-2-P", 0, 0.75),
        run("DCPC", "SST-2-P", 1, 0.60),
        run("DCPC", "SST-2-P", 2, None, "failed"),
        run("LoRA", "SST-2", 0, 0.50),
        run("LoRA", "SST-2", 1, 0.50),
        run("LoRA", "SST-2", 2, 0.60),
    ]
    cells = median_table(results)
    assert cells[("m", "DCPC", "SST-2")]["median"] == pytest.approx(0.80)
    assert cells[("m", "DCPC", "SST-2-P")]["median"] == pytest.approx(0.675)  # two finished seeds
    assert cells[("m", "DCPC", "SST-2-P")]["failed"] == 1
    table = markdown_tables(cfg, results)
    assert "| DCPC | 1.5K | **80.0** | 67.5 (2/3 seeds) | 12.5 |" in table  # one value: nothing to bold
    assert "| LoRA | 1.5K | 50.0 | – | – |" in table


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"methods": []}, "at least one entry under methods"),
        ({"methods": [{"name": "lora"}, {"name": "lora"}]}, "repeated: lora"),
        ({"methods": [{"name": "lora", "lr": 1}]}, "unknown config key 'methods[0].lr'"),
        ({"base": {"method": {"name": "dcpc"}}}, "must not hold a method section"),
        ({"datasets": [{"name": "x", "shifted": {"fraction": 0.5}}]}, "shifted needs a name"),
        ({"keep": "everything"}, "keep"),
    ],
)
def test_bad_compare_configs_fail_in_one_line(grid_files, change, needle):
    root, model = grid_files
    path = write_config(root, model, **change)
    rc, out, err = run_main(["compare", "--config", str(path)])
    assert rc == 2 and err.startswith(ERROR_PREFIX) and needle in err and err.count("\n") == 1


def test_missing_compare_config(tmp_path):
    rc, _, err = run_main(["compare", "--config", str(tmp_path / "nope.yaml")])
    assert rc == 2 and "compare config not found" in err


def test_digest_ignores_defaults_and_output_dir_but_not_settings():
    from prefalign.compare.grid import config_digest
    from prefalign.training.config import ExperimentConfig

    base = {"model": {"name": "m"}, "method": {"name": "lora"}, "training": {"output_dir": "a", "seed": 1}}
    exp = ExperimentConfig.from_dict(base)
    stored = exp.to_dict()
    del stored["training"]["num_beams"]  # a record written before this option existed
    assert config_digest(stored) == config_digest(exp)
    moved = ExperimentConfig.from_dict({**base, "training": {"output_dir": "b", "seed": 1}})
    assert config_digest(moved) == config_digest(exp)
    changed = ExperimentConfig.from_dict({**base, "training": {"output_dir": "a", "seed": 2}})
    assert config_digest(changed) != config_digest(exp)


def test_digest_of_a_changed_default_keeps_old_records_and_reruns_new_ones():
    """eq. 4's weight went from 1.0 to 0.1: a record made at 1.0 (its stored config says 1.0, which the
    old digest left out) matches a config that sets 1.0, a run at the new default is a new setting, and
    methods without eq. 4 hash the same whatever the weight is."""
    from prefalign.compare.grid import config_digest
    from prefalign.methods.dcpc.config import DCPCConfig
    from prefalign.training.config import ExperimentConfig

    assert DCPCConfig().lambda_ambiguity == 0.1

    def exp(method):
        return ExperimentConfig.from_dict({"model": {"name": "m"}, "method": method, "training": {"seed": 1}})

    old_record = exp({"name": "dcpc", "lambda_ambiguity": 1.0}).to_dict()
    old_without_field = exp({"name": "dcpc"}).to_dict()
    del old_without_field["method"]["lambda_ambiguity"]  # hashed as the old default, 1.0
    pinned = exp({"name": "dcpc", "lambda_ambiguity": 1.0})
    assert config_digest(old_record) == config_digest(pinned) == config_digest(old_without_field)
    assert config_digest(exp({"name": "dcpc"})) != config_digest(pinned)
    assert config_digest(exp({"name": "dcpc"})) == config_digest(exp({"name": "dcpc", "lambda_ambiguity": 0.1}))
    for name in ("ptuning-v2", "dcpc-no-ambiguity"):  # eq. 4 off: its weight cannot change the run
        digests = {config_digest(exp({"name": name, "lambda_ambiguity": w})) for w in (0.1, 1.0, 0.3)}
        assert digests == {config_digest(exp({"name": name}))}
    on_again = exp({"name": "dcpc-no-ambiguity", "use_ambiguity": True, "lambda_ambiguity": 0.3})
    assert config_digest(on_again) != config_digest(exp({"name": "dcpc-no-ambiguity", "use_ambiguity": True}))


def test_a_missing_dataset_fails_before_any_training(grid_files):
    root, model = grid_files
    path = write_config(
        root,
        model,
        output_dir=str(root / "out-missing"),
        datasets=[
            {"name": "toy", "data": {"train": str(root / "train.csv"), "test": str(root / "test.csv")}},
            {"name": "gone", "data": {"task": "rte", "path": str(root / "no-rte")}},
        ],
    )
    rc, _, err = run_main(["compare", "--config", str(path)])
    assert rc == 2 and "gone" in err and "no-rte" in err
    assert not (root / "out-missing" / "runs").exists()


def test_a_best_metric_the_data_cannot_give_fails_before_any_training(grid_files):
    root, model = grid_files
    path = write_config(root, model, output_dir=str(root / "out-best"), base={"training": {"best_metric": "soft_ce"}})
    rc, out, err = run_main(["compare", "--config", str(path)])
    assert rc != 0 and "training.best_metric=soft_ce needs a multi-annotator task" in err
    assert err.startswith(ERROR_PREFIX) and len(err.strip().splitlines()) == 1 and "[1/" not in out


def test_dataset_metric_defaults_to_the_task_registry():
    assert DatasetEntry(name="r", data={"task": "record"}).metric == "f1_em"
    assert DatasetEntry(name="a", data={"task": "alpaca"}).metric == "gpt_score"
    assert DatasetEntry(name="s", data={"task": "sst2"}).metric == "accuracy"
    assert DatasetEntry(name="f", data={"train": "x.csv"}).metric == "accuracy"


def test_methods_lists_every_method_with_its_tunable_parameters(grid_files):
    from prefalign.methods.registry import METHODS

    _, model = grid_files
    rc, out, err = run_main(["methods", "--model", str(model)])
    assert rc == 0, err
    rows = {line.split()[0]: line.split()[1] for line in out.strip().splitlines()}
    assert set(rows) == set(METHODS)
    counts = {name: int(value.replace(",", "")) for name, value in rows.items() if value != "-"}
    assert {name for name, value in rows.items() if value == "-"} == {"zero-shot", "cc", "dc", "crispr", "bias-aware"}
    # P-Tuning v2 on the tiny BERT: 2 layers x (key, value) x 16 prefix tokens x 32 wide + head (32 x 2 + 2).
    assert counts["ptuning-v2"] == 2 * 2 * 16 * 32 + 66
    assert counts["full-ft"] > counts["dcpc"] > counts["ptuning-v2"] > counts["prompt-tuning"]


def test_a_searched_ptloss_row_counts_as_finished_with_its_config_as_planned(grid_files, tmp_path):
    """PTLoss's prepare fills the searched eps into its config; the grid trains a copy, so the record keeps
    eps: null as planned, a second compare finds the run finished, and its record maps back to the config."""
    root, model = grid_files
    path = write_config(
        root,
        model,
        output_dir=str(tmp_path / "out"),
        seeds=[0],
        methods=[
            {
                "name": "ptloss",
                "label": "PTLoss",
                "method": {"search_orders": 1, "search_trials": 2, "search_dir": str(tmp_path / "search")},
            }
        ],
        datasets=[{"name": "toy", "data": {"train": str(root / "train.csv"), "test": str(root / "test.csv")}}],
    )
    records = tmp_path / "records.jsonl"
    rc, out, err = run_main(["compare", "--config", str(path), "--records", str(records)])
    assert rc == 0, err
    [run] = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert run["status"] == "ok" and run["config"]["method"]["eps"] is None and "search_best_q" in run["metrics"]
    rc, out, err = run_main(["compare", "--config", str(path), "--records", str(records)])
    assert rc == 0, err
    assert "1 already finished, 0 to run" in out


def test_the_cpu_tables_1_2_grid_has_every_row_of_the_gpu_one_on_every_dataset_we_hold():
    from prefalign.compare import load_compare_config

    gpu = load_compare_config("configs/compare/paper_grid_gpu.yaml")
    cpu = load_compare_config("configs/compare/paper_grid_smollm2.yaml")
    # AdaLoRA's CPU rate was chosen for the 40-step budget (configs/compare/adalora_lr_probe_smollm2.yaml)
    chosen_for_40_steps = {"adalora": 1.0e-2}
    assert [(m.name, m.training["learning_rate"]) for m in cpu.methods] == [
        (m.name, chosen_for_40_steps.get(m.name, m.training["learning_rate"])) for m in gpu.methods
    ]
    held = [d.name for d in gpu.datasets if d.name != "ReCoRD"]  # ReCoRD is not in ../shared/data
    assert sorted(d.name for d in cpu.datasets) == sorted(held)
    assert {d.name: d.shifted["name"] for d in cpu.datasets} == {
        d.name: d.shifted["name"] for d in gpu.datasets if d.name in held
    }
    assert cpu.models[0].name == "smollm2-135m" and cpu.seeds == [0]


def test_a_method_that_cannot_train_a_generation_task_has_no_runs_there_and_its_cells_say_why():
    from prefalign.compare.grid import plan
    from prefalign.methods.bias_aware.model import BiasAwareModel

    cfg = CompareConfig(
        seeds=[0],
        models=[ModelEntry(name="m")],
        methods=[MethodEntry(name="ptuning-v2", label="PTv2"), MethodEntry(name="bias-aware", label="BA")],
        datasets=[
            DatasetEntry(name="SST-2", data={"task": "sst2"}, shifted={"name": "sst2-p"}, shifted_name="SST-2-P"),
            DatasetEntry(name="Alpaca", data={"task": "alpaca"}, shifted={"name": "alpaca-is"}, shifted_name="A-IS"),
        ],
    )
    runs = [(r.dataset.name, r.variant, r.method.label) for r in plan(cfg)]
    assert runs == [
        ("SST-2", "original", "PTv2"),
        ("SST-2", "original", "BA"),
        ("SST-2", "shifted", "PTv2"),
        ("SST-2", "shifted", "BA"),
        ("Alpaca", "original", "PTv2"),
        ("Alpaca", "shifted", "PTv2"),
    ]
    table = markdown_tables(cfg, [])
    assert "| BA | ? | – | – | – | n/a | n/a | n/a |" in table
    assert "| PTv2 | ? | – | – | – | – | – | – |" in table
    assert table.endswith(f"n/a: BA cannot train Alpaca: {BiasAwareModel.generation_refusal}")


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).resolve().parents[1].joinpath("configs", "compare").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_every_shipped_grid_plans_runs_whose_settings_load(path, tmp_path):
    """A row with an option its method lacks fails here, not hours into a grid when its turn comes."""
    from prefalign.compare import load_compare_config
    from prefalign.compare.grid import plan

    cfg = load_compare_config(str(path))
    specs = plan(cfg)
    assert specs
    for spec in specs:
        exp = spec.experiment(cfg, tmp_path / "run")
        assert exp.method.name and exp.model.name
