"""benchmarks/dorm_hh.py's --split every-source (issue 21): D_val, selection and test pairs from every real
source, the grid's extra keys, and the per-part accuracy of its records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hh():
    module = load_benchmark("dorm_hh")
    if not (module.HH.is_file() and module.DEMO.is_file()):
        pytest.skip("the HH-RLHF and DPO demo files of ../shared/data are not here")
    return module


def _pairs(entry: dict) -> list[str]:
    path = Path(entry["path"])
    rows = json.loads(path.read_text()) if path.suffix == ".json" else [json.loads(x) for x in path.open()]
    return [json.dumps(r, sort_keys=True) for r in rows]


def test_every_source_holds_out_demo_pairs_at_hh_fractions(hh, tmp_path):
    only = hh.split(tmp_path / "hh", "hh")
    every = hh.split(tmp_path / "every", "every-source")
    assert (hh.DEMO_TEST, hh.DEMO_VAL, hh.DEMO_SELECT) == (65, 20, 20)  # 300 x 500/2300, 150/2300, 150/2300
    for part in ("test", "validation", "selection"):
        assert [e["name"] for e in only[part]] == [part]
        assert [e["name"] for e in every[part]] == [part, f"{part}-demo"]
        assert _pairs(every[part][0]) == _pairs(only[part][0])  # HH's cut is the same under both splits
        assert every[part][1]["prompt_column"] == "conversations"
    demo = {p: _pairs(every[p][1]) for p in ("test", "validation", "selection")}
    demo["train"] = _pairs(every["sources"][-1])
    assert {p: len(v) for p, v in demo.items()} == {"test": 65, "validation": 20, "selection": 20, "train": 195}
    every_pair = [r for v in demo.values() for r in v]
    original = [json.dumps(r, sort_keys=True) for r in json.loads(hh.DEMO.read_text())]
    assert sorted(every_pair) == sorted(original)  # disjoint, and together the whole file
    assert only["sources"][-1]["path"] == str(hh.DEMO)  # the hh split trains on all 300
    assert [s["name"] for s in every["sources"]] == [s["name"] for s in only["sources"]]


def test_a_bad_split_is_one_line_and_a_non_zero_exit(hh, tmp_path):
    with pytest.raises(SystemExit, match="--split must be one of hh, every-source, not 'demo'"):
        hh.split(tmp_path, "demo")
    with pytest.raises(SystemExit, match="--split must be one of hh, every-source, not 'demo'"):
        hh.main(["--split", "demo", "--report"])


def test_grid_entries_name_their_steps_and_normalisation(hh):
    d = {"alpha": 10.0, "beta": 0.01, "eta_w": 1.0, "w_gradient": "per-example", "w_normalise": "mean", "steps": 1000}
    assert hh._run_args(d, 250) == (1000, {k: v for k, v in d.items() if k != "steps"})
    assert hh._run_args({"alpha": 1.0}, 250) == (250, {"alpha": 1.0})
    assert hh._tag("dorm", {**d, **hh.READING}) == "dorm_a10_b0.01_eta1_per-example_qabsolute_u0_wmean_steps1000"
    assert hh._tag("dorm", hh.THESIS | {"w_gradient": "per-example"}) == "dorm_a10_b1_eta0.001_per-example"
    # the hh split's grid is the first version's (its committed records are named by it); every-source adds
    assert all("steps" not in g for v in ("dorm", "bilevel-no-prior") for g in hh.search_grid(v))
    assert hh.ES_EXTRA["dorm"][0] in hh.search_grid("dorm", "every-source")


def test_part_accuracy_reads_each_test_entry_in_order(hh):
    record = {"scored_counts": {"test": 3, "test-demo": 2}, "margins": [0.5, -0.1, 0.2, -0.3, -0.2]}
    assert hh._part_accuracy(record, "test") == pytest.approx(200 / 3)
    assert hh._part_accuracy(record, "test-demo") == 0.0


def test_flip_summary_on_weights_that_mark_the_flips(hh):
    from types import SimpleNamespace

    import torch

    names = [f"hh-flip{int(100 * f)}" for f in hh.FLIPS] + ["dpo-demo"]
    cfg = SimpleNamespace(sources=[SimpleNamespace(name=n) for n in names])
    w = torch.ones(4 * hh.PER_SOURCE + 10)
    for k, rows in enumerate(hh.flipped_rows().values()):
        for r in rows:
            w[k * hh.PER_SOURCE + r - 1] = 0.5  # every flipped HH pair at half weight
    w[-10:] = 0.1  # the demo source lower still: it is outside the HH pairs the AUCs read
    got = hh.flip_summary(SimpleNamespace(weights=w, prior=torch.ones(len(w))), cfg)
    assert (got["auc_low_w"], got["auc_low_w0"], got["auc_low_dw"]) == (1.0, 0.5, 1.0)
    assert got["hh-flip40"] == {"flipped": 0.5, "kept": 1.0}
    none = hh.flip_summary(SimpleNamespace(weights=w, prior=torch.zeros(0)), cfg)  # no prior: w0 = 1
    assert none["auc_low_w0"] == 0.5 and none["auc_low_dw"] == 1.0
