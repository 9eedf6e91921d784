"""How long `prefalign` takes to answer the commands that need no model: wall time of a fresh process.

    python benchmarks/startup.py [--repeats 5] [--output benchmarks/results/startup.json]

Each command runs ``--repeats`` times as ``python -m prefalign ...`` in a new process (what a user's shell
does); the median and the fastest wall time are printed and, with --output, written as JSON with the
machine's load average at the start, since a shared machine slows every number down, and the median CPU
time (user + system) of each, which other processes on a loaded machine inflate much less. The goal is under
a second for each: they import neither torch nor transformers (tests/test_cli_ux.py checks that part).
Config errors are timed too: an unknown key, an unknown method and an unknown method option. They answer
from the config dataclasses and the method catalog alone (methods/catalog.py), without torch or
transformers (tests/test_method_catalog.py checks that part).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
    "config error (train --set method.name=dcpcx)": ["train", "--set", "method.name=dcpcx"],
    "config error (train --set method.pcm_mod=gate)": ["train", "--set", "method.pcm_mod=gate"],
}


def wall_time(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one fresh ``python -m prefalign ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prefalign", *args], capture_output=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="write the timings here as JSON")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f}; {args.repeats} runs each")
    rows = {}
    for name, argv in COMMANDS.items():
        runs = [wall_time(argv) for _ in range(args.repeats)]
        times, cpu = [w for w, _ in runs], [c for _, c in runs]
        rows[name] = {
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "cpu_median_s": round(statistics.median(cpu), 3),
        }
        print(
            f"{name:55s} median {rows[name]['median_s']:6.2f} s   fastest {rows[name]['min_s']:6.2f} s   "
            f"CPU {rows[name]['cpu_median_s']:6.2f} s"
        )
    if args.output:
        record = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "load_average": load, "commands": rows}
        with open(args.output, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2)


if __name__ == "__main__":
    main()
