"""Seed-matched comparison of two targets in a finished annotator grid: in how many (method, seed)
pairs does the row trained on one target beat the row trained on the other?

    python benchmarks/annotation_pairs.py [--results runs/compare/annotators_minilm/results.json]
                                          [--a majority] [--b soft]

Rows are paired by their label: "<method> / <a>" against "<method> / <b>", same dataset, same seed
(same initialisation and data order). Lower is better for soft_ce, jsd, ece and worst_group_ce;
higher for accuracy and f1. Ties count as no win.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from prefalign.training.config import LOWER_IS_BETTER  # the runner's own reading of each metric's direction

METRICS = ("accuracy", "f1", "soft_ce", "jsd", "ece", "worst_group_ce")


def paired_wins(runs: list[dict], a: str, b: str) -> dict[tuple[str, str], tuple[int, int]]:
    """{(dataset column, metric): (pairs where b beats a, pairs)} over the finished runs."""
    by_key = {}
    for run in runs:
        method, _, target = run["method"].rpartition(" / ")
        if run.get("status") == "ok" and method:
            by_key[(run["column"], method, target, run["seed"])] = run["metrics"]
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (column, method, target, seed), scores in by_key.items():
        other = by_key.get((column, method, a, seed))
        if target != b or other is None:
            continue
        for metric in METRICS:
            key = f"test_{metric}"
            if key in scores and key in other:
                better = scores[key] < other[key] if metric in LOWER_IS_BETTER else scores[key] > other[key]
                out[(column, metric)][0] += int(better)
                out[(column, metric)][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="runs/compare/annotators_minilm/results.json")
    parser.add_argument("--a", default="majority", help="the reference target (row label suffix)")
    parser.add_argument("--b", default="soft", help="the target compared with it")
    args = parser.parse_args()
    path = Path(args.results)
    if not path.is_file():
        raise SystemExit(f"annotation_pairs: error: {path} does not exist; run the grid first")
    wins = paired_wins(json.loads(path.read_text())["runs"], args.a, args.b)
    if not wins:
        raise SystemExit(f"annotation_pairs: error: no '<method> / {args.a}' and '/ {args.b}' rows with the same seed")
    columns = list(dict.fromkeys(column for column, _ in wins))
    print(f"| dataset | " + " | ".join(METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for column in columns:
        cells = [f"{wins[(column, m)][0]}/{wins[(column, m)][1]}" if (column, m) in wins else "–" for m in METRICS]
        print(f"| {column} | " + " | ".join(cells) + " |")
    print(f"\ncell: seed-matched (method, seed) pairs in which '{args.b}' beats '{args.a}', out of all pairs")


if __name__ == "__main__":
    main()
