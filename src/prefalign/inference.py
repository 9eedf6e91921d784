"""Load a trained adapter and predict or evaluate with it.

``Adapter.from_pretrained(path, device=..., dtype=...)`` is the Python API: ``.predict(texts)`` gives
each text's label and class probabilities, ``.predict_proba(texts)`` the (N, C) array, and calling the
adapter answers like a transformers text-classification pipeline. ``load_for_inference``,
``predict_proba`` and ``evaluate`` are the lower-level pieces it is built from.

An adapter trained with annotator conditioning (``method.annotator_conditioning``) predicts whose view
it is asked for: ``annotator="Ann12"`` one annotator's, ``panel=[...]`` (ids, ids -> attributes, or a panel
file) the mean over a panel's annotators; examples that list their annotators (an annotated file) get the
mean over those; anything else the whole training pool's (the population).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .annotations.metrics import ANNOTATION_KEYS, annotation_keys, dataset_metrics
from .data import Collator, Example, PromptFormat, TaskDataset
from .errors import CheckpointError, ConfigError, DataError
from .methods import Method, load_method, save_method
from .methods.checkpoint import read_checkpoint
from .methods.conditioning import AnnotatorVocab, annotator_inputs
from .methods.export import push_to_hub
from .methods.merge import merge_adapter
from .methods.registry import load_base_model
from .models.loading import LoadedModel

TARGET_KEYS = ("labels", "target_dist", *ANNOTATION_KEYS)  # batch keys for losses and metrics, not predictions


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Inputs = TaskDataset | Sequence[str | tuple[str, str] | Example]


def load_for_inference(adapter_dir: str, backbone: LoadedModel | None = None, *, dtype: str | None = None):
    """(model, backbone, collator, meta) for a saved adapter; the backbone comes from the adapter's config
    (loaded in ``dtype``, default float32)."""
    _, meta = read_checkpoint(adapter_dir)
    backbone = backbone or load_base_model(meta, dtype=dtype)
    model, meta = load_method(adapter_dir, backbone)
    model.eval()
    if "label_names" not in meta:
        raise CheckpointError(f"{adapter_dir}: prefalign_config.json lacks label_names")
    prompt = PromptFormat(**meta.get("prompt", {}))
    vocab = AnnotatorVocab.from_dict(meta["annotators"]) if meta.get("annotators") else None
    collator = Collator(
        backbone.tokenizer,
        backbone.geometry,
        len(meta["label_names"]),
        prompt,
        meta.get("max_length", 128),
        **annotator_inputs(vocab),
    )
    return model, backbone, collator, meta


Panel = Sequence[str] | dict[str, dict] | str | os.PathLike


def read_panel(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """A panel file: one annotator id a line (.txt), or a CSV/TSV/JSONL table with an ``annotator`` column,
    its other columns the annotator's attributes (used for annotators the model never saw)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"panel file {file} does not exist; pass a file with one annotator id a line")
    text = file.read_text(encoding="utf-8")
    if file.suffix in (".csv", ".tsv"):
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if file.suffix == ".tsv" else ","))
    elif file.suffix in (".jsonl", ".json"):
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DataError(f"panel file {file}: line {exc.lineno} is not JSON") from None
    else:
        rows = [{"annotator": line.strip()} for line in text.splitlines() if line.strip()]
    panel: dict[str, dict[str, str]] = {}
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not str(row.get("annotator") or "").strip():
            raise DataError(f"panel file {file}: row {n} has no 'annotator' value; give every row an annotator id")
        attrs = {str(k): str(v) for k, v in row.items() if k != "annotator" and v not in (None, "")}
        panel[str(row["annotator"]).strip()] = attrs
    if not panel:
        raise DataError(f"panel file {file} names no annotators")
    return panel


def with_annotators(examples: Sequence[Example], panel: dict[str, dict[str, str]]) -> list[Example]:
    """The examples, each asked for the view of ``panel``'s annotators (id -> attributes)."""
    ids, attrs = list(panel), [dict(a) for a in panel.values()]
    return [
        Example(
            text=ex.text,
            label=ex.label,
            text_pair=ex.text_pair,
            choices=ex.choices,
            soft_label=ex.soft_label,
            meta={**ex.meta, "annotators": ids, "annotator_attributes": attrs},
        )
        for ex in examples
    ]


