"""Shared helpers for the CLI and loading tests: saved tiny model folders, data files, CLI runs."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import build_tiny, toy_sentiment

ERROR_PREFIX = "prefalign: error:"


def save_tiny_model(kind: str, vocab_file: str, dest: Path, seed: int = 0) -> Path:
    """Save a tiny random model and its tokenizer as a local folder (safetensors weights)."""
    loaded = build_tiny(kind, vocab_file, seed=seed)
    dest.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(dest, safe_serialization=True)
    loaded.tokenizer.save_pretrained(dest)
    assert (dest / "model.safetensors").is_file()
    return dest


def toy_rows(n: int = 96, seed: int = 0) -> list[dict]:
    """toy_sentiment examples as {"text", "label"} rows with named labels (negative / positive)."""
    data = toy_sentiment(n, seed=seed)
    return [{"text": ex.text, "label": data.label_names[ex.label]} for ex in data.examples]


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in columns})
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """Run ``prefalign.cli.main(argv)`` in-process; return (exit code, stdout, stderr)."""
    from prefalign.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def console_script() -> str:
    """The installed `prefalign` console script of the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "prefalign"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("prefalign")
    assert found, "the prefalign console script is not installed"
    return found


def run_script(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real console script in a subprocess (offline, one thread, no tokenizer fork warnings)."""
    return _run_command([console_script(), *args], cwd, timeout)


def run_module(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m prefalign`` in a subprocess, like :func:`run_script`."""
    return _run_command([sys.executable, "-m", "prefalign", *args], cwd, timeout)


def _run_command(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore",
    )
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def assert_one_error(rc: int, stderr: str, *needles: str) -> str:
    """A user error: non-zero exit, exactly one 'prefalign: error:' line (the last line), no traceback.

    Progress bars that transformers draws while loading weights may precede the error line; nothing
    may follow it. Every needle must appear (case-insensitively) in the error line.
    """
    assert rc != 0, f"expected a non-zero exit, got {rc}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected exactly one error line, got {lines!r}; stderr:\n{stderr}"
    assert stderr.rstrip("\n").splitlines()[-1] == lines[0], f"the error must be the last line:\n{stderr}"
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_no_adapter(output_dir: Path) -> None:
    """No adapter folder and no half-written (temporary or swapped-out) checkpoint folder."""
    if not output_dir.exists():
        return
    assert not (output_dir / "adapter").exists(), sorted(p.name for p in output_dir.iterdir())
    leftovers = [p.name for p in output_dir.iterdir() if p.name.startswith((".adapter.tmp-", ".adapter.old-"))]
    assert leftovers == [], leftovers
