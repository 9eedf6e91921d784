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
Children run as an installed package does: with bytecode caching on, after one uncounted warm-up run per
command that writes the ``.pyc`` files; ``--no-bytecode`` measures processes that compile every module
(a fresh checkout run from a shell with PYTHONDONTWRITEBYTECODE=1, as on this project's machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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


def wall_time(args: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one fresh ``python -m prefalign ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prefalign", *args], capture_output=True, check=False, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="write the timings here as JSON")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="children neither read nor write .pyc files (every module compiled)"
    )
    args = parser.parse_args()
    env = dict(os.environ)
    if args.no_bytecode:  # no .pyc read or written: an empty cache prefix, nothing written to it
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="prefalign-nopyc-")
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f}; {args.repeats} runs each")
    rows = {}
    for name, argv in COMMANDS.items():
        if not args.no_bytecode:
            wall_time(argv, env)  # warm-up: writes the .pyc files an installed package would have
        runs = [wall_time(argv, env) for _ in range(args.repeats)]
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
        record = {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "load_average": load,
            "bytecode_cache": not args.no_bytecode,
            "commands": rows,
        }
        with open(args.output, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2)


if __name__ == "__main__":
    main()