def as_panel(annotator: str | None, panel: Panel | None) -> dict[str, dict[str, str]] | None:
    """``annotator`` or ``panel`` (ids, ids -> attributes, or a panel file) as id -> attributes; None for neither."""
    if annotator is not None and panel is not None:
        raise ConfigError("ask for one annotator or for a panel, not both")
    if annotator is not None:
        return {str(annotator): {}}
    if panel is None:
        return None
    if isinstance(panel, (str, os.PathLike)):
        return read_panel(panel)
    if isinstance(panel, dict):
        return {str(k): {str(a): str(v) for a, v in (attrs or {}).items()} for k, attrs in panel.items()}
    ids = [str(a) for a in panel]
    if not ids:
        raise DataError("the panel is empty; name at least one annotator")
    return {a: {} for a in ids}


def as_examples(data: Inputs) -> list[Example]:
    """The examples of a TaskDataset, or of a plain list of texts, (text, text_pair) tuples or Examples."""
    if isinstance(data, TaskDataset):
        return data.examples
    if isinstance(data, str):
        raise DataError("pass a list of texts, not one string: predict_proba(model, collator, [text])")
    out = []
    for i, item in enumerate(data):
        if isinstance(item, Example):
            out.append(item)
        elif isinstance(item, str) and item.strip():
            out.append(Example(text=item, label=0))
        elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(t, str) and t.strip() for t in item):
            out.append(Example(text=item[0], text_pair=item[1], label=0))
        else:
            raise DataError(f"input {i} is {item!r}; pass non-empty texts or (text, text_pair) pairs")
    if not out:
        raise DataError("no texts to predict; pass at least one")
    return out


@torch.no_grad()
def predict_proba(
    model: Method,
    collator: Collator,
    data: Inputs,
    batch_size: int = 64,
    progress: bool = False,
    *,
    annotator: str | None = None,
    panel: Panel | None = None,
) -> np.ndarray:
    """Class probabilities (N, C) for every example, in order; ``data`` is a TaskDataset or a list of texts
    (or (text, text_pair) tuples, or Examples). For an annotator-conditioned model, ``annotator`` or
    ``panel`` chooses whose view (see the module docstring)."""
    examples = as_examples(data)
    chosen = as_panel(annotator, panel)
    if chosen is not None:
        if collator.annotators is None:
            raise ConfigError(
                "this adapter was trained without annotator conditioning, so it has no annotator's view; "
                "train with data.target: annotators and method.annotator_conditioning"
            )
        examples = with_annotators(examples, chosen)
    model.eval()
    device = next(model.parameters()).device
    out = []
    steps = range(0, len(examples), batch_size)
    for start in tqdm(steps, disable=not progress, desc="predict"):
        batch = collator(examples[start : start + batch_size])
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


def pick_device(device: str | torch.device | None) -> torch.device:
    """'auto' or None: the GPU when there is one, else the CPU; anything else as torch reads it."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not one torch knows; use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for a GPU, but torch sees none; use device='cpu'")
    return chosen


@dataclass(frozen=True)
class Prediction:
    """One text's predicted label and every class's probability."""

    label: str
    probabilities: dict[str, float]

    @property
    def score(self) -> float:
        """The predicted label's probability."""
        return self.probabilities[self.label]


