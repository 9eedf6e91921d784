"""The `prefalign` command: user errors (one line, no traceback, no half-written adapter) and the happy path.

Everything runs on a tiny random BERT saved as a real local model folder (safetensors), so
``model.name=<folder>`` goes through the same loading code as a downloaded model.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors import safe_open

from helpers_cli import (
    ERROR_PREFIX,
    assert_no_adapter,
    assert_one_error,
    run_main,
    run_module,
    run_script,
    save_tiny_model,
    toy_rows,
    write_csv,
    write_jsonl,
)

METHODS = ("ptuning-v2", "dcpc")
LABELS = ["negative", "positive"]
# prefalign's files and the model card; P-Tuning v2's static prefix also in PEFT's prefix-tuning format
# (DCPC's PCM makes its prefix depend on the input, which PEFT cannot represent).
ADAPTER_FILES = {"prefalign_config.json", "prefalign_weights.safetensors", "README.md"}
PEFT_FILES = {"adapter_config.json", "adapter_model.safetensors"}
FILES_OF = {"ptuning-v2": ADAPTER_FILES | PEFT_FILES, "dcpc": ADAPTER_FILES}


@pytest.fixture(scope="module")
def model_dir(vocab_file, tmp_path_factory):
    return save_tiny_model("bert", vocab_file, tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """train.csv (96 labelled rows), test.jsonl (32 labelled rows), texts.csv (8 rows, text column only)."""
    d = tmp_path_factory.mktemp("data")
    test_rows = toy_rows(32, seed=1)
    return {
        "train": write_csv(d / "train.csv", toy_rows(96, seed=0)),
        "test": write_jsonl(d / "test.jsonl", test_rows),
        "test_rows": test_rows,
        "texts": write_csv(d / "texts.csv", toy_rows(8, seed=2), columns=["text"]),
        "dir": d,
    }


def train_argv(model_dir, train_file, output_dir, method="ptuning-v2", *extra):
    sets = [
        f"model.name={model_dir}",
        f"data.train={train_file}",
        f"method.name={method}",
        f"training.output_dir={output_dir}",
        "training.max_steps=20",
        "training.eval_steps=10",
        "training.learning_rate=1e-2",
        "training.logging_steps=10",
        "training.progress=false",
        "training.device=cpu",
        *extra,
    ]
    return ["train"] + [arg for s in sets for arg in ("--set", s)]


@pytest.fixture(scope="module")
def trained(model_dir, data, tmp_path_factory):
    """`prefalign train` once per method: {method: {rc, out, err, output_dir, adapter}}."""
    runs = {}
    for method in METHODS:
        out_dir = tmp_path_factory.mktemp("runs") / method
        rc, out, err = run_main(train_argv(model_dir, data["train"], out_dir, method))
        runs[method] = {"rc": rc, "out": out, "err": err, "output_dir": out_dir, "adapter": out_dir / "adapter"}
    return runs


def dir_size(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- the happy path --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_train_saves_only_the_trained_parts(trained, model_dir, data, method):
    run = trained[method]
    assert run["rc"] == 0, run["err"]
    assert ERROR_PREFIX not in run["err"]
    assert f"trained {method} on {model_dir}" in run["out"]
    assert "20 steps" in run["out"]
    assert f"adapter: {run['adapter']}" in run["out"]
    summary = {line.split(":")[0].strip(): line for line in run["out"].splitlines()}
    assert " accuracy " in summary["validation"] and " f1_weighted " in summary["validation"]

    adapter = run["adapter"]
    assert {p.name for p in adapter.iterdir()} == FILES_OF[method]
    card = (adapter / "README.md").read_text()
    assert f"- loadable id or path: `{model_dir}`" in card and f"- train: `{data['train']}`" in card
    assert "| train_steps | 20 |" in card and "| validation_accuracy |" in card
    # Only prefixes (and the PCM and head): far smaller than the backbone it rides on.
    assert dir_size(adapter) < 0.5 * dir_size(model_dir)
    assert (adapter / "prefalign_weights.safetensors").stat().st_size < 0.5 * (
        model_dir / "model.safetensors"
    ).stat().st_size
    with safe_open(str(adapter / "prefalign_weights.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    assert keys and not [k for k in keys if k.startswith("classifier.model.")]
    meta = json.loads((adapter / "prefalign_config.json").read_text())
    assert meta["method"] == method
    assert meta["base_model"] == str(model_dir)
    assert meta["label_names"] == LABELS

    out_dir = run["output_dir"]
    assert (out_dir / "config.yaml").is_file()
    metrics = json.loads((out_dir / "metrics.json").read_text())["metrics"]
    assert metrics["train_steps"] == 20
    assert 0.0 <= metrics["validation_accuracy"] <= 1.0
    assert not [p.name for p in out_dir.iterdir() if p.name.startswith(".adapter.")]


@pytest.mark.parametrize("method", METHODS)
def test_eval_prints_json_accuracy(trained, data, method):
    rc, out, err = run_main(["eval", "--adapter", str(trained[method]["adapter"]), "--data", str(data["test"])])
    assert rc == 0, err
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["n"] == len(data["test_rows"])
    assert 0.0 <= metrics["accuracy"] <= 1.0


def check_prediction(line: str, text: str) -> dict:
    row = json.loads(line)
    assert row["text"] == text
    assert set(row["probabilities"]) == set(LABELS)
    probs = row["probabilities"]
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-5)
    assert row["label"] == max(probs, key=probs.get)
    return row


@pytest.mark.parametrize("method", METHODS)
def test_predict_texts_prints_one_json_line_each(trained, method):
    texts = ["the movie was really superb", "a dull and boring plot"]
    rc, out, err = run_main(
        ["predict", "--adapter", str(trained[method]["adapter"]), "--text", texts[0], "--text", texts[1]]
    )
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, texts):
        check_prediction(line, text)


def test_predict_file_to_output_agrees_with_eval(trained, data, tmp_path):
    adapter = str(trained["ptuning-v2"]["adapter"])
    target = tmp_path / "out.jsonl"
    rc, out, err = run_main(["predict", "--adapter", adapter, "--data", str(data["test"]), "-o", str(target)])
    assert rc == 0, err
    rows = data["test_rows"]
    assert f"wrote {len(rows)} predictions to {target}" in out
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no out.jsonl.tmp-* left behind
    lines = target.read_text().splitlines()
    assert len(lines) == len(rows)
    preds = [check_prediction(line, row["text"]) for line, row in zip(lines, rows)]
    accuracy = sum(p["label"] == row["label"] for p, row in zip(preds, rows)) / len(rows)

    rc, out, err = run_main(["eval", "--adapter", adapter, "--data", str(data["test"])])
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["accuracy"] == pytest.approx(accuracy)


def test_predict_file_without_label_column(trained, data, tmp_path):
    target = tmp_path / "texts.jsonl"
    rc, out, err = run_main(
        ["predict", "--adapter", str(trained["dcpc"]["adapter"]), "--data", str(data["texts"]), "-o", str(target)]
    )
    assert rc == 0, err
    texts = [r["text"] for r in toy_rows(8, seed=2)]
    lines = target.read_text().splitlines()
    assert len(lines) == len(texts)
    for line, text in zip(lines, texts):
        check_prediction(line, text)


@pytest.mark.parametrize(
    "texts",
    [["the film was good"], ["a lovely film", "a lovely film"], ["10", "the film was good"]],
    ids=["one-row", "repeated", "number-like"],
)
def test_predict_unlabelled_file_any_texts(trained, tmp_path, texts):
    source = write_csv(tmp_path / "texts.csv", [{"text": t} for t in texts])
    rc, out, err = run_main(["predict", "--adapter", str(trained["ptuning-v2"]["adapter"]), "--data", str(source)])
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == len(texts)
    for line, text in zip(lines, texts):
        check_prediction(line, text)


def test_predict_output_in_missing_folder(trained, tmp_path):
    target = tmp_path / "missing" / "out.jsonl"
    rc, out, err = run_main(
        ["predict", "--adapter", str(trained["ptuning-v2"]["adapter"]), "--text", "a good film", "-o", str(target)]
    )
    assert rc == 0, err  # the folder is created
    assert len(target.read_text().splitlines()) == 1


def test_adapter_trained_on_relative_model_path_loads_from_another_cwd(model_dir, data, tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(model_dir, work / "tiny-bert")
    monkeypatch.chdir(work)
    rc, out, err = run_main(
        train_argv("./tiny-bert", data["train"], "run", "ptuning-v2", "training.max_steps=2", "training.eval_steps=2")
    )
    assert rc == 0, err
    from conftest import toy_sentiment
    from prefalign import load_for_inference, predict_proba
    from prefalign.inference import evaluate
    from prefalign.models.loading import load_backbone

    adapter = str(work / "run" / "adapter")
    test = toy_sentiment(32, seed=1)  # the rows of data["test"]
    model, _, collator, _ = load_for_inference(adapter)
    here = predict_proba(model, collator, test)  # loaded where "./tiny-bert" is the copy
    monkeypatch.chdir(elsewhere)
    rc, out, err = run_main(["eval", "--adapter", adapter, "--data", str(data["test"])])
    assert rc == 0, err
    model, _, collator, _ = load_for_inference(adapter)
    there = predict_proba(model, collator, test)
    torch.testing.assert_close(torch.from_numpy(there), torch.from_numpy(here), rtol=0, atol=0)
    # The same numbers as the adapter on the copied backbone named by its absolute path, and the CLI's
    # accuracy is the accuracy of these probabilities.
    explicit, _, collator2, _ = load_for_inference(adapter, backbone=load_backbone(str(work / "tiny-bert")))
    torch.testing.assert_close(torch.from_numpy(predict_proba(explicit, collator2, test)), torch.from_numpy(here))
    assert json.loads(out.strip().splitlines()[-1])["accuracy"] == pytest.approx(
        evaluate(model, collator, test)["accuracy"], abs=1e-9
    )


def test_retraining_into_the_same_output_dir_needs_overwrite_and_swaps_the_adapter(model_dir, data, tmp_path):
    out_dir = tmp_path / "run"
    argv = train_argv(model_dir, data["train"], out_dir, "ptuning-v2", "training.max_steps=2", "training.eval_steps=2")
    assert run_main(argv)[0] == 0
    first = (out_dir / "adapter" / "prefalign_weights.safetensors").read_bytes()
    rc, out, err = run_main(argv + ["--set", "training.seed=7"])  # refused without --overwrite
    assert_one_error(rc, err, "already holds a run", "--overwrite", "--resume")
    assert (out_dir / "adapter" / "prefalign_weights.safetensors").read_bytes() == first
    (out_dir / "report.html").write_text("<html>an old run's report</html>")
    rc, out, err = run_main(argv + ["--set", "training.seed=7", "--overwrite"])  # another seed: other weights
    assert rc == 0, err
    assert not (out_dir / "report.html").exists()  # the old run's report is not left beside the new run
    assert {p.name for p in (out_dir / "adapter").iterdir()} == FILES_OF["ptuning-v2"]
    assert (out_dir / "adapter" / "prefalign_weights.safetensors").read_bytes() != first
    assert not [p.name for p in out_dir.iterdir() if p.name.startswith(".adapter.")]


def test_console_script_predicts(trained, tmp_path):
    proc = run_script(
        ["predict", "--adapter", str(trained["ptuning-v2"]["adapter"]), "--text", "a great film"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    check_prediction(lines[0], "a great film")


def test_version_and_help():
    from prefalign import __version__

    rc, out, err = run_main(["--version"])
    assert (rc, out.strip()) == (0, __version__)
    rc, out, err = run_main([])
    assert rc == 2 and "train" in out and "predict" in out


# -- user errors: one line on stderr, non-zero exit, no traceback, no adapter ----------------------


def data_error_case(name, data, tmp_path):
    """(extra --set overrides, train file, words the error must name) for one broken data set-up."""
    if name == "missing-file":
        return [], data["dir"] / "nope.csv", ["no such data file", "nope.csv"]
    if name == "unknown-column":
        return ["data.text_column=nope"], data["train"], ["'nope'", "text_column"]
    if name == "label-outside-label-names":
        rows = toy_rows(20) + [{"text": "the plot was quite fine", "label": "neutral"}]
        return (
            ["data.label_names=[negative,positive]"],
            write_csv(tmp_path / "three.csv", rows),
            ["'neutral'", "row 21"],
        )
    if name == "empty-dataset":
        return [], write_csv(tmp_path / "empty.csv", [], columns=["text", "label"]), ["no data rows", "empty.csv"]
    raise ValueError(name)


@pytest.mark.parametrize("case", ["missing-file", "unknown-column", "label-outside-label-names", "empty-dataset"])
def test_train_data_errors(model_dir, data, tmp_path, case):
    extra, train_file, needles = data_error_case(case, data, tmp_path)
    out_dir = tmp_path / "out"
    rc, out, err = run_main(train_argv(model_dir, train_file, out_dir, "ptuning-v2", *extra))
    assert_one_error(rc, err, *needles)
    assert_no_adapter(out_dir)


def test_train_model_path_that_does_not_exist(data, tmp_path):
    missing = tmp_path / "no-such-model"
    out_dir = tmp_path / "out"
    rc, out, err = run_main(train_argv(missing, data["train"], out_dir))
    assert_one_error(rc, err, "model folder not found", str(missing))
    assert_no_adapter(out_dir)


@pytest.mark.parametrize(
    "override, needles",
    [
        ("training.lerning_rate=1", ["unknown config key", "training.lerning_rate", "learning_rate"]),
        ("training.batch_size=abc", ["training.batch_size", "integer", "abc"]),
        ("training.learning_rate=[1, 2]", ["training.learning_rate", "number"]),
        ("training.device=gpu", ["training.device", "gpu", "cpu"]),
        ("method.name=dcpcc", ["unknown method", "dcpcc"]),
    ],
    ids=["unknown-key", "int-type", "float-type", "choice", "method"],
)
def test_train_config_errors(model_dir, data, tmp_path, override, needles):
    out_dir = tmp_path / "out"
    rc, out, err = run_main(train_argv(model_dir, data["train"], out_dir, "ptuning-v2", override))
    assert_one_error(rc, err, *needles)
    assert err.count("\n") == 1  # nothing was loaded: the error is all there is
    assert_no_adapter(out_dir)


def test_config_yaml_that_is_not_a_mapping(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output_dir is relative: nothing may appear here
    config = tmp_path / "list.yaml"
    config.write_text("- model\n- data\n")
    rc, out, err = run_main(["train", "--config", str(config)])
    assert_one_error(rc, err, str(config), "mapping")
    assert err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["list.yaml"]


def test_set_without_equals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_main(["train", "--set", "training.learning_rate"])
    assert_one_error(rc, err, "--set", "key=value", "training.learning_rate")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_nan_loss_stops_training(model_dir, data, tmp_path, monkeypatch):
    import prefalign.methods.dcpc.model as dcpc_model

    def nan_loss(logits, target):
        return logits.float().sum() * float("nan")  # still requires grad, like a real diverged loss

    monkeypatch.setattr(dcpc_model, "soft_cross_entropy", nan_loss)
    out_dir = tmp_path / "out"
    rc, out, err = run_main(train_argv(model_dir, data["train"], out_dir, "dcpc", "training.max_steps=3"))
    line = assert_one_error(rc, err, "loss", "nan", "learning_rate")
    assert "lower" in line
    assert rc == 3  # TrainingError's exit code
    assert_no_adapter(out_dir)
    assert not list(out_dir.glob("checkpoints/checkpoint-*"))  # it stopped at the first step


def test_eval_refuses_a_pickle_only_folder(data, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    torch.save({"prefix.weight": torch.zeros(2, 2)}, folder / "pytorch_model.bin")
    rc, out, err = run_main(["eval", "--adapter", str(folder), "--data", str(data["test"])])
    assert_one_error(rc, err, "pickle", "pytorch_model.bin", "prefalign_weights.safetensors")
    assert [p.name for p in folder.iterdir()] == ["pytorch_model.bin"]


def test_eval_on_a_file_without_labels(trained, data):
    rc, out, err = run_main(["eval", "--adapter", str(trained["ptuning-v2"]["adapter"]), "--data", str(data["texts"])])
    assert_one_error(rc, err, "'label'", "texts.csv")
    assert out == ""


def test_console_script_user_error(tmp_path):
    proc = run_script(
        ["train", "--set", "training.lerning_rate=1", "--set", f"training.output_dir={tmp_path / 'out'}"], cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert_one_error(proc.returncode, proc.stderr, "training.lerning_rate", "did you mean 'learning_rate'")
    assert not (tmp_path / "out").exists()


def test_python_dash_m_prefalign_is_the_command(tmp_path):
    from prefalign import __version__

    proc = run_module(["--version"], cwd=tmp_path)
    assert (proc.returncode, proc.stdout.strip()) == (0, __version__), proc.stderr
    proc = run_module(["shift"], cwd=tmp_path)
    assert proc.stdout == ""
    assert_one_error(proc.returncode, proc.stderr, "needs a shift name")


# -- the demo's table (the demo itself trains MiniLM four times: too slow here) --------------------


def test_render_table():
    from prefalign.demo import render_table

    rows = [
        {"method": "ptuning-v2", "train_labels": "clean", "test_accuracy": 0.81249, "gate_cos_rate": None},
        {"method": "dcpc", "train_labels": "clean", "test_accuracy": 0.8, "gate_cos_rate": 0.0204},
        {"method": "ptuning-v2", "train_labels": "sst2-p", "test_accuracy": 0.7, "gate_cos_rate": None},
        {"method": "dcpc", "train_labels": "sst2-p", "test_accuracy": 0.7456, "gate_cos_rate": 0.01},
    ]
    assert render_table(rows) == (
        "| method | trained on clean labels | trained on sst2-p labels | pairs through the cosine gate |\n"
        "|---|---|---|---|\n"
        "| ptuning-v2 | 0.812 | 0.700 | n/a (no pairwise terms) |\n"
        "| dcpc | 0.800 | 0.746 | 2.0% / 1.0% |"
    )
    # Row order follows first appearance, whatever order the runs finished in.
    table = render_table(list(reversed(rows))).splitlines()
    assert table[0] == "| method | trained on sst2-p labels | trained on clean labels | pairs through the cosine gate |"
    assert table[2] == "| dcpc | 0.746 | 0.800 | 1.0% / 2.0% |"
