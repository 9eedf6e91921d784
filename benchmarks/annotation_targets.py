"""How far crowd-kit's aggregates move from the majority vote on a multi-annotator training split.

    python benchmarks/annotation_targets.py [--task md-agreement] [--path ../shared/data/lewidi] \
        [--output benchmarks/results/annotation_targets_md_agreement.json]

Prints the share of training items whose Dawid-Skene label differs from the majority vote, and how
peaked MACE's soft posteriors are (the share with a top class >= 0.95, and the median top class).
Needs prefalign[crowd]. --output also writes the numbers, with versions and machine, as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from pathlib import Path

import numpy as np

from prefalign.annotations import AnnotationWarning
from prefalign.tasks import load_task
from prefalign.utils.atomic_files import write_text_atomically
from prefalign.utils.environment import versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="md-agreement")
    parser.add_argument("--path", default="../shared/data/lewidi")
    parser.add_argument("--output", help="also write the numbers as JSON to this file")
    args = parser.parse_args()

    def train(target: str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnnotationWarning)
            return load_task(args.task, args.path, 0, {"target": target})[0].examples

    majority = np.array([ex.label for ex in train("majority")])
    dawid_skene = np.array([ex.label for ex in train("dawid-skene")])
    mace_top = np.array([max(ex.soft_label) for ex in train("mace-soft")])
    print(f"{args.task}: {len(majority)} training items")
    print(f"Dawid-Skene label differs from the majority vote: {np.mean(dawid_skene != majority):.1%}")
    print(
        f"MACE soft posterior with a top class >= 0.95: {np.mean(mace_top >= 0.95):.1%} "
        f"(median top class {np.median(mace_top):.3f})"
    )
    if args.output:
        root, resolved = Path(__file__).resolve().parents[1], Path(args.output).resolve()
        output = resolved.relative_to(root) if resolved.is_relative_to(root) else args.output
        record = {
            "command": f"python benchmarks/annotation_targets.py --task {args.task} --path {args.path} "
            f"--output {output}",
            "task": args.task,
            "training_items": len(majority),
            "dawid_skene_differs_from_majority": float(np.mean(dawid_skene != majority)),
            "mace_soft_top_at_least_0.95": float(np.mean(mace_top >= 0.95)),
            "mace_soft_median_top": float(np.median(mace_top)),
            "machine": platform.platform(),
            "versions": versions(),
        }
        write_text_atomically(args.output, json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
