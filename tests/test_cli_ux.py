"""The CLI around training: config reference (config show/schema, methods NAME), trainer settings, what the
terminal shows, run folders that hold a run, the rough edges' messages, and a start that loads no torch.

Training runs use a tiny random BERT saved as a local model folder and a few steps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from helpers_cli import assert_one_error, run_main, save_tiny_model, toy_rows, write_csv

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture(scope="module")
def model_dir(vocab_file, tmp_path_factory):
    return save_tiny_model("bert", vocab_file, tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv", toy_rows(48, seed=0))


def sets(model_dir, train_file, out_dir, *extra: str) -> list[str]:
    values = [
        f"model.name={model_dir}",
        f"data.train={train_file}",
        "method.name=ptuning-v2",
        f"training.output_dir={out_dir}",
        "training.max_steps=2",
        "training.eval_steps=2",
        "training.logging_steps=1",
        "training.learning_rate=1e-2",
        "training.progress=false",
        "training.device=cpu",
        *extra,
    ]
    return [arg for v in values for arg in ("--set", v)]


@pytest.fixture(scope="module")
def run_dir(model_dir, train_file, tmp_path_factory):
    """One finished two-step run (its adapter is used by the eval/predict tests)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    rc, stdout, err = run_main(["train", *sets(model_dir, train_file, out)])
    assert rc == 0, err
    return {"dir": out, "stdout": stdout}


# -- config show / schema, methods NAME ------------------------------------------------------------------


def test_config_show_prints_every_key_with_its_help_and_reads_back(tmp_path):
    from prefalign.training.config import TrainingConfig, load_config

    config = tmp_path / "c.yaml"
    config.write_text("method: {name: dcpc, tau_cos: 0.5}\ntraining: {batch_size: 8}\n")
    rc, out, err = run_main(["config", "show", "-c", str(config), "--set", "training.lr_scheduler=cosine"])
    assert rc == 0, err
    cfg = load_config(str(config), ["training.lr_scheduler=cosine"])
    assert yaml.safe_load(out) == cfg.to_dict()  # the printed config is the resolved one, as YAML
    lines = out.splitlines()
    assert "  tau_cos: 0.5  # cosine gate of eq. 5" in "\n".join(lines)
    assert "  batch_size: 8  # examples per step (section 4.1: 16 for SST-2 and RTE)" in lines
    assert any(line.startswith("  lr_scheduler: cosine  # ") and "[linear | cosine" in line for line in lines)
    for name in TrainingConfig.field_names():  # every key, defaults included, each with its help
        (line,) = [li for li in lines if li.startswith(f"  {name}: ")][:1]
        assert "  # " in line and len(line.split("  # ", 1)[1]) > 5, line


def test_config_show_reports_a_bad_key_in_one_line(tmp_path):
    rc, out, err = run_main(["config", "show", "--set", "training.lerning_rate=1"])
    assert_one_error(rc, err, "training.lerning_rate", "did you mean 'learning_rate'")


