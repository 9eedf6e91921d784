"""Crashes and restarts: `prefalign train --resume` repeats the uninterrupted run bit for bit (CPU),
and a kill during a checkpoint save leaves the previous checkpoints loadable.

Everything trains a tiny random BERT saved as a local model folder, as a user's model would be.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from helpers_cli import assert_one_error, run_main, save_tiny_model, toy_rows, write_csv
from prefalign.training import resume

STEPS, EVERY = 24, 6


@pytest.fixture(scope="module")
def model_dir(vocab_file, tmp_path_factory):
    return save_tiny_model("bert", vocab_file, tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    """Three classes, so L-Tuning's generator has a wrong label to choose (with two it has one)."""
    rows = toy_rows(96, seed=0)
    for i, row in enumerate(rows[::3]):
        row.update(text=f"the plot was {['fine', 'quite fine', 'really fine'][i % 3]}", label="neutral")
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv", rows)


def train_argv(model_dir, train_file, output_dir, method, *extra):
    # logging_steps does not divide eval_steps, so a checkpoint falls between two logs: the resumed
    # run must carry the half-summed loss and loss terms over, not just the weights.
    sets = [
        f"model.name={model_dir}",
        f"data.train={train_file}",
        f"method.name={method}",
        f"training.output_dir={output_dir}",
        f"training.max_steps={STEPS}",
        f"training.eval_steps={EVERY}",
        "training.logging_steps=4",
        "training.learning_rate=1e-2",
        "training.batch_size=8",
        "training.progress=false",
        "training.device=cpu",
        "training.save_total_limit=2",
        *extra,
    ]
    return ["train"] + [arg for s in sets for arg in ("--set", s)]


def outputs(run: Path) -> tuple[dict, dict, list]:
    """(adapter tensors, metrics without wall time, log history without timings) of a finished run."""
    weights = load_file(str(run / "adapter" / "prefalign_weights.safetensors"))
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    timing = ("seconds", "runtime", "per_second")
    metrics = {k: v for k, v in metrics.items() if not any(t in k for t in timing)}
    logs = [
        {k: v for k, v in entry.items() if not any(t in k for t in timing)}
        for entry in json.loads((run / "log_history.json").read_text())
    ]
    return weights, metrics, logs


def assert_same_run(a: Path, b: Path) -> None:
    """Bitwise equal adapters (the best checkpoint) and last-step weights, equal metrics and logs."""
    wa, ma, la = outputs(a)
    wb, mb, lb = outputs(b)
    last = f"checkpoints/checkpoint-{STEPS}/prefalign_weights.safetensors"
    for x, y in ((wa, wb), (load_file(str(a / last)), load_file(str(b / last)))):
        assert x.keys() == y.keys()
        for k in x:  # torch.equal, not allclose
            assert x[k].dtype == y[k].dtype and x[k].equal(y[k]), k
    assert ma == mb
    assert la == lb


@pytest.fixture(scope="module")
def uninterrupted(model_dir, train_file, tmp_path_factory):
    """One uninterrupted run per method, to compare the resumed ones with."""
    runs = {}
    for method in ("dcpc", "ltuning-prefix"):
        out = tmp_path_factory.mktemp("full") / method
        rc, _, err = run_main(train_argv(model_dir, train_file, out, method))
        assert rc == 0, err
        runs[method] = out
    return runs


def test_sigkill_then_resume_gives_the_uninterrupted_run(model_dir, train_file, uninterrupted, tmp_path):
    """The issue's test: SIGKILL a `prefalign train` subprocess after its first checkpoint, resume it."""
    out = tmp_path / "run"
    argv = train_argv(model_dir, train_file, out, "dcpc")
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore",
    )
    # torch.set_num_threads(1), as the in-process runs have it (conftest), so both runs add in one order.
    code = "import sys, torch; torch.set_num_threads(1); from prefalign.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    first = out / "checkpoints" / f"checkpoint-{EVERY}"
    deadline = time.time() + 60
    while not first.is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill (rc {proc.returncode}):\n{err}"
    assert first.is_dir() and not (out / "adapter").exists()
    assert resume.last_complete_checkpoint(out / "checkpoints", "prefalign_weights.safetensors") is not None
    rc, stdout, err = run_main([*train_argv(model_dir, train_file, out, "dcpc"), "--resume"])
    assert rc == 0, err
    assert f"{STEPS} steps" in stdout
    assert_same_run(out, uninterrupted["dcpc"])


