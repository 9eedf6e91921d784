"""How long `prefalign` takes to answer the commands that need no model: wall time of a fresh process.

    python benchmarks/startup.py [--repeats 5] [--output benchmarks/results/startup.json]

Each command runs ``--repeats`` times as ``python -m prefalign ...`` in a new process (what a user's shell
does); the median and the fastest wall time are printed and, with --output, written as JSON with the
machine's load average at the start, since a shared machine slows every number down. The goal is under a
second for each: they import neither torch nor transformers (tests/test_cli_ux.py checks that part).
A config error is timed too: it still loads torch and transformers, because a config's method section is
checked by the method registry, which imports every method.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "--help": ["--help"],
    "--version": ["--version"],
    "tasks": ["tasks"],
    "shift --list": ["shift", "--list"],
    "train --help": ["train", "--help"],
    "config error (train --set training.lerning_rate=1)": ["train", "--set", "training.lerning_rate=1"],
}


def wall_time(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prefalign", *args], capture_output=True, check=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="write the timings here as JSON")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f}; {args.repeats} runs each")
    rows = {}
    for name, argv in COMMANDS.items():
        times = [wall_time(argv) for _ in range(args.repeats)]
        rows[name] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3)}
        print(f"{name:55s} median {rows[name]['median_s']:6.2f} s   fastest {rows[name]['min_s']:6.2f} s")
    if args.output:
        record = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "load_average": load, "commands": rows}
        with open(args.output, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2)


if __name__ == "__main__":
    main()