def test_config_schema_has_every_section_key_and_one_method_schema_per_method():
    from prefalign.methods import METHODS
    from prefalign.training.config import DataConfig, ModelConfig, TrainingConfig

    rc, out, err = run_main(["config", "schema"])
    assert rc == 0, err
    schema = json.loads(out)
    props = schema["properties"]
    for section, cls in (("model", ModelConfig), ("data", DataConfig), ("training", TrainingConfig)):
        assert list(props[section]["properties"]) == cls.field_names()
        assert props[section]["additionalProperties"] is False
    training = props["training"]["properties"]
    assert training["learning_rate"] == {
        "type": "number",
        "description": "AdamW learning rate (section 4.1: 1e-4)",
        "default": 1e-4,
    }
    assert training["best_metric"]["enum"][:2] == ["accuracy", "loss"]
    assert training["report_to"] == {**training["report_to"], "type": "array", "items": {"type": "string"}}
    assert props["model"]["properties"]["dtype"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    methods = {m["title"]: m for m in props["method"]["oneOf"]}
    assert list(methods) == list(METHODS)
    assert methods["dcpc-no-pcm"]["properties"]["name"]["const"] == "dcpc-no-pcm"
    assert methods["dcpc-no-pcm"]["properties"]["use_pcm"]["default"] is False  # the variant's own default
    assert methods["dcpc"]["properties"]["use_pcm"]["default"] is True
    assert "section 4.1" in methods["dcpc"]["properties"]["prefix_length"]["description"]


def test_methods_name_lists_options_defaults_and_paper_sections():
    rc, out, err = run_main(["methods", "dcpc-no-pcm"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("dcpc-no-pcm: ")
    i = next(i for i, line in enumerate(lines) if line.split()[:1] == ["prefix_length"])
    assert lines[i].split() == ["prefix_length", "16"]
    assert lines[i + 1].strip() == "m, prefix tokens per layer (section 4.1: 16)"
    assert next(li for li in lines if li.split()[:1] == ["use_pcm"]).split() == [
        "use_pcm",
        "False",
        "(this",
        "variant's)",
    ]
    rc, out, err = run_main(["methods", "dcpc-typo"])
    assert_one_error(rc, err, "unknown method 'dcpc-typo'")


# -- training settings -----------------------------------------------------------------------------------


def _arguments(*overrides: str, generation: bool = False):
    from prefalign.training.config import load_config
    from prefalign.training.run import training_arguments

    return training_arguments(load_config(None, list(overrides)), "accuracy", ["labels"], generation)


def test_training_settings_reach_training_arguments(tmp_path):
    args = _arguments(
        f"training.output_dir={tmp_path}",
        "training.gradient_accumulation_steps=4",
        "training.lr_scheduler=cosine",
        "training.report_to=[tensorboard]",
        "training.trainer_args={max_grad_norm: 0.5, adam_beta2: 0.98, optim: adafactor}",
    )
    assert args.gradient_accumulation_steps == 4
    assert str(args.lr_scheduler_type.value) == "cosine"
    assert args.report_to == ["tensorboard"]
    assert (args.max_grad_norm, args.adam_beta2, args.optim.value) == (0.5, 0.98, "adafactor")
    assert _arguments(f"training.output_dir={tmp_path}").report_to == []  # nothing unless asked


@pytest.mark.parametrize(
    "override, needles",
    [
        ("training.trainer_args={learning_rate: 0.1}", ["trainer_args.learning_rate", "training.learning_rate"]),
        ("training.trainer_args={report_to: wandb}", ["trainer_args.report_to", "training.report_to"]),
        ("training.trainer_args={max_grad_nrom: 1}", ["not a transformers TrainingArguments field", "max_grad_norm"]),
        ("training.lr_scheduler=cosine_annealing", ["training.lr_scheduler", "constant_with_warmup"]),
        ("training.gradient_accumulation_steps=0", ["gradient_accumulation_steps", "outside"]),
    ],
)
def test_training_settings_refused_in_one_line(override, needles):
    rc, out, err = run_main(["config", "show", "--set", override])
    assert_one_error(rc, err, *needles)


def test_fp16_and_bf16_together_are_refused():
    rc, out, err = run_main(["config", "show", "--set", "training.fp16=true", "--set", "training.bf16=true"])
    assert_one_error(rc, err, "bf16 and training.fp16", "choose one")


@pytest.mark.parametrize("method", ["bitfit", "ptuning-v2"])
def test_gradient_checkpointing_gives_the_same_weights(model_dir, train_file, tmp_path, method):
    """Non-reentrant checkpointing recomputes the same activations: BitFit's trained biases (transformers'
    checkpointing) and P-Tuning v2's prefixes (prefalign's, which keeps the prefix cache) match the plain run."""
    from safetensors.torch import load_file

    weights = []
    for name, flag in (("plain", "false"), ("checkpointed", "true")):
        out = tmp_path / name
        extra = (f"method.name={method}", f"training.gradient_checkpointing={flag}")
        rc, _, err = run_main(["train", *sets(model_dir, train_file, out, *extra)])
        assert rc == 0, err
        weights.append(load_file(out / "adapter" / "prefalign_weights.safetensors"))
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 2
    for key in weights[0]:
        np.testing.assert_allclose(weights[0][key].numpy(), weights[1][key].numpy(), rtol=1e-5, atol=1e-7)


def test_prefix_group_rate_is_the_logged_learning_rate(model_dir, train_file, tmp_path):
    """The Trainer logs its first group's rate: that is training.learning_rate's group (the prefixes), and the
    head's own rate is logged under its name (the report's chart plots learning_rate)."""
    out = tmp_path / "lr"
    extra = ["training.head_learning_rate=1e-3", "training.lr_scheduler=constant", "training.warmup_ratio=0"]
    rc, _, err = run_main(["train", *sets(model_dir, train_file, out, *extra)])
    assert rc == 0, err
    logs = [e for e in json.loads((out / "log_history.json").read_text()) if "learning_rate" in e]
    assert logs and all(e["learning_rate"] == pytest.approx(1e-2) for e in logs)
    assert all(e["learning_rate_classifier.head"] == pytest.approx(1e-3) for e in logs)


def test_optimizer_puts_the_default_group_first():
    import torch

    from prefalign.training.config import load_config
    from prefalign.training.run import optimizer

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = torch.nn.Module()
            self.classifier.head = torch.nn.Linear(2, 2)  # registered first: met first
            self.prefix = torch.nn.Parameter(torch.zeros(3))
            self.pcm = torch.nn.Linear(2, 1)

        def trainable_parameters(self):
            return dict(self.named_parameters())

        def learning_rates(self):
            return {"pcm.": 1e-3}

    cfg = load_config(None, ["training.learning_rate=1e-2", "training.head_learning_rate=5e-4"])
    groups = optimizer(Toy(), cfg).param_groups
    assert [(g["group"], g["lr"], len(g["params"])) for g in groups] == [
        ("default", 1e-2, 1),
        ("classifier.head", 5e-4, 2),
        ("pcm", 1e-3, 2),
    ]


# -- what the terminal shows -----------------------------------------------------------------------------


def test_redirected_training_prints_plain_lines_and_every_metric(model_dir, train_file, tmp_path):
    """Output to a file: one line per log with the loss and the validation scores, no \\r or escape codes,
    and a final summary of every metric."""
    out = tmp_path / "plain"
    argv = ["-m", "prefalign", "train", *sets(model_dir, train_file, out, "training.progress=true")]
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for stream in (proc.stdout, proc.stderr):
        assert "\r" not in stream and "\x1b" not in stream
    lines = proc.stdout.splitlines()
    assert [li.split()[:3] for li in lines if li.startswith("step 1/2")][0] == ["step", "1/2", "loss"]
    val = [li for li in lines if li.startswith("step 2/2") and "val_accuracy" in li]
    assert len(val) == 1 and "val_loss" in val[0] and "val_f1_weighted" in val[0]
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    summary = lines[lines.index(next(li for li in lines if li.startswith("trained ptuning-v2"))) :]
    assert f"accuracy {metrics['validation_accuracy']:.4g}" in next(li for li in summary if "validation:" in li)
    assert f"f1_weighted {metrics['validation_f1_weighted']:.4g}" in "\n".join(summary)
    assert f"loss {metrics['train_loss']:.4g}" in next(li for li in summary if li.strip().startswith("train:"))


def test_live_bar_shows_loss_and_latest_validation_scores():
    from prefalign.training.trainer import LiveProgress

    class Bar:
        postfix = None

        def set_postfix(self, values, refresh=True):
            self.postfix = dict(values)

    class State:
        is_world_process_zero = True

    live = LiveProgress()
    live.training_bar = Bar()
    live.on_log(None, State(), None, logs={"loss": 0.6931, "learning_rate": 0.01, "tokens_per_second": 120.0})
    assert live.training_bar.postfix == {"loss": "0.6931", "tokens_per_second": "120"}
    live.on_log(None, State(), None, logs={"eval_loss": 0.5, "eval_accuracy": 0.75, "eval_runtime": 1.2})
    live.on_log(None, State(), None, logs={"loss": 0.61, "loss_task": 0.6})
    assert live.training_bar.postfix == {
        "loss": "0.61",
        "tokens_per_second": "120",
        "val_loss": "0.5",
        "val_accuracy": "0.75",
    }


def test_eval_metrics_by_hand():
    from prefalign.cli.evaluate import task_metrics
    from prefalign.data import Example, TaskDataset

    data = TaskDataset([Example(text=t, label=y) for t, y in (("a", 0), ("b", 1), ("c", 1), ("d", 0))], ["n", "p"])
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.7, 0.3], [0.5, 0.5]])  # argmax 0, 1, 0, 0: 3 of 4 right
    scores = task_metrics(probs, data)
    assert scores["accuracy"] == 0.75 and scores["n"] == 4
    # F1 of class 0: P 2/3, R 1 -> 0.8; class 1: P 1, R 1/2 -> 2/3; two examples each.
    assert scores["f1_weighted"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert scores["cross_entropy"] == pytest.approx(-np.log([0.8, 0.6, 0.3, 0.5]).mean())


def test_eval_prints_the_full_metric_set(run_dir, train_file):
    rc, out, err = run_main(["eval", "--adapter", str(run_dir["dir"] / "adapter"), "--data", str(train_file)])
    assert rc == 0, err
    assert set(json.loads(out.strip().splitlines()[-1])) == {"accuracy", "f1_weighted", "cross_entropy", "n"}


# -- eval / predict options ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_options_eval_and_predict_do_not_use_are_refused(run_dir, train_file, command):
    adapter = str(run_dir["dir"] / "adapter")
    source = ["--data", str(train_file)] if command == "eval" else ["--text", "fine"]
    rc, out, err = run_main([command, "--adapter", adapter, *source, "--set", "training.device=cuda"])
    assert_one_error(rc, err, "--set training.device", "only the data section", "--device")
    rc, out, err = run_main([command, "--adapter", adapter, *source, "--device", "tpu0"])
    assert_one_error(rc, err, "--device 'tpu0'", "auto, cpu, cuda")


def test_predict_on_cpu_in_bfloat16(run_dir):
    adapter = str(run_dir["dir"] / "adapter")
    rc, out, err = run_main(["predict", "--adapter", adapter, "--text", "fine", "--device", "cpu"])
    assert rc == 0, err
    full = json.loads(out)["probabilities"]
    rc, out, err = run_main(
        ["predict", "--adapter", adapter, "--text", "fine", "--device", "cpu", "--dtype", "bfloat16"]
    )
    assert rc == 0, err
    half = json.loads(out)["probabilities"]
    assert full.keys() == half.keys()
    assert all(abs(full[k] - half[k]) < 0.05 for k in full)  # bfloat16 keeps 2-3 digits


# -- run folders and the rough edges ---------------------------------------------------------------------


def test_ctrl_c_mentions_resume(model_dir, train_file, tmp_path, monkeypatch):
    import prefalign.training.run as run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "train", interrupted)
    rc, out, err = run_main(["train", *sets(model_dir, train_file, tmp_path / "r", "training.eval_steps=50")])
    assert rc == 130
    assert err.strip() == (
        f"prefalign: interrupted; run the same command with --resume to continue from the last checkpoint in "
        f"{tmp_path / 'r'}/checkpoints (one is written every 50 steps)"
    )


