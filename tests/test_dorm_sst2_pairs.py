"""benchmarks/dorm_hh.py --data sst2-pairs (issue 21): SST-2 sentences paired positive (chosen) over negative,
clean D_val / selection / test pairs, four training sources flipped at exactly 0, 10, 20 and 40%, no sentence
in two pairs, and one-line errors for options that do not go together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hh():
    module = load_benchmark("dorm_hh")
    if not all((module.SST2 / f"stsa.binary.{n}").is_file() for n in ("train", "dev", "test")):
        pytest.skip("the SST-2 sentence files of ../shared/data are not here")
    return module


@pytest.fixture(scope="module")
def cut(hh, tmp_path_factory):
    work = tmp_path_factory.mktemp("sst2")
    files = hh.sst2_split(work / "data", work / "pairs.json")
    rows = {
        e["name"]: [json.loads(x) for x in Path(e["path"]).open()]
        for e in files["sources"] + [files[k][0] for k in ("test", "validation", "selection")]
    }
    labels = {name: {i: y for i, y, _ in hh.read_sst2(name)} for name in ("train", "dev", "test")}
    texts = {name: {i: t for i, _, t in hh.read_sst2(name)} for name in ("train", "dev", "test")}
    return files, rows, labels, texts, json.loads((work / "pairs.json").read_text())


def test_sizes_and_which_file_each_part_comes_from(hh, cut):
    files, rows, _, _, manifest = cut
    assert [s["name"] for s in files["sources"]] == ["sst2-flip0", "sst2-flip10", "sst2-flip20", "sst2-flip40"]
    assert {k: len(v) for k, v in rows.items()} == {
        "sst2-flip0": 375,
        "sst2-flip10": 375,
        "sst2-flip20": 375,
        "sst2-flip40": 375,
        "test": 500,
        "validation": 150,
        "selection": 150,
    }
    assert manifest["files"] == {
        "test": "test",
        "validation": "dev",
        "selection": "dev",
        **{f"sst2-flip{k}": "train" for k in (0, 10, 20, 40)},
    }
    assert all(e["prompt_column"] == "prompt" and e["format"] == "pairs" for e in files["sources"])
    assert {r["prompt"] for v in rows.values() for r in v} == {hh.SST2_PROMPT}


def test_chosen_is_the_sentence_humans_labelled_positive_unless_flipped(cut):
    _, rows, labels, texts, manifest = cut
    for name, part in rows.items():
        file = manifest["files"][name]
        for r, (pos, neg) in zip(part, manifest["pairs"][name], strict=True):
            assert (labels[file][pos], labels[file][neg]) == (1, 0)
            assert (r["positive_line"], r["negative_line"]) == (pos, neg)
            flipped = r.get("flipped", False)
            assert name.startswith("sst2-") or not flipped  # D_val, selection and test are clean
            chosen, rejected = (neg, pos) if flipped else (pos, neg)
            assert (r["chosen"], r["rejected"]) == (texts[file][chosen], texts[file][rejected])


def test_flip_counts_are_exact_and_the_recorded_rows(hh, cut):
    _, rows, _, _, manifest = cut
    # round(0.1 * 375) = 38 (round half to even), 0.2 * 375 = 75, 0.4 * 375 = 150
    counts = {n: sum(r["flipped"] for r in rows[n]) for n in manifest["flipped_rows"]}
    assert counts == {"sst2-flip0": 0, "sst2-flip10": 38, "sst2-flip20": 75, "sst2-flip40": 150}
    for name, flipped in hh.flipped_rows("sst2-").items():
        assert {i for i, r in enumerate(rows[name], 1) if r["flipped"]} == flipped
        assert manifest["flipped_rows"][name] == sorted(flipped)
    # the same seeded rows as HH's sources, so flip_summary reads both benchmarks alike
    assert list(hh.flipped_rows("sst2-").values()) == list(hh.flipped_rows().values())


def test_no_sentence_is_in_two_pairs_or_two_splits(cut):
    _, rows, _, _, manifest = cut
    seen = [t for part in rows.values() for r in part for t in (r["chosen"], r["rejected"])]
    assert len(seen) == len(set(seen)) == 2 * 2300  # no text twice, across every part and split
    lines = [(manifest["files"][n], i) for n, part in manifest["pairs"].items() for pair in part for i in pair]
    assert len(lines) == len(set(lines)) == 2 * 2300  # no (file, line) twice: validation and selection share dev


def test_pairing_is_the_same_every_time(hh, tmp_path, cut):
    again = hh.sst2_split(tmp_path, tmp_path / "pairs.json")
    assert json.loads((tmp_path / "pairs.json").read_text()) == cut[4]
    assert Path(again["test"][0]["path"]).read_text() == Path(cut[0]["test"][0]["path"]).read_text()


def test_a_sentence_on_two_lines_is_left_out(hh, monkeypatch):
    files = {
        "train": [(1, 1, "good ."), (2, 0, "bad ."), (3, 1, "same ."), (4, 0, "worse .")],
        "dev": [(1, 1, "fine ."), (2, 0, "same .")],
        "test": [(1, 1, "great ."), (2, 0, "awful .")],
    }
    monkeypatch.setattr(hh, "read_sst2", lambda name: files[name])
    pairs = hh.sst2_pairs()
    assert [(p["chosen"], p["rejected"]) for p in pairs["test"]] == [("great .", "awful .")]
    assert pairs["dev"] == []  # 'same .' is in train too; 'fine .' has no negative left to pair with
    assert len(pairs["train"]) == 1 and pairs["train"][0]["chosen"] == "good ."


def test_a_bad_line_is_one_line_and_a_non_zero_exit(hh, tmp_path, monkeypatch):
    (tmp_path / "stsa.binary.dev").write_text("1 fine .\n2 not a label\n")
    monkeypatch.setattr(hh, "SST2", tmp_path)
    with pytest.raises(SystemExit, match=r"stsa.binary.dev line 2: expected '<0\|1> <sentence>'"):
        hh.read_sst2("dev")
    with pytest.raises(SystemExit, match="stsa.binary.test not found"):
        hh.read_sst2("test")


def test_options_that_do_not_go_together_fail_in_one_line(hh):
    with pytest.raises(SystemExit, match="--data must be one of hh, sst2-pairs, not 'imdb'"):
        hh.main(["--data", "imdb", "--report"])
    with pytest.raises(SystemExit, match="--split is for --data hh only"):
        hh.main(["--data", "sst2-pairs", "--split", "every-source", "--report"])
    with pytest.raises(SystemExit, match="--split is for --data hh only"):
        hh.main(["--data", "sst2-pairs", "--split", "hh", "--stage", "budget"])
    with pytest.raises(SystemExit, match="--split must be one of hh, every-source, not 'sst2-pairs'"):
        hh.main(["--split", "sst2-pairs", "--report"])
    with pytest.raises(SystemExit, match="--stage prior-readings needs --data sst2-pairs"):
        hh.main(["--split", "every-source", "--stage", "prior-readings"])
    assert hh.PRIOR_READINGS[0] == {"q_form": "range", "u_coefficient": 1.0}  # eq. 3.5-3.6 as written first


def test_flip_summary_and_rank_read_sst2_sources(hh):
    from types import SimpleNamespace

    import torch

    names = [f"sst2-flip{int(100 * f)}" for f in hh.FLIPS]
    cfg = SimpleNamespace(sources=[SimpleNamespace(name=n) for n in names])
    w = torch.ones(4 * hh.PER_SOURCE)
    for k, rows in enumerate(hh.flipped_rows("sst2-").values()):
        for r in rows:
            w[k * hh.PER_SOURCE + r - 1] = 0.25
    got = hh.flip_summary(SimpleNamespace(weights=w, prior=torch.zeros(0)), cfg)
    assert (got["auc_low_w"], got["auc_low_w0"], got["auc_low_dw"]) == (1.0, 0.5, 1.0)
    assert got["sst2-flip40"] == {"flipped": 0.25, "kept": 1.0}
    # mean weights 1, 1 - 0.75 * 38/375, ... : sst2-flip40 lowest of the four
    weights = {"sst2-flip0": 1.0, "sst2-flip10": 0.92, "sst2-flip20": 0.85, "sst2-flip40": 0.7}
    assert hh._flip40_rank(weights) == 1
    assert hh._flip40_rank({**weights, "sst2-flip0": 0.6}) == 2
    assert hh._flip40_rank({"hh-flip0": 1.0, "hh-flip40": 0.9, "dpo-demo": 0.1}) == 1  # the demo is not ranked
