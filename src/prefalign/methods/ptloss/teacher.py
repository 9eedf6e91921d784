"""The teacher's class distributions on the distillation set: computed once, cached as safetensors.

A teacher is a prefalign adapter folder (any method, read through its own base model, tokenizer and
prompt) or a Hugging Face sequence-classification model (a folder, an alias or a hub id in the local
cache). Distributions are over classes, so the teacher's tokenizer need not be the student's. The
cache file holds the (N, C) distributions with two digests in its metadata, one of the teacher's
files and one of the examples and class names; it is reused only when both match.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import cached_file

from ...data import Collator, PromptFormat, TaskDataset
from ...errors import ConfigError, DataError, ModelLoadError
from ...models.loading import cache_dir, load_backbone, resolve_model_path
from .. import registry  # a module reference: the registry imports this package, so its names resolve at call time
from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint

GENERIC_LABEL = re.compile(r"^label_\d+$", re.IGNORECASE)


def teacher_folder(name: str) -> Path:
    """The folder holding the teacher's files (a hub id resolves through the local Hugging Face cache)."""
    if not name:
        raise ConfigError("method.teacher is empty; name a prefalign adapter folder or a Hugging Face classifier")
    path = Path(resolve_model_path(name)).expanduser()
    if path.is_dir():
        return path
    try:
        return Path(cached_file(str(name), "config.json")).parent
    except Exception:
        raise ModelLoadError(
            f"teacher '{name}' is neither a folder nor a model in the local Hugging Face cache; "
            "give a prefalign adapter folder or a classifier folder"
        ) from None


def is_prefalign_adapter(folder: Path) -> bool:
    return (folder / CONFIG_FILE).exists() and (folder / WEIGHTS_FILE).exists()


def teacher_digest(folder: Path) -> str:
    """sha256 of the teacher's weight and config files (names and bytes), in name order."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in {".json", ".safetensors", ".txt"})
    for p in files:
        h.update(p.name.encode())
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:32]


def data_digest(data: TaskDataset) -> str:
    """sha256 of the class names and every example's inputs, in order."""
    h = hashlib.sha256(json.dumps(list(data.label_names)).encode())
    for ex in data.examples:
        h.update(json.dumps([ex.text, ex.text_pair, ex.choices]).encode())
    return h.hexdigest()[:32]


def align_classes(teacher_names: list[str], student_names: list[str], teacher: str) -> list[int]:
    """Column ``i`` of the student's classes is the teacher's column ``order[i]``; ConfigError if the sets differ.

    Generic names (LABEL_0, ...) match by position when the counts agree; named classes match by
    name (case-insensitive), in any order."""
    if len(teacher_names) != len(student_names):
        raise ConfigError(
            f"teacher '{teacher}' has {len(teacher_names)} classes ({', '.join(teacher_names)}) but the data has "
            f"{len(student_names)} ({', '.join(student_names)}); distil on data with the teacher's classes"
        )
    if all(GENERIC_LABEL.match(n) for n in teacher_names):
        return list(range(len(student_names)))
    lookup = {n.lower(): i for i, n in enumerate(teacher_names)}
    missing = [n for n in student_names if n.lower() not in lookup]
    if missing:
        raise ConfigError(
            f"teacher '{teacher}' has classes {', '.join(teacher_names)}, the data has {', '.join(student_names)}: "
            "the class sets differ; distil on data with the teacher's classes"
        )
    return [lookup[n.lower()] for n in student_names]


@torch.no_grad()
def _adapter_predict(folder: Path, data: TaskDataset, batch_size: int) -> tuple[np.ndarray, list[str]]:
    _, meta = read_checkpoint(folder)
    if meta.get("task", {}).get("generation") or "label_names" not in meta:
        raise ModelLoadError(f"teacher {folder} is a prefalign adapter for a generation task, not a classifier")
    backbone = load_backbone(meta["base_model"])
    model, meta = registry.load_method(folder, backbone)
    model.eval()
    collator = Collator(
        backbone.tokenizer,
        backbone.geometry,
        len(meta["label_names"]),
        PromptFormat(**meta.get("prompt", {})),
        meta.get("max_length", 128),
    )
    out = []
    for start in range(0, len(data), batch_size):
        batch = collator(data.examples[start : start + batch_size])
        keep = {k: v for k, v in batch.items() if k in {"input_ids", "attention_mask", "token_type_ids", "score_mask"}}
        out.append(torch.softmax(model(**keep).logits.double(), -1).numpy())
    return np.concatenate(out), list(meta["label_names"])


@torch.no_grad()
def _classifier_predict(folder: Path, name: str, data: TaskDataset, batch_size: int) -> tuple[np.ndarray, list[str]]:
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception:
        raise ModelLoadError(f"teacher '{name}' has no readable config.json; is it a model folder?") from None
    if not any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])):
        raise ModelLoadError(
            f"teacher '{name}' is not a classifier (architectures: {', '.join(config.architectures or ['none'])}); "
            "give a sequence-classification model or a prefalign adapter"
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise ModelLoadError(f"cannot load teacher '{name}': {str(exc).splitlines()[0][:200]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    names = [config.id2label[i] for i in range(config.num_labels)]
    out = []
    for start in range(0, len(data), batch_size):
        chunk = data.examples[start : start + batch_size]
        pairs = [ex.text_pair for ex in chunk] if chunk[0].text_pair is not None else None
        enc = tokenizer([ex.text for ex in chunk], pairs, truncation=True, padding=True, return_tensors="pt")
        out.append(torch.softmax(model(**enc).logits.double(), -1).numpy())
    return np.concatenate(out), names


def teacher_distributions(
    teacher: str, data: TaskDataset, *, batch_size: int = 32, cache: str | Path | None = None
) -> tuple[np.ndarray, dict]:
    """The teacher's distributions (N, C) over ``data``'s classes, in the data's class order, and a record
    {teacher_digest, data_digest, cache_file, cached}. Reads the cache when both digests match."""
    if not len(data):
        raise DataError("the distillation set is empty; give the teacher examples to label")
    if data.is_multiple_choice or data.is_generation:
        raise DataError("distillation needs a classification task (one label per input), not choices or answers")
    folder = teacher_folder(teacher)
    t_digest, d_digest = teacher_digest(folder), data_digest(data)
    root = Path(cache) if cache else cache_dir() / "teacher-distributions"
    path = root / f"{t_digest[:16]}-{d_digest[:16]}.safetensors"
    record = {"teacher_digest": t_digest, "data_digest": d_digest, "cache_file": str(path), "cached": False}
    if path.exists():
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
        if meta.get("teacher_digest") == t_digest and meta.get("data_digest") == d_digest:
            return load_file(str(path))["probs"], {**record, "cached": True}
    if is_prefalign_adapter(folder):
        probs, names = _adapter_predict(folder, data, batch_size)
    else:
        probs, names = _classifier_predict(folder, teacher, data, batch_size)
    probs = probs[:, align_classes(names, list(data.label_names), teacher)]
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(
        {"probs": np.ascontiguousarray(probs)}, str(tmp), metadata={"teacher_digest": t_digest, "data_digest": d_digest}
    )
    tmp.replace(path)
    return probs, record