def test_run_folder_and_checkpoint_as_adapter_get_a_helpful_message(run_dir, tmp_path):
    folder = run_dir["dir"]
    rc, out, err = run_main(["predict", "--adapter", str(folder), "--text", "x"])
    assert_one_error(rc, err, f"{folder} is a run folder", f"--adapter {folder / 'adapter'}")
    checkpoint = tmp_path / "r" / "checkpoints" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    rc, out, err = run_main(["eval", "--adapter", str(checkpoint), "--data", "x.csv"])
    assert_one_error(rc, err, "is a training checkpoint, not an adapter", f"--adapter {tmp_path / 'r' / 'adapter'}")
    rc, out, err = run_main(["predict", "--adapter", str(tmp_path / "nope"), "--text", "x"])
    assert_one_error(rc, err, "does not exist")


def test_output_folder_that_cannot_be_created_fails_before_the_model_loads(
    model_dir, train_file, tmp_path, monkeypatch
):
    import prefalign.training.run as run

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(run, "load_backbone", no_model)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc, out, err = run_main(["train", *sets(model_dir, train_file, blocker / "run")])
    assert_one_error(rc, err, f"cannot write to training.output_dir {blocker / 'run'}", "choose a folder")


def test_overwrite_clears_stale_artefacts_but_keeps_other_files(model_dir, train_file, tmp_path):
    out = tmp_path / "run"
    (out / "probes" / "drift").mkdir(parents=True)
    (out / "report.html").write_text("old")
    (out / "notes.txt").write_text("mine")
    rc, _, err = run_main(["train", *sets(model_dir, train_file, out)])
    assert_one_error(rc, err, "already holds a run (report.html, probes)", "--overwrite")
    rc, _, err = run_main(["train", *sets(model_dir, train_file, out), "--overwrite"])
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter",
        "checkpoints",
        "config.yaml",
        "log_history.json",
        "metrics.json",
        "notes.txt",
    ]


