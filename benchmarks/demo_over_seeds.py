"""Run `prefalign demo` for several seeds and print the median table.

    python benchmarks/demo_over_seeds.py --seeds 0 1 2 [--root runs/demo-seeds]

Each seed runs `prefalign demo --seed S --output-dir ROOT/seed-S` unless that folder already holds
a summary.json (so an interrupted sweep resumes). Prints per-seed rows, then the median test
accuracy per method and training-label set, and writes ROOT/medians.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default="runs/demo-seeds")
    args = parser.parse_args()
    root = Path(args.root)
    summaries = []
    for seed in args.seeds:
        folder = root / f"seed-{seed}"
        if not (folder / "summary.json").exists():
            cmd = [sys.executable, "-m", "prefalign.cli", "demo", "--seed", str(seed), "--output-dir", str(folder)]
            subprocess.run(cmd, check=True)
        summaries.append(json.loads((folder / "summary.json").read_text()))
    cells: dict[tuple[str, str], list[float]] = {}
    gates: dict[tuple[str, str], list[float]] = {}
    print("| seed | method | train labels | test accuracy | gate rate | seconds |")
    print("|---|---|---|---|---|---|")
    for seed, summary in zip(args.seeds, summaries):
        for row in summary["rows"]:
            key = (row["method"], row["train_labels"])
            cells.setdefault(key, []).append(row["test_accuracy"])
            gate = row.get("gate_cos_rate")
            if gate is not None:
                gates.setdefault(key, []).append(gate)
            shown = f"{100 * gate:.1f}%" if gate is not None else "n/a"
            print(f"| {seed} | {row['method']} | {row['train_labels']} | {row['test_accuracy']:.3f} | {shown} | "
                  f"{row['seconds']:.0f} |")
    methods = list(dict.fromkeys(k[0] for k in cells))
    sets = list(dict.fromkeys(k[1] for k in cells))
    print(f"\nMedian over seeds {args.seeds}:\n")
    print("| method | " + " | ".join(f"{s} labels" for s in sets) + " | clean minus shifted | median gate rate |")
    print("|---|" + "---|" * (len(sets) + 2))
    medians = {}
    for m in methods:
        med = [statistics.median(cells[(m, s)]) for s in sets]
        medians[m] = dict(zip(sets, med))
        g = [x for s in sets for x in gates.get((m, s), [])]
        gate = f"{100 * statistics.median(g):.1f}%" if g else "n/a"
        print(f"| {m} | " + " | ".join(f"{v:.3f}" for v in med) + f" | {med[0] - med[-1]:+.3f} | {gate} |")
    print(f"\nwall time per demo run: {', '.join(str(round(s['seconds'])) + ' s' for s in summaries)}")
    (root / "medians.json").write_text(json.dumps({"seeds": args.seeds, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
