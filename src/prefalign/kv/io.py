"""The compressed-model folder: ``factors.safetensors`` (per-layer SVD factors) and ``lorc.json`` (schedule).

A folder names its base model; loading reads the base through prefalign's model loading, checks a
fingerprint of its key/value weights, and installs the saved factors (no SVD is recomputed).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..models.loading import LoadedModel, load_backbone
from ..utils.atomic_files import write_folder_atomically
from .compress import install
from .factorize import Factor, attention_modules, family, projections
from .schedule import Schedule

FORMAT = "prefalign-lorc"
VERSION = 1
META = "lorc.json"
FACTORS = "factors.safetensors"


def fingerprint(model) -> str:
    """sha256 over every layer's original key and value weights (float32 bytes): which base the factors fit."""
    digest = hashlib.sha256()
    for layer in range(len(attention_modules(model))):
        proj = projections(model, layer)
        for w in (proj.k, proj.v):
            digest.update(w.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def factor_tensors(factors: dict[int, tuple[Factor, Factor]]) -> dict[str, torch.Tensor]:
    """The factors as a flat safetensors dict: layers.<l>.<key|value>.<down|up|singular_values>."""
    out = {}
    for layer, pair in sorted(factors.items()):
        for kind, f in zip(("key", "value"), pair):
            out[f"layers.{layer}.{kind}.down"] = f.down.detach().contiguous().cpu()
            out[f"layers.{layer}.{kind}.up"] = f.up.detach().contiguous().cpu()
            out[f"layers.{layer}.{kind}.singular_values"] = f.singular_values.detach().contiguous().cpu()
    return out


def save_compressed(
    out_dir: str | Path,
    *,
    base_model: str,
    model,
    schedule: Schedule,
    factors: dict[int, tuple[Factor, Factor]],
    base_fingerprint: str,
    extra_files: dict[str, object] | None = None,
) -> Path:
    """Write the folder atomically; ``extra_files`` maps names to a text or a callable(path) writing them."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "base_model": base_model,
        "family": family(model),
        "num_layers": len(attention_modules(model)),
        "base_fingerprint": base_fingerprint,
        "schedule": schedule.to_dict(),
    }

    def fill(tmp: Path) -> None:
        save_file(factor_tensors(factors), str(tmp / FACTORS), metadata={"format": FORMAT})
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for name, content in (extra_files or {}).items():
            if callable(content):
                content(tmp / name)
            else:
                (tmp / name).write_text(str(content), encoding="utf-8")

    return write_folder_atomically(out_dir, fill)


def read_meta(folder: str | Path) -> dict:
    """The folder's lorc.json, checked; a CheckpointError naming what is wrong."""
    folder = Path(folder)
    path = folder / META
    if not path.is_file() or not (folder / FACTORS).is_file():
        raise CheckpointError(
            f"{folder} is not a compressed model folder (needs {META} and {FACTORS}); "
            "write one with `prefalign compress-kv`"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc.msg}); write the folder again") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is not a {FORMAT} v{VERSION} file; write the folder again")
    return meta


def apply_compressed(model, folder: str | Path) -> Schedule:
    """Install a folder's factors into ``model`` (its base, loaded uncompressed), in place; the schedule."""
    folder = Path(folder)
    meta = read_meta(folder)
    if len(attention_modules(model)) != meta["num_layers"] or fingerprint(model) != meta["base_fingerprint"]:
        raise CheckpointError(
            f"{folder} was made for {meta['base_model']}, whose key/value weights differ from this model's; "
            "load it with that base model"
        )
    tensors = load_file(str(folder / FACTORS))
    schedule = Schedule.from_dict(meta["schedule"])
    dtype = projections(model, 0).q.dtype
    for layer, rank in enumerate(schedule.ranks):
        if rank is None:
            continue
        pair = []
        for kind in ("key", "value"):
            try:
                f = Factor(
                    down=tensors[f"layers.{layer}.{kind}.down"].to(dtype),
                    up=tensors[f"layers.{layer}.{kind}.up"].to(dtype),
                    singular_values=tensors[f"layers.{layer}.{kind}.singular_values"],
                )
            except KeyError as exc:
                raise CheckpointError(f"{folder / FACTORS} lacks {exc.args[0]}; write the folder again") from None
            if f.rank != rank:
                raise CheckpointError(f"{folder}: layer {layer} factors have rank {f.rank}, the schedule says {rank}")
            pair.append(f)
        install(model, layer, *pair)
    model.config.use_cache = True
    return schedule


def load_compressed(folder: str | Path, *, dtype: str | None = None) -> LoadedModel:
    """Load a ``prefalign compress-kv`` folder: its base model with the saved factors installed."""
    meta = read_meta(folder)
    loaded = load_backbone(meta["base_model"], dtype=dtype)
    apply_compressed(loaded.model, folder)
    loaded.model.eval()
    return loaded
