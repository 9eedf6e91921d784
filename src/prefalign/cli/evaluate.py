"""`prefalign eval`: the task's full metric set for a saved adapter on a labelled file."""

from __future__ import annotations

import json

from .common import add_inference_args, load_adapter, load_rows

COMMAND = "eval"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a saved adapter on a labelled file: accuracy, weighted F1, cross-entropy (and the "
        "disagreement-aware scores on multi-annotator data)",
    )
    p.add_argument("--data", required=True, help="CSV, TSV, JSONL, JSON or saved datasets folder")
    add_inference_args(p)


def run(args) -> int:
    from ..inference import predict_proba

    model, backbone, collator, meta = load_adapter(args)
    if getattr(model.task, "generation", False):
        from ..errors import ConfigError

        raise ConfigError(
            f"{args.adapter} answers a generation task; `prefalign eval` scores class labels. Use "
            "`prefalign predict` for its answers, or train/compare, which score the test split "
            "with the task's metric"
        )
    data = load_rows(args, meta["label_names"], need_labels=True)
    probs = predict_proba(model, collator, data, batch_size=args.batch_size, progress=args.bars)
    print(json.dumps(task_metrics(probs, data)))
    return 0


def task_metrics(probs, data) -> dict:
    """What training reports for a validation split, from class probabilities: accuracy, weighted F1 and the
    cross-entropy against the hard labels; on multi-annotator data also macro F1, soft cross-entropy, JSD, ECE
    and the per-group scores; and ``n``, the number of examples."""
    import numpy as np

    from ..annotations.metrics import annotation_keys, dataset_metrics
    from ..training.trainer import accuracy_metrics

    class Scores:  # the fields of transformers' EvalPrediction that accuracy_metrics reads
        predictions = np.log(np.clip(probs, 1e-12, 1.0))
        label_ids = np.array([ex.hard_label() for ex in data.examples])

    scores = accuracy_metrics(Scores)
    p = np.clip(probs.astype(np.float64), 1e-12, 1.0)
    scores["cross_entropy"] = float(-np.log(p[np.arange(len(p)), Scores.label_ids]).mean())
    if annotation_keys(data):
        scores.update(dataset_metrics(p / p.sum(1, keepdims=True), data))
    scores["n"] = len(data)
    return scores
