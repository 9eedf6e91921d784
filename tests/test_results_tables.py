"""The tables in docs/ between results markers are what the committed records give (`make results`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    module = load_benchmark("results_tables")
    return module


def test_docs_tables_match_the_committed_records(tables, capsys):
    code = tables.main(["--check"])
    assert code == 0, capsys.readouterr().out


def test_every_block_is_used_and_every_marker_is_known(tables):
    used = set()
    for page in tables.PAGES:
        used |= {m.group(2) for m in tables.MARKER.finditer((ROOT / page).read_text())}
    assert used == set(tables.BLOCKS)


def test_an_edited_number_is_caught_and_rewritten(tables):
    blocks = {"t": lambda: "| a | 76.9 |"}
    page = "x\n<!-- results:t -->\n| a | 77.0 |\n<!-- /results:t -->\ny\n"
    assert tables.render(page, blocks) == "x\n<!-- results:t -->\n| a | 76.9 |\n<!-- /results:t -->\ny\n"
    assert tables.render(tables.render(page, blocks), blocks) == tables.render(page, blocks)
    with pytest.raises(SystemExit, match="unknown results marker 'u'"):
        tables.render("<!-- results:u -->\n<!-- /results:u -->", blocks)


def test_the_ltuning_per_seed_line_is_the_csv(tables):
    """Prompt, seed 0, SST-2: 0.7694954128440367 in the CSV is 76.9, not 77.0."""
    line = tables.per_seed("ltuning_minilm", "SST-2")
    assert "Prompt 76.9 / 75.3 / 77.9" in line
    assert "Prompt 76.9 / 75.3 / 77.9" in (ROOT / "docs" / "results.md").read_text()


def test_drops_and_their_difference_are_seed_matched(tables, monkeypatch):
    from types import SimpleNamespace

    def run(method, column, seed, acc):
        return {"method": method, "column": column, "seed": seed, "status": "ok", "metrics": {"test_accuracy": acc}}

    cfg = SimpleNamespace(seeds=[0, 1], methods=[SimpleNamespace(label="A"), SimpleNamespace(label="B")])
    results = [
        run("A", "C", 0, 0.80),
        run("A", "S", 0, 0.70),
        run("A", "C", 1, 0.78),
        run("A", "S", 1, 0.74),
        run("B", "C", 0, 0.79),
        run("B", "S", 0, 0.75),
        run("B", "C", 1, 0.77),
        run("B", "S", 1, 0.76),
    ]
    monkeypatch.setattr(tables, "grid", lambda name: (cfg, results))
    text = tables.drop_differences("g", [("A", "B")], "C", "S")
    # A drops 10 and 4 points, B 4 and 1: B's drop minus A's is -6 and -3 (median -4.5).
    assert "| A: drop | +10.0 / +4.0 | +7.0 [+4.0, +10.0] (2) |" in text
    assert "| B: drop | +4.0 / +1.0 | +2.5 [+1.0, +4.0] (2) |" in text
    assert "| B's drop minus A's | -6.0 / -3.0 | -4.5 [-6.0, -3.0] (2) |" in text


def test_probe_choice_reads_validation_and_names_ties(tables, monkeypatch):
    def run(label, val, test):
        return {"method": label, "status": "ok", "metrics": {"validation_accuracy": val, "test_accuracy": test}}

    results = [run("x1", 0.6, 0.7), run("x2", 0.6, 0.8), run("y1", 0.5, 0.9), run("y2", 0.7, 0.6)]
    monkeypatch.setattr(tables, "grid", lambda name: (None, results))
    lines = tables.probe_choice("g", {"X": ["x1", "x2"], "Y": ["y1", "y2"]}).splitlines()
    assert lines[2:] == [
        "| X | x1 | 60.0 | 70.0 | yes (tie) |",
        "| X | x2 | 60.0 | 80.0 | yes (tie) |",
        "| Y | y1 | 50.0 | 90.0 |  |",
        "| Y | y2 | 70.0 | 60.0 | yes |",
    ]


def test_probe_over_columns_averages_seeds_and_never_chooses_a_reference_row(tables, monkeypatch):
    def run(label, column, seed, val, test):
        metrics = {"validation_accuracy": val, "test_accuracy": test}
        return {"method": label, "column": column, "seed": seed, "status": "ok", "metrics": metrics}

    probe = [
        run("a", "C", 0, 0.6, 0.5),
        run("a", "C", 1, 0.8, 0.7),
        run("a", "S", 0, 0.4, 0.4),
        run("a", "S", 1, 0.6, 0.4),
        run("b", "C", 0, 0.7, 0.9),
        run("b", "C", 1, 0.7, 0.9),
        run("b", "S", 0, 0.5, 0.9),
        run("b", "S", 1, 0.4, 0.9),
    ]
    # the reference row is from another grid: its seed 2 and column T are outside the probe and left out
    other = [run("ref", c, s, 0.9, 0.1) for c in ("C", "S", "T") for s in (0, 1, 2)]
    other.append(run("a", "C", 0, 0.6, 0.5))  # a run both grids hold (the same row, column and seed) counts once
    monkeypatch.setattr(tables, "grid", lambda name: (None, probe if name == "probe" else other))
    lines = tables.probe_choice_over_columns(
        "probe", {"G": ["a", "b", "ref"]}, also=("other",), reference=("ref",)
    ).splitlines()
    assert lines[2:5] == [
        "| G | a | 70.0 | 60.0 | 50.0 | 40.0 | 60.0 | yes |",  # mean validation (0.7 + 0.5) / 2
        "| G | b | 70.0 | 90.0 | 45.0 | 90.0 | 57.5 |  |",  # test never decides
        "| G | ref | 90.0 | 10.0 | 90.0 | 10.0 | 90.0 | (reference, not a candidate) |",
    ]
    assert lines[-1] == "Each cell is the mean over seeds 0, 1."


def test_the_demo_splits_record_is_what_the_script_computes_today():
    """benchmarks/results/demo_splits.json (the majority class and shared movies the demo section quotes)
    is recomputed from the data, and seed 0's test majority agrees with the one benchmarks/peft_prefix_minilm.py
    counted on the same split by its own code."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from demo_splits import describe

    committed = json.loads((ROOT / "benchmarks" / "results" / "demo_splits.json").read_text())
    assert [describe(s["seed"]) for s in committed["seeds"]] == committed["seeds"]
    peft = [json.loads(line) for line in (ROOT / "benchmarks" / "results" / "peft_prefix_minilm.jsonl").open()]
    rt = [r for r in peft if r["data"] == "rt"]  # the demo's seed-0 split
    assert rt and committed["seeds"][0]["test_majority_share"] == rt[0]["majority_rate"]


