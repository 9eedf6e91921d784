"""Folding a saved adapter into its base model's weights: `prefalign export --merge`."""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import save_file

from ..errors import CheckpointError
from ..models.loading import LoadedModel, load_backbone
from ..utils.atomic_files import write_folder_atomically
from .checkpoint import read_checkpoint
from .export import CARD_FILE, fold_tuner_layers, merge_refusal, model_card
from .registry import load_method

HEAD_FILE = "classification_head.safetensors"  # a merged encoder's task head (not part of the transformers model)


def merge_adapter(adapter_dir: str | os.PathLike, output_dir: str | os.PathLike, backbone: LoadedModel | None = None):
    """Fold a saved adapter into its base weights and write a plain transformers model folder
    (safetensors only) plus its tokenizer, a model card and, for encoders, the task head
    (``classification_head.safetensors``). Refused with a CheckpointError naming the reason when the
    method cannot be merged."""
    _, meta = read_checkpoint(adapter_dir)
    if backbone is None:
        backbone = load_backbone(meta.get("base_model_path") or meta["base_model"])
    model, meta = load_method(adapter_dir, backbone)
    refusal = merge_refusal(model, backbone.model)
    if refusal:
        raise CheckpointError(f"cannot merge {adapter_dir}: {refusal}; use the adapter folder as it is")
    model.eval()
    inner = model.classifier.model
    fold_tuner_layers(inner)
    expected = set(backbone.model.state_dict())
    got = set(inner.state_dict())
    if got != expected:
        extra = sorted(got - expected)[:2] or sorted(expected - got)[:2]
        raise CheckpointError(f"cannot merge {adapter_dir}: the merged model's weights differ in names ({extra})")
    labels = meta.get("label_names") or []
    if labels:
        inner.config.id2label = dict(enumerate(labels))
        inner.config.label2id = {n: i for i, n in enumerate(labels)}

    def fill(folder: Path) -> None:
        inner.save_pretrained(str(folder))
        backbone.tokenizer.save_pretrained(str(folder))
        head = model.classifier.head
        if head is not None:
            state = {f"head.{k}": v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
            save_file(state, str(folder / HEAD_FILE), metadata={"format": "pt"})
        for pickle in [p for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]:
            pickle.unlink()
        card = {**meta, "method": f"{meta['method']} (merged)"}
        text = model_card(card, folder, "the adapter is merged into these weights; load them with transformers")
        (folder / CARD_FILE).write_text(text, encoding="utf-8")

    return write_folder_atomically(output_dir, fill)
