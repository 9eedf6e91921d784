"""The demo's splits per seed, as data: sizes, majority-class share, and movies shared between splits.

    python benchmarks/demo_splits.py            # seeds 0, 1, 2 -> benchmarks/results/demo_splits.json

docs/results.md ("The demo") quotes these beside the demo's accuracies (`make results` generates the
sentence from the JSON): a run must beat its seed's test majority class to have learned anything, and
the split's promise (no movie in both train and test) is checked on the real data, not assumed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from prefalign.data.rotten_tomatoes import demo_splits
from prefalign.utils.atomic_files import write_text_atomically
from prefalign.utils.environment import machine, versions

OUT = Path(__file__).resolve().parent / "results" / "demo_splits.json"


def describe(seed: int) -> dict:
    """Sizes, the test majority class's share and the movies each pair of splits shares, for one seed."""
    train, validation, test = demo_splits(seed)
    movies = {
        name: {ex.meta["movie"] for ex in ds.examples}
        for name, ds in zip(("train", "validation", "test"), (train, validation, test))
    }
    label, count = Counter(ex.label for ex in test.examples).most_common(1)[0]
    return {
        "seed": seed,
        "sizes": {"train": len(train), "validation": len(validation), "test": len(test)},
        "test_majority_label": test.label_names[label],
        "test_majority_share": round(count / len(test), 4),
        "movies_in_train_and_validation": len(movies["train"] & movies["validation"]),
        "movies_in_train_and_test": len(movies["train"] & movies["test"]),
        "movies_in_validation_and_test": len(movies["validation"] & movies["test"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--output", default=str(OUT))
    args = parser.parse_args(argv)
    started = time.time()
    seeds = [describe(int(s)) for s in args.seeds.split(",")]
    record = {
        "command": "python benchmarks/demo_splits.py",
        "seeds": seeds,
        "versions": versions(),
        "machine": machine(),
        "seconds": round(time.time() - started, 1),
    }
    write_text_atomically(args.output, json.dumps(record, indent=1, sort_keys=True) + "\n")
    for s in seeds:
        print(s)


if __name__ == "__main__":
    main()