def test_profile_records_hold_what_the_table_needs(tables):
    for name in ("profile_step_minilm", "profile_step_tiny"):
        text = tables.profile(name)
        assert "| ptuning-v2 |" in text and "| dcpc |" in text and "2 CPU cores" in text


def test_annotator_accuracy_is_the_median_and_seed_range_with_text_blind_rows(tables, monkeypatch, tmp_path):
    from types import SimpleNamespace

    def run(method, column, seed, acc, params=1500):
        return {
            "method": method,
            "column": column,
            "seed": seed,
            "metric": "accuracy",
            "status": "ok",
            "tunable_params": params,
            "metrics": {"test_accuracy": acc},
        }

    cfg = SimpleNamespace(
        seeds=[0, 1, 2],
        methods=[SimpleNamespace(label="A")],
        datasets=[SimpleNamespace(name="D1", shifted_name=None), SimpleNamespace(name="D2", shifted_name=None)],
    )
    results = [run("A", "D1", 2, 0.70), run("A", "D1", 0, 0.64), run("A", "D1", 1, 0.66), run("A", "D2", 0, 0.9)]
    results.append(None)  # an unfinished run counts in the total, not in any cell
    monkeypatch.setattr(tables, "grid", lambda name: (cfg, results))
    (tmp_path / "b.json").write_text(
        '{"command": "c", "rows": [{"dataset": "D1", "predictor": "majority class", "test_items": 4,'
        ' "metrics": {"accuracy": 0.5, "f1": 0.25, "soft_ce": 1.234, "jsd": 0.1, "ece": 0.2}}]}'
    )
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    lines = tables.annotator_accuracy("g", "b").splitlines()
    assert lines[0].startswith("4 of 5 runs in `benchmarks/results/compare_g.jsonl`")
    # D1: 64, 66, 70 -> median 66.0, range 64.0-70.0; D2 has one seed.
    assert lines[4:] == [
        "| A | 1.5K | 66.0 (64.0-70.0) | 90.0 (90.0-90.0) |",
        "| *text-blind: majority class* | – | 50.0 | – |",
    ]
    table = tables.annotator_baselines("b").splitlines()
    assert table[-1] == "| D1 (4 test items) | majority class | 50.0 | 25.0 | 1.23 | 10.0 | 20.0 | – |"