class Adapter:
    """A trained adapter on its base model, ready to predict: the prefalign counterpart of
    ``AutoModelForSequenceClassification.from_pretrained`` plus a pipeline.

    >>> adapter = Adapter.from_pretrained("runs/rt-dcpc-minilm/adapter", device="cpu")
    >>> adapter.predict(["a quietly devastating film"])[0].label
    """

    def __init__(self, model: Method, backbone: LoadedModel, collator: Collator, meta: dict, path: Path) -> None:
        self.model, self.backbone, self.collator, self.meta, self.path = model, backbone, collator, meta, path

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device | None = "auto",
        dtype: str | None = None,
        base_model: LoadedModel | None = None,
    ) -> Adapter:
        """Load the adapter folder ``path`` (written by `prefalign train` or ``save_pretrained``) onto the base
        model it records, on ``device`` ('auto': the GPU when there is one) in ``dtype`` ('float32',
        'bfloat16', 'float16'; default float32)."""
        if dtype is not None and dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        target = pick_device(device)
        model, backbone, collator, meta = load_for_inference(str(path), base_model, dtype=dtype)
        model.to(target)
        if dtype is not None:
            model.to(DTYPES[dtype])  # the trained parts too, so every matmul runs in one dtype
        return cls(model, backbone, collator, meta, Path(path))

    @property
    def labels(self) -> list[str]:
        return list(self.meta["label_names"])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def annotators(self) -> list[str]:
        """The annotators an annotator-conditioned adapter was trained on (empty for any other adapter)."""
        return list((self.meta.get("annotators") or {}).get("ids", []))

    def predict_proba(
        self, texts: Inputs, *, batch_size: int = 32, annotator: str | None = None, panel: Panel | None = None
    ) -> np.ndarray:
        """Class probabilities, shape (N, C), columns in ``labels`` order; ``annotator`` or ``panel`` (ids,
        ids -> attributes, or a panel file) asks an annotator-conditioned adapter for their view."""
        self._refuse_generation()
        return predict_proba(self.model, self.collator, texts, batch_size, annotator=annotator, panel=panel)

    def predict(
        self, texts: Inputs, *, batch_size: int = 32, annotator: str | None = None, panel: Panel | None = None
    ) -> list[Prediction]:
        """Each text's label and class probabilities, in order, ``batch_size`` texts per forward pass
        (``annotator``/``panel``: as in ``predict_proba``)."""
        probs = self.predict_proba(texts, batch_size=batch_size, annotator=annotator, panel=panel)
        names = self.labels
        return [
            Prediction(names[int(p.argmax())], {n: float(v) for n, v in zip(names, p)}) for p in probs.astype(float)
        ]

    def __call__(self, texts: str | Inputs, *, top_k: int | None = 1, batch_size: int = 32):
        """Pipeline-style: ``[{"label": ..., "score": ...}]`` per text (the ``top_k`` most probable labels;
        None: all), or one such answer for a single string, as a text-classification pipeline answers."""
        single = isinstance(texts, str)
        probs = self.predict_proba([texts] if single else texts, batch_size=batch_size)
        names, k = self.labels, len(self.labels) if top_k is None else top_k
        answers = []
        for p in probs:
            order = np.argsort(-p, kind="stable")[:k]
            ranked = [{"label": names[int(i)], "score": float(p[i])} for i in order]
            answers.append(ranked[0] if top_k == 1 else ranked)
        return answers[0] if single else answers

    def evaluate(self, data: TaskDataset, *, batch_size: int = 64) -> dict:
        """The scores of ``evaluate`` on labelled data."""
        self._refuse_generation()
        return evaluate(self.model, self.collator, data, batch_size)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the adapter (prefalign's files, PEFT's where PEFT has the method, the model card) to
        ``directory``, with the metadata it was loaded with."""
        keep = {k: v for k, v in self.meta.items() if k in {"label_names", "max_length", "seed", "prompt", "card"}}
        save_method(self.model, directory, backbone=self.backbone, extra=keep)
        return Path(directory)

    def merge(self, directory: str | os.PathLike) -> Path:
        """Fold the adapter into its base weights as a plain transformers folder (`prefalign export --merge`)."""
        return merge_adapter(self.path, directory)

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool = False) -> str:
        """Upload the adapter folder to the Hub repository ``repo_id``; returns the commit URL."""
        return push_to_hub(self.path, repo_id, token=token, private=private)

    def _refuse_generation(self) -> None:
        if self.model.task.generation:
            raise ConfigError(
                f"{self.path} generates answers; use `prefalign predict --adapter {self.path}` "
                "or prefalign.generation, not class probabilities"
            )

    def __repr__(self) -> str:
        return f"Adapter({self.meta['method']!r} on {self.meta['base_model']!r}, labels={self.labels}, {self.device})"
