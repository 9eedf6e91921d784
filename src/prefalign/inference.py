"""Load a trained adapter and predict or evaluate with it."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .annotations.metrics import ANNOTATION_KEYS, annotation_keys, dataset_metrics
from .data import Collator, PromptFormat, TaskDataset
from .errors import CheckpointError
from .methods import Method, load_method
from .methods.checkpoint import read_checkpoint
from .models.loading import LoadedModel, load_backbone

TARGET_KEYS = ("labels", "target_dist", *ANNOTATION_KEYS)  # batch keys for losses and metrics, not predictions


def load_for_inference(adapter_dir: str, backbone: LoadedModel | None = None):
    """(model, backbone, collator, meta) for a saved adapter; the backbone comes from the adapter's config."""
    _, meta = read_checkpoint(adapter_dir)
    backbone = backbone or load_backbone(meta["base_model"])
    model, meta = load_method(adapter_dir, backbone)
    model.eval()
    if "label_names" not in meta:
        raise CheckpointError(f"{adapter_dir}: prefalign_config.json lacks label_names")
    prompt = PromptFormat(**meta.get("prompt", {}))
    collator = Collator(
        backbone.tokenizer, backbone.geometry, len(meta["label_names"]), prompt, meta.get("max_length", 128)
    )
    return model, backbone, collator, meta


@torch.no_grad()
def predict_proba(
    model: Method, collator: Collator, data: TaskDataset, batch_size: int = 64, progress: bool = False
) -> np.ndarray:
    """Class probabilities (N, C) for every example, in order."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    steps = range(0, len(data), batch_size)
    for start in tqdm(steps, disable=not progress, desc="predict"):
        batch = collator(data.examples[start : start + batch_size])
        batch = {k: v.to(device) for k, v in batch.items() if k not in TARGET_KEYS}
        out.append(torch.softmax(model(**batch).logits.float(), -1).cpu().numpy())
    return np.concatenate(out)


def evaluate(
    model: Method, collator: Collator, data: TaskDataset, batch_size: int = 64, progress: bool = False
) -> dict:
    """Accuracy (against hard labels) and the number of examples; on multi-annotator data also F1, soft
    cross-entropy, JSD, ECE and per-group scores (prefalign.evaluation.disagreement)."""
    probs = predict_proba(model, collator, data, batch_size, progress)
    labels = np.array([ex.hard_label() for ex in data.examples])
    scores = {"accuracy": float((probs.argmax(-1) == labels).mean()), "n": len(data)}
    if annotation_keys(data):  # multi-annotator data: the disagreement-aware scores too
        p = probs.astype(np.float64)
        scores.update(dataset_metrics(p / p.sum(1, keepdims=True), data))
    return scores
