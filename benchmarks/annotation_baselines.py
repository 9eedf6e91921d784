"""Reference rows for the multi-annotator tables: what a model that ignores the text would score.

    python benchmarks/annotation_baselines.py [--config configs/compare/annotators_minilm.yaml] \
        [--output benchmarks/results/annotation_baselines_minilm.json]

For each dataset of a compare config, it reads the splits exactly as the grid does (seed 0, the same
caps on test items). It then scores two constant predictors with the same disagreement metrics:
"majority class" puts all probability on the training majority label, and "label prior" predicts the
training items' mean annotator distribution for every test item. No model is trained. --output also
writes every row, with all its metrics, the config, versions and machine, as JSON (the record the tables
in docs/results.md are generated from).
"""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from pathlib import Path

import numpy as np

from prefalign.annotations import AnnotationWarning
from prefalign.annotations.metrics import dataset_metrics
from prefalign.compare.config import load_compare_config
from prefalign.compare.grid import plan
from prefalign.training.splits import load_splits
from prefalign.utils.atomic_files import write_text_atomically
from prefalign.utils.environment import versions

ROOT = Path(__file__).resolve().parents[1]


def _relative(path: str) -> str:
    """``path`` relative to the checkout when it lies inside it, so a record names no machine's folders."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/compare/annotators_minilm.yaml")
    parser.add_argument("--output", help="also write the rows, with every metric, as JSON to this file")
    args = parser.parse_args()
    cfg = load_compare_config(args.config)
    seen = set()
    rows = []
    print("| dataset | predictor | accuracy | f1 | soft_ce | jsd | ece | worst_group_ce |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for spec in plan(cfg):
        if spec.dataset.name in seen:
            continue
        seen.add(spec.dataset.name)
        exp = spec.experiment(cfg, cfg.output_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnnotationWarning)
            train, _, test = load_splits(exp.data, 0)
        prior = np.mean([ex.meta["annotation_dist"] for ex in train.examples], axis=0)
        onehot = np.eye(len(prior))[int(np.argmax(np.bincount([ex.hard_label() for ex in train.examples])))]
        for name, probs in (("majority class", onehot), ("label prior", prior)):
            m = dataset_metrics(np.tile(probs, (len(test), 1)), test)
            rows.append(
                {
                    "dataset": spec.dataset.name,
                    "predictor": name,
                    "test_items": len(test),
                    "metrics": {k: float(v) for k, v in m.items() if isinstance(v, (int, float))},
                }
            )
            wg = f"{m['worst_group_ce']:.2f}" if "worst_group_ce" in m else "–"
            print(
                f"| {spec.dataset.name} ({len(test)} test items) | {name} | {100 * m['accuracy']:.1f} | "
                f"{100 * m['f1']:.1f} | {m['soft_ce']:.2f} | {100 * m['jsd']:.1f} | {100 * m['ece']:.1f} | {wg} |"
            )
    if args.output:
        command = f"python benchmarks/annotation_baselines.py --config {_relative(args.config)}"
        record = {
            "command": command + f" --output {_relative(args.output)}",
            "config": _relative(args.config),
            "rows": rows,
            "machine": platform.platform(),
            "versions": versions(),
        }
        write_text_atomically(args.output, json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
