"""Names -> method configs and models; checkpoint save/load for any registered method."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os

from ..errors import CheckpointError, ConfigError
from ..models.classifier import TaskSpec
from ..models.loading import LoadedModel, load_backbone
from ..models.prefix import check_prefix_reaches_model
from ..training.checkpoint import check_state_matches, read_checkpoint, write_checkpoint
from .baselines import BASELINES
from .bias_aware import BIAS_AWARE_METHODS
from .dcpc import ABLATIONS, DCPCConfig, DCPCModel
from .ltuning import LTUNING_METHODS

# Every DCPC variant of Table 3, and P-Tuning v2 (DCPC with everything off), share one model class;
# the baselines of Tables 1-2 follow.
METHODS = {**{name: (DCPCConfig, DCPCModel) for name in ABLATIONS}, **BASELINES, **LTUNING_METHODS,
           **BIAS_AWARE_METHODS}
PREFIX_METHODS = frozenset(ABLATIONS)  # methods that feed prefixes through the key/value cache


def method_config(name: str, params: dict | None = None):
    """The config of method ``name`` with ``params`` overriding its defaults."""
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of {', '.join(METHODS)}")
    config_cls, _ = METHODS[name]
    params = dict(params or {})
    config = config_cls.from_dict(params, where="method")  # rejects unknown keys with a hint
    return config_cls.variant(name, **params) if hasattr(config_cls, "variant") else config


def build_method(name: str, params: dict | None, backbone: LoadedModel, task: TaskSpec, *, initialise: bool = True,
                 copy_backbone: bool = True):
    """Build method ``name`` on ``backbone`` for ``task``.

    Prefix methods leave the backbone untouched. Baselines change it (adapters injected in place,
    or every weight trained); they get a deep copy unless ``copy_backbone`` is False, so one
    loaded backbone can serve several runs.
    """
    config = method_config(name, params)
    _, model_cls = METHODS[name]
    if name in PREFIX_METHODS or getattr(config, "FORM", None) == "prefix":  # L-Tuning's prefix variant too
        check_prefix_reaches_model(backbone.model, backbone.geometry)
    if name not in PREFIX_METHODS and copy_backbone and getattr(model_cls, "changes_backbone", True):
        backbone = dataclasses.replace(backbone, model=copy.deepcopy(backbone.model))
    model = model_cls(backbone.model, backbone.tokenizer, backbone.geometry, task, config, initialise=initialise)
    model.method_name = name
    return model


def save_method(model, directory: str | os.PathLike, *, backbone: LoadedModel, extra: dict | None = None) -> None:
    """Save the trained parts of ``model`` (safetensors) and a config naming the base model, atomically."""
    meta = {
        "method": getattr(model, "method_name", "dcpc"),
        "method_config": model.config.to_dict(),
        "base_model": backbone.name,
        "base_fingerprint": base_fingerprint(backbone),
        "geometry": dataclasses.asdict(backbone.geometry),
        "task": dataclasses.asdict(model.task),
        **(extra or {}),
    }
    write_checkpoint(directory, model.trainable_state_dict(), meta)


def load_method(directory: str | os.PathLike, backbone: LoadedModel | None = None):
    """Load a saved method onto ``backbone`` (loaded from the checkpoint's base_model if None)."""
    state, meta = read_checkpoint(directory)
    for key in ("method", "method_config", "base_model", "geometry", "task"):
        if key not in meta:
            raise CheckpointError(f"{directory}: prefalign_config.json lacks '{key}'")
    if backbone is None:
        backbone = load_backbone(meta["base_model"])
    saved_geo = meta["geometry"]
    if saved_geo != dataclasses.asdict(backbone.geometry):
        raise CheckpointError(
            f"{directory} was trained on '{meta['base_model']}' ({saved_geo['model_type']}, "
            f"{saved_geo['num_layers']} layers, hidden {saved_geo['hidden_size']}); the given base model "
            f"'{backbone.name}' differs ({backbone.geometry.model_type}, {backbone.geometry.num_layers} layers, "
            f"hidden {backbone.geometry.hidden_size})"
        )
    check_same_base(meta, backbone, directory)
    task = meta["task"]
    spec = TaskSpec(num_classes=task["num_classes"], multiple_choice=task["multiple_choice"],
                    verbalizer_ids=tuple(task["verbalizer_ids"]) if task.get("verbalizer_ids") else None,
                    generation=bool(task.get("generation", False)),
                    label_names=tuple(task["label_names"]) if task.get("label_names") else None)
    model = build_method(meta["method"], meta["method_config"], backbone, spec, initialise=False)
    expected = model.trainable_state_dict()
    check_state_matches(state, expected, str(directory))
    model.load_state_dict(state, strict=False)
    return model, meta


def base_fingerprint(backbone: LoadedModel) -> str:
    """A short hash of the base model's first 256 input-embedding rows: the same weights under another
    name (an alias and its folder) match; another model of the same shapes does not."""
    rows = backbone.model.get_input_embeddings().weight[:256].detach().float().cpu().contiguous()
    return hashlib.sha256(rows.numpy().tobytes()).hexdigest()[:16]


def check_same_base(meta: dict, backbone: LoadedModel, directory) -> None:
    """CheckpointError unless ``backbone`` is the model the checkpoint was trained on (by name, or by
    weights when the names differ)."""
    if meta["base_model"] == backbone.name:
        return
    saved = meta.get("base_fingerprint")
    if saved is not None and saved == base_fingerprint(backbone):
        return
    raise CheckpointError(
        f"{directory} was trained on base model '{meta['base_model']}', not '{backbone.name}' (same shapes, "
        "other weights); load it with the base model it was trained on"
    )
