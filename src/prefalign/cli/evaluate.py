"""`prefalign eval`: accuracy (and the task's other metrics) of a saved adapter on a labelled file."""

from __future__ import annotations

import json

from .common import add_config_args, load_rows

COMMAND = "eval"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="accuracy of a saved adapter on a labelled file")
    p.add_argument("--adapter", required=True, help="folder written by `prefalign train` (…/adapter)")
    p.add_argument("--data", required=True, help="CSV, TSV, JSONL, JSON or saved datasets folder")
    add_config_args(p)
    p.add_argument("--batch-size", type=int, default=64)


def run(args) -> int:
    from ..inference import evaluate, load_for_inference

    model, backbone, collator, meta = load_for_inference(args.adapter)
    if getattr(model.task, "generation", False):
        from ..errors import ConfigError

        raise ConfigError(
            f"{args.adapter} answers a generation task; `prefalign eval` scores class labels. Use "
            "`prefalign predict` for its answers, or train/compare, which score the test split "
            "with the task's metric"
        )
    data = load_rows(args, meta["label_names"], need_labels=True)
    metrics = evaluate(model, collator, data, batch_size=args.batch_size, progress=True)
    print(json.dumps(metrics))
    return 0
