"""How far crowd-kit's aggregates move from the majority vote on a multi-annotator training split.

    python benchmarks/annotation_targets.py [--task md-agreement] [--path ../shared/data/lewidi]

Prints the share of training items whose Dawid-Skene label differs from the majority vote, and how
peaked MACE's soft posteriors are (the share with a top class >= 0.95, and the median top class).
Needs prefalign[crowd].
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from prefalign.annotations import AnnotationWarning
from prefalign.tasks import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="md-agreement")
    parser.add_argument("--path", default="../shared/data/lewidi")
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


if __name__ == "__main__":
    main()
