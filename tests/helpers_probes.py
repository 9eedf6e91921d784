"""Shared helpers for the probe and report tests: tiny decoder runs trained through the CLI."""

from __future__ import annotations

from pathlib import Path

from helpers_cli import run_main, save_tiny_model, toy_rows, write_csv

TEMPLATE = "review: {text} sentiment:"
VERBALIZERS = "[' negative', ' positive']"


def tiny_llama_dir(vocab_file: str, root: Path) -> Path:
    return save_tiny_model("llama", vocab_file, root / "tiny-llama")


def train_tiny(model_dir: Path, train_csv: Path, out_dir: Path, method: str, steps: int = 4, *extra: str) -> Path:
    """`prefalign train` for a few steps on the toy reviews; returns the run directory."""
    sets = [
        f"model.name={model_dir}",
        f"data.train={train_csv}",
        f"method.name={method}",
        f"training.output_dir={out_dir}",
        f"training.max_steps={steps}",
        f"training.eval_steps={steps}",
        "training.learning_rate=1e-2",
        "training.logging_steps=1",
        "training.progress=false",
        "training.device=cpu",
        "training.batch_size=8",
        f"data.template={TEMPLATE}",
        f"data.verbalizers={VERBALIZERS}",
        *extra,
    ]
    rc, out, err = run_main(["train"] + [a for s in sets for a in ("--set", s)])
    assert rc == 0, err
    return out_dir


def toy_csv(path: Path, n: int = 48, seed: int = 0) -> Path:
    return write_csv(path, toy_rows(n, seed=seed))