def test_the_annotation_baseline_records_hold_both_predictors_on_every_dataset_of_their_grid():
    """The text-blind rows are the same constant predictor's: equal accuracy and F1 for both predictors (both
    predict the training majority class), and the label prior never has the worse soft cross-entropy."""
    import json

    for model in ("minilm", "smollm2"):
        record = json.loads((ROOT / "benchmarks" / "results" / f"annotation_baselines_{model}.json").read_text())
        assert record["config"] == f"configs/compare/annotators_{model}.yaml"
        rows = {(r["dataset"], r["predictor"]): r["metrics"] for r in record["rows"]}
        assert {d for d, _ in rows} == {"MD-Agreement", "ConvAbuse", "POPQUORN"}
        for dataset in ("MD-Agreement", "ConvAbuse", "POPQUORN"):
            onehot, prior = rows[(dataset, "majority class")], rows[(dataset, "label prior")]
            assert onehot["accuracy"] == prior["accuracy"] and onehot["f1"] == prior["f1"]
            assert prior["soft_ce"] < onehot["soft_ce"]


def test_the_peft_comparison_line_is_the_ratio_of_the_two_records(tables):
    import json

    records = {
        r["method"]: r
        for r in map(json.loads, (ROOT / "benchmarks" / "results" / "profile_step_tiny_b64.jsonl").open())
    }
    assert set(records) == {"ptuning-v2", "peft-prefix", "floor"}
    ours, peft = records["ptuning-v2"], records["peft-prefix"]
    ratio = ours["step_cpu_ms_median_of_10"] / peft["step_cpu_ms_median_of_10"]
    text = tables.profile("profile_step_tiny_b64")
    assert f"Our P-Tuning v2's step CPU time is {ratio:.3f}x PEFT's prefix tuning's" in text
    assert f"it runs {ours['top_level_aten_ops'] - peft['top_level_aten_ops']:+d} top-level ops" in text
    assert "| dcpc |" not in text and "DCPC's forward-pass peak" not in text  # no DCPC row, no DCPC line


def test_sweep_choice_picks_on_the_named_column_only(tables, monkeypatch):
    from types import SimpleNamespace

    def run(label, column, val, test, **terms):
        metrics = {"validation_accuracy": val, "test_accuracy": test, **{k + "_mean": v for k, v in terms.items()}}
        return {"method": label, "column": column, "status": "ok", "metrics": metrics}

    cfg = SimpleNamespace(methods=[SimpleNamespace(label="a"), SimpleNamespace(label="b")])
    results = [
        run("a", "C", 0.9, 0.8, gate=0.5),  # the clean column's best validation score: not the one that chooses
        run("b", "C", 0.5, 0.6, gate=0.25),
        run("a", "S", 0.6, 0.7, gate=0.125),
        run("b", "S", 0.7, 0.65),
        None,
    ]
    monkeypatch.setattr(tables, "grid", lambda name: (cfg, results))
    lines = tables.sweep_choice("g", "S", ["gate"]).splitlines()
    assert lines[2:] == [
        "| S | a | 60.0 | 70.0 | 0.1250 |  |",
        "| S | b | 70.0 | 65.0 | – | yes |",
        "| C | a | 90.0 | 80.0 | 0.5000 |  |",
        "| C | b | 50.0 | 60.0 | 0.2500 |  |",
    ]


def test_gate_quantiles_are_the_record_and_the_paper_tau_passes_no_kl_pair(tables):
    import json

    record = json.loads((ROOT / "benchmarks" / "results" / "dcpc_gate_quantiles_rt_a_seed0.json").read_text())
    kl = record["whole_run"]["kl"]
    assert kl["max"] <= 0.3 and kl["pass_share_of_cos_gated"]["0.3"] == 0.0  # why the gate stayed shut
    qs = list(kl["quantiles"].values())
    assert qs == sorted(qs)
    text = tables.gate_quantiles()
    assert f"| whole run | cos x kl | {kl['cos_gated_pairs']} of {record['whole_run']['pairs']} |" in text


def test_sweep_choice_keeps_one_seed_when_asked(tables, monkeypatch):
    from types import SimpleNamespace

    def run(label, seed, val):
        metrics = {"validation_accuracy": val, "test_accuracy": 0.5}
        return {"method": label, "column": "S", "seed": seed, "status": "ok", "metrics": metrics}

    cfg = SimpleNamespace(methods=[SimpleNamespace(label="a"), SimpleNamespace(label="b")])
    results = [run("a", 0, 0.6), run("b", 0, 0.5), run("a", 1, 0.4), run("b", 1, 0.7)]
    monkeypatch.setattr(tables, "grid", lambda name: (cfg, results))
    assert tables.sweep_choice("g", "S", [], seed=1).splitlines()[2:] == [
        "| S | a | 40.0 | 50.0 |  |  |",
        "| S | b | 70.0 | 50.0 |  | yes |",
    ]
