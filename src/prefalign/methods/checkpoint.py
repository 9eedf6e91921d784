"""Checkpoints that hold only the trained parts (safetensors) plus a JSON config naming the base model."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..utils.atomic_files import write_folder_atomically

WEIGHTS_FILE = "prefalign_weights.safetensors"
CONFIG_FILE = "prefalign_config.json"
FORMAT_VERSION = 1


def write_checkpoint(
    directory: str | os.PathLike,
    state: dict[str, torch.Tensor],
    meta: dict,
    also: Callable[[Path], None] | None = None,
) -> Path:
    """Write weights and config to a temporary folder beside ``directory``, then swap it into place
    (the old checkpoint is kept until the new one is complete). ``also`` writes further files into the
    same temporary folder (PEFT's files, the model card), so they appear together or not at all."""

    def fill(folder: Path) -> None:
        tensors, seen = {}, set()
        for k, v in state.items():
            v = v.detach().contiguous().cpu()
            key = (v.data_ptr(), v.numel()) if v.numel() else None
            # safetensors refuses tensors sharing storage (tied embeddings under full fine-tuning).
            tensors[k] = v.clone() if key in seen else v
            seen.add(key)
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "prefalign": str(FORMAT_VERSION)})
        (folder / CONFIG_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2))
        if also is not None:
            also(folder)

    return write_folder_atomically(directory, fill)


def read_checkpoint(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint folder; refuses anything but safetensors weights and our JSON config."""
    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.exists() or not weights_path.exists():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"})
        extra = f" (found {', '.join(pickles)}: pickle files are never loaded)" if pickles else ""
        raise CheckpointError(
            f"{folder} is not a prefalign checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE}{extra}"
        )
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({exc.msg})") from None
    try:
        state = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({exc})") from None
    return state, meta


def check_state_matches(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError unless names and shapes match exactly."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "was it trained with another method or config?"
        )
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: '{name}' has shape {tuple(state[name].shape)}, this model needs {tuple(tensor.shape)}; "
                "the checkpoint was made for a different base model or prefix length"
            )
