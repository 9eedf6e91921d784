"""Names -> method classes; building a method on a backbone, saving and loading it."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from collections.abc import Iterator, MutableMapping

from ..errors import CheckpointError, ConfigError, ModelLoadError
from ..models.classifier import TaskSpec
from ..models.loading import LoadedModel, load_backbone
from ..models.prefix import check_prefix_reaches_model
from .base import Method, MethodConfig
from .catalog import SPECS, method_config, method_spec, resolve_method, spec_of
from .checkpoint import check_state_matches, read_checkpoint, write_checkpoint
from .conditioning import AnnotatorVocab, annotator_vocab, attach_conditioning
from .export import base_model_record, write_adapter_extras

__all__ = [
    "METHODS",
    "base_fingerprint",
    "build_method",
    "check_same_base",
    "load_base_model",
    "load_method",
    "method_class",
    "method_config",
    "register_method",
    "resolve_method",
    "save_method",
]


class MethodTable(MutableMapping):
    """Names -> method classes, the catalog's names (methods/catalog.py) with each class imported when first read."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Method]] = {}

    def __getitem__(self, name: str) -> type[Method]:
        if name not in self._classes:
            self._classes[name] = SPECS[name].load()
        return self._classes[name]

    def __setitem__(self, name: str, cls: type[Method]) -> None:
        if name != cls.name:
            raise ValueError(f"{cls.__qualname__} is named '{cls.name}', not '{name}'")
        SPECS[name] = spec_of(cls)
        self._classes[name] = cls

    def __delitem__(self, name: str) -> None:
        del SPECS[name]
        self._classes.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(SPECS))

    def __len__(self) -> int:
        return len(SPECS)


METHODS = MethodTable()


def register_method(cls: type[Method]) -> type[Method]:
    """Make ``cls`` buildable by its ``name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not cls.name:
        raise TypeError(f"{cls!r} is not a Method subclass with a name")
    if cls.name in SPECS and METHODS[cls.name] is not cls:
        raise ValueError(f"a method named '{cls.name}' is registered already ({METHODS[cls.name].__qualname__})")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[Method]:
    """The method registered as ``name``; a ConfigError lists the known ones."""
    return METHODS[method_spec(name).name]


def build_method(
    config: MethodConfig,
    backbone: LoadedModel,
    task: TaskSpec,
    *,
    initialise: bool = True,
    copy_backbone: bool = True,
    annotators: AnnotatorVocab | None = None,
) -> Method:
    """Build the method ``config`` names on ``backbone`` for ``task``.

    Methods that change the backbone (adapters injected in place, every weight trained) get a deep
    copy unless ``copy_backbone`` is False, so one loaded backbone can serve several runs.
    ``config.annotator_conditioning`` needs ``annotators``, the training annotators' vocabulary.
    """
    if config.annotator_conditioning is not None and annotators is None:
        raise ConfigError(
            f"method.annotator_conditioning={config.annotator_conditioning} needs data.target: annotators "
            "on multi-annotator data whose annotators are named"
        )
    cls = method_class(config.name)
    if cls.feeds_prefix:
        check_prefix_reaches_model(backbone.model, backbone.geometry)
    if cls.changes_backbone and copy_backbone:
        backbone = dataclasses.replace(backbone, model=copy.deepcopy(backbone.model))
    method = cls(backbone.model, backbone.tokenizer, backbone.geometry, task, config, initialise=initialise)
    if config.annotator_conditioning is not None:
        attach_conditioning(method, annotators)
    return method


def save_method(
    model: Method, directory: str | os.PathLike, *, backbone: LoadedModel, extra: dict | None = None
) -> None:
    """Save the trained parts of ``model`` (safetensors) and a config naming the base model, atomically,
    with PEFT's own files where PEFT has the method and a model card (README.md).

    ``extra`` may hold ``card``: ``{"metrics": ..., "config": ..., "command": ...}`` for the model card.
    """
    meta = {
        "method": model.name,
        "method_config": model.config.to_dict(),
        "base_model": backbone.name,
        **base_model_record(backbone),
        "base_fingerprint": base_fingerprint(backbone),
        "geometry": dataclasses.asdict(backbone.geometry),
        "task": dataclasses.asdict(model.task),
        **({"annotators": vocab.to_dict()} if (vocab := annotator_vocab(model)) is not None else {}),
        **(extra or {}),
    }
    write_checkpoint(
        directory, model.trainable_state_dict(), meta, lambda folder: write_adapter_extras(folder, model, meta)
    )


def load_method(directory: str | os.PathLike, backbone: LoadedModel | None = None) -> tuple[Method, dict]:
    """Load a saved method onto ``backbone`` (loaded from the checkpoint's base_model if None)."""
    state, meta = read_checkpoint(directory)
    for key in ("method", "method_config", "base_model", "geometry", "task"):
        if key not in meta:
            raise CheckpointError(f"{directory}: prefalign_config.json lacks '{key}'")
    if backbone is None:
        backbone = load_base_model(meta)
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
    spec = TaskSpec(
        num_classes=task["num_classes"],
        multiple_choice=task["multiple_choice"],
        verbalizer_ids=tuple(task["verbalizer_ids"]) if task.get("verbalizer_ids") else None,
        generation=bool(task.get("generation", False)),
        label_names=tuple(task["label_names"]) if task.get("label_names") else None,
    )
    config = method_config(meta["method"], meta["method_config"])
    vocab = AnnotatorVocab.from_dict(meta["annotators"]) if meta.get("annotators") else None
    if config.annotator_conditioning is not None and vocab is None:
        raise CheckpointError(f"{directory}: prefalign_config.json lacks the annotator vocabulary ('annotators')")
    model = build_method(config, backbone, spec, initialise=False, annotators=vocab)
    expected = model.trainable_state_dict()
    check_state_matches(state, expected, str(directory))
    model.load_state_dict(state, strict=False)
    return model, meta


def load_base_model(meta: dict, **kwargs) -> LoadedModel:
    """The base model an adapter names: its alias or id, else the path it was loaded from."""
    name, path = meta["base_model"], meta.get("base_model_path")
    try:
        return load_backbone(name, **kwargs)
    except ModelLoadError:
        if not path or path == name:
            raise
        return load_backbone(path, **kwargs)


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