@pytest.mark.parametrize("method", ["dcpc", "ltuning-prefix"])
def test_kill_during_a_save_keeps_the_previous_checkpoint(
    model_dir, train_file, uninterrupted, tmp_path, monkeypatch, method
):
    """A crash in the middle of writing checkpoint 2*EVERY leaves no checkpoint-12 folder, only a staging
    folder; checkpoint-6 stays whole, and resuming from it repeats the uninterrupted run (L-Tuning's
    negative-label generator included)."""
    from prefalign.training.trainer import PrefalignTrainer

    real = PrefalignTrainer._save_rng_state

    def crash_on_second_save(self, output_dir):
        if self.state.global_step == 2 * EVERY:
            raise SystemExit("killed mid-save")
        real(self, output_dir)

    monkeypatch.setattr(PrefalignTrainer, "_save_rng_state", crash_on_second_save)
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="killed mid-save"):
        run_main(train_argv(model_dir, train_file, out, method))
    ckpts = out / "checkpoints"
    names = sorted(p.name for p in ckpts.iterdir())
    assert f"checkpoint-{EVERY}" in names and f"checkpoint-{2 * EVERY}" not in names, names
    assert f"{resume.STAGING_PREFIX}checkpoint-{2 * EVERY}" in names, names  # the half-written one
    monkeypatch.setattr(PrefalignTrainer, "_save_rng_state", real)
    rc, _, err = run_main([*train_argv(model_dir, train_file, out, method), "--resume"])
    assert rc == 0, err
    assert not any(p.name.startswith(resume.STAGING_PREFIX) for p in ckpts.iterdir())
    assert_same_run(out, uninterrupted[method])


def test_resume_refuses_a_changed_config(model_dir, train_file, uninterrupted, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted["ltuning-prefix"] / "checkpoints", out / "checkpoints")
    rc, _, err = run_main(
        [*train_argv(model_dir, train_file, out, "ltuning-prefix", "training.learning_rate=0.5"), "--resume"]
    )
    assert_one_error(rc, err, "training.learning_rate", "--resume")
    assert not (out / "adapter").exists()


def test_resume_without_a_run_or_a_checkpoint(model_dir, train_file, tmp_path):
    out = tmp_path / "nothing"
    rc, _, err = run_main([*train_argv(model_dir, train_file, out, "dcpc"), "--resume"])
    assert_one_error(rc, err, "nothing to resume", "drop --resume")
    (out / "checkpoints").mkdir(parents=True)
    from prefalign.training.config import dump_config, load_config

    cfg = load_config(None, train_argv(model_dir, train_file, out, "dcpc")[2::2])
    (out / "checkpoints" / resume.RUN_CONFIG).write_text(dump_config(cfg))
    (out / "checkpoints" / "checkpoint-6").mkdir()  # incomplete: no trainer state, no weights
    rc, _, err = run_main([*train_argv(model_dir, train_file, out, "dcpc"), "--resume"])
    assert_one_error(rc, err, "no complete checkpoint")


def test_same_config_and_seed_give_the_same_numbers(model_dir, train_file, uninterrupted, tmp_path):
    out = tmp_path / "again"
    rc, _, err = run_main(train_argv(model_dir, train_file, out, "dcpc"))
    assert rc == 0, err
    assert_same_run(out, uninterrupted["dcpc"])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the hostile file
def test_resume_never_runs_code_from_a_checkpoint(model_dir, train_file, uninterrupted, tmp_path):
    """The Trainer's optimizer file swapped for a pickle that would create a file when unpickled: the
    resume stops with one error line, and the file is never created."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "code-ran"), "w"))

    out = tmp_path / "run"
    shutil.copytree(uninterrupted["dcpc"] / "checkpoints", out / "checkpoints")
    (out / "checkpoints" / f"checkpoint-{STEPS}" / "optimizer.pt").write_bytes(pickle.dumps(Evil()))
    rc, _, err = run_main([*train_argv(model_dir, train_file, out, "dcpc"), "--resume"])
    assert_one_error(rc, err, "cannot be read safely", f"checkpoint-{STEPS}")
    assert not (tmp_path / "code-ran").exists() and not (out / "adapter").exists()


def test_bad_data_leaves_no_output_at_all(model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "pos"}\n{"text": 3, "label": [1]}\n')
    out = tmp_path / "run"
    rc, _, err = run_main(train_argv(model_dir, bad, out, "dcpc"))
    assert_one_error(rc, err, "row 2")
    assert not out.exists()
