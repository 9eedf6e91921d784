"""Crash-safe checkpoints and exact resumption: the parts transformers' Trainer leaves out.

The Trainer restores the model, optimizer, schedule, global RNGs and data position from
``checkpoint-N``; it writes that folder in place, though, and knows nothing of random generators a
method owns (L-Tuning's negative sampler) or of prefalign's running loss-term sums. This module
adds a staging folder that is renamed into place only when complete, saves and restores that extra
state, and finds the last complete checkpoint of a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..methods.checkpoint import WEIGHTS_FILE
from ..utils.atomic_files import replace_folder, write_text_atomically
from .config import dump_config

STATE_FILE = "prefalign_state{rank}.json"  # running sums behind the logs (per process)
RNG_FILE = "prefalign_rng{rank}.safetensors"  # generators owned by the method (per process)
STAGING_PREFIX = ".partial-"  # a checkpoint being written; never matched by transformers' checkpoint-* glob
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def rank_suffix(world_size: int, rank: int) -> str:
    """'' for one process, '_<rank>' under DDP (the Trainer names its rng_state files the same way)."""
    return "" if world_size <= 1 else f"_{rank}"


def method_generators(model: torch.nn.Module) -> dict[str, torch.Generator]:
    """Every torch.Generator held by a module of ``model``, keyed '<module path>.<attribute>'."""
    out = {}
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Generator):
                out[f"{name}.{attr}" if name else attr] = value
    return out


def save_generators(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Save the states of the method's own generators (safetensors; nothing if it has none)."""
    states = {k: g.get_state() for k, g in method_generators(model).items()}
    if states:
        save_file(states, str(path))


def load_generators(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Restore generator states saved by ``save_generators``; a mismatch is a CheckpointError."""
    generators = method_generators(model)
    if not os.path.exists(path):
        if generators:
            raise CheckpointError(
                f"{path} is missing: this method's random generators cannot be restored, so "
                "resuming would not repeat the uninterrupted run; start the run again without "
                "--resume"
            )
        return
    try:
        states = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None
    if set(states) != set(generators):
        raise CheckpointError(
            f"{path} holds generators {sorted(states)}, this model has {sorted(generators)}; "
            "was the checkpoint made by another method?"
        )
    for name, state in states.items():
        generators[name].set_state(state)


@contextlib.contextmanager
def readable_state(checkpoint: str | os.PathLike):
    """Turn a failure to read the Trainer's optimizer, schedule or RNG files into a CheckpointError.

    transformers reads them with ``torch.load(weights_only=True)``, whose unpickler builds tensors and
    plain containers only: a file that asks for anything else (code) is refused, not run.
    """
    try:
        yield
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{checkpoint}: the optimizer, schedule or RNG state cannot be read safely ({first}); "
            "resume from an earlier checkpoint or drop --resume"
        ) from None


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file under ``folder`` and the folder itself to disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: str | os.PathLike) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staging: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename a complete ``staging`` folder to ``final`` (replacing an older one of the same name)."""
    staging, final = Path(staging), Path(final)
    fsync_tree(staging)
    # The old folder is set aside under the staging prefix, so remove_partial clears it after a kill.
    replace_folder(staging, final, aside=final.with_name(f"{STAGING_PREFIX}old-{final.name}"))
    _fsync_dir(final.parent)


def remove_partial(run_dir: str | os.PathLike) -> None:
    """Delete staging folders a killed save left behind (they are never loaded)."""
    folder = Path(run_dir)
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith((STAGING_PREFIX, f".{STAGING_PREFIX}")):
                shutil.rmtree(p, ignore_errors=True)


def last_complete_checkpoint(run_dir: str | os.PathLike, weights_file: str) -> Path | None:
    """The highest-numbered ``checkpoint-N`` holding its trainer state and weights, or None."""
    folder = Path(run_dir)
    if not folder.is_dir():
        return None
    found = []
    for p in folder.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and (p / "trainer_state.json").is_file() and (p / weights_file).is_file():
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


RUN_CONFIG = "run_config.yaml"  # the resolved config of the run the checkpoints belong to
_NOT_COMPARED = {("training", "progress"), ("training", "output_dir")}  # may change on resumption


def _first_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0  # set by torchrun; read before the process group exists


def record_run(cfg, run_dir: str | os.PathLike) -> None:
    """Write the run's resolved config beside its checkpoints, for ``--resume`` to compare with."""
    if _first_process():
        write_text_atomically(Path(run_dir) / RUN_CONFIG, dump_config(cfg))


def resume_point(cfg, run_dir: str | os.PathLike, resume: bool) -> str | None:
    """The checkpoint to resume from; None for a fresh run.

    Refuses (CheckpointError) to resume a run whose recorded config differs from ``cfg``, or one
    that has no complete checkpoint yet.
    """
    if not resume:
        return None
    run_dir = Path(run_dir)
    recorded = run_dir / RUN_CONFIG
    if not recorded.is_file():
        raise CheckpointError(
            f"nothing to resume in {run_dir}: no run was started there with this version of "
            "prefalign; drop --resume to start the run"
        )
    before = yaml.safe_load(recorded.read_text(encoding="utf-8")) or {}
    changed = _differences(before, yaml.safe_load(dump_config(cfg)))
    if changed:
        raise CheckpointError(
            f"the config differs from the run being resumed in {', '.join(changed[:4])}; "
            f"resume with the config recorded in {recorded}, or drop --resume to start over"
        )
    found = last_complete_checkpoint(run_dir, WEIGHTS_FILE)
    if found is None:
        raise CheckpointError(
            f"{run_dir} holds no complete checkpoint yet (one is written every "
            "training.eval_steps steps); drop --resume to start the run again"
        )
    try:
        json.loads((found / "trainer_state.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(
            f"{found / 'trainer_state.json'} is not valid JSON; delete {found} to resume from the checkpoint before it"
        ) from None
    if _first_process():
        remove_partial(run_dir)
    return str(found)


def _differences(a: dict, b: dict, prefix: tuple = ()) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b), key=str):
        path = (*prefix, key)
        if path in _NOT_COMPARED:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, path)
        elif va != vb:
            out.append(".".join(map(str, path)))
    return out