def test_eval_label_outside_the_adapters_classes_does_not_suggest_label_names(run_dir, tmp_path):
    bad = write_csv(tmp_path / "bad.csv", toy_rows(4) + [{"text": "so-so", "label": "neutral"}])
    rc, out, err = run_main(["eval", "--adapter", str(run_dir["dir"] / "adapter"), "--data", str(bad)])
    line = assert_one_error(rc, err, "'neutral'", "trained on exactly these classes: negative, positive")
    assert "pass label_names" not in line


# -- fast start ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["tasks"], ["shift", "--list"], ["train", "--help"]])
def test_commands_that_need_no_model_load_no_torch(argv):
    """`import prefalign` and these commands do not import torch, transformers or PEFT (timed in
    benchmarks/startup.py)."""
    code = (
        "import sys\nfrom prefalign.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.splitlines()[-1] == "HEAVY []", proc.stdout[-500:] + proc.stderr[-2000:]


def test_lazy_public_api_gives_the_same_objects():
    import prefalign
    from prefalign.training.config import load_config
    from prefalign.training.run import train

    assert prefalign.load_config is load_config and prefalign.train is train
    assert set(prefalign.__all__) <= set(dir(prefalign))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        prefalign.nope  # noqa: B018
    assert dataclasses.is_dataclass(prefalign.DCPCConfig)
