"""A compare grid on one GPU inside a time budget, one seed at a time, into one records file.

    python benchmarks/gpu_grid.py --out OUT                 # configs/compare/issue15_smollm2_gpu.yaml, 540 s
    python benchmarks/gpu_grid.py --out OUT --allow-cpu --set base.training.max_steps=2 ...   # a CPU rehearsal

Issue 15 asks for the SmolLM2 grid at five times the CPU grid's steps on a GPU, "from one prepared script".
A 135M model at batch 16 leaves an H200 mostly idle, so ``--workers`` processes share it through
`prefalign compare`'s run queue. Seeds run one after another (``--set seeds=[s]``), so a budget that ends
mid-grid still leaves whole seeds: the first seed's every cell before the second seed's first. Each seed's
compare gets what is left of ``--budget`` (less ``--reserve`` for the report) and is stopped, with its
workers, when that runs out; runs it finished stay in the grid's runs folder. A last
``compare --report-only`` over the whole config tabulates every finished run and writes the grid's
records.jsonl; the script copies it and the table to ``--out`` and writes gpu_grid.json there: the machine,
each step's command, exit status and seconds, and how many runs finished per seed. ``--records FILE`` passes
compare's records file to every call: on a fresh machine its runs are restored instead of trained again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from prefalign.compare import load_compare_config
from prefalign.compare.records import read_records

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/compare/issue15_smollm2_gpu.yaml")
    p.add_argument("--out", required=True, help="folder for records.jsonl, the table and gpu_grid.json")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole script")
    p.add_argument("--reserve", type=float, default=45.0, help="seconds kept for the closing report")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="*", help="default: the config's seeds, in order")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--records",
        metavar="FILE",
        help="compare's records file: its runs are taken instead of trained (a lease is a fresh machine, so a later "
        "seed resumes from the records committed after the first), and it is rewritten with every finished run",
    )
    p.add_argument("--allow-cpu", action="store_true", help="rehearse without a GPU (device: auto falls back)")
    return p.parse_args(argv)


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def run_step(command: list[str], limit: float) -> dict:
    """Run ``command`` in its own process group; stop the whole group (compare's workers too) at ``limit``."""
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    try:
        rc = proc.wait(timeout=max(1.0, limit))
        stopped = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        rc, stopped = proc.returncode, True
    return {"command": command, "rc": rc, "stopped_at_limit": stopped, "seconds": round(time.monotonic() - start, 1)}


def finished_runs(records: Path) -> list[str]:
    """Run ids a records file holds (the runs folder's, or ``--records``: every finished run `compare` reports)."""
    return [r["run_id"] for r in read_records(records)] if records.is_file() else []


def main(argv=None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.budget
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu_grid: torch sees no GPU; pass --allow-cpu to rehearse on the CPU", file=sys.stderr)
        return 2
    config = ROOT / args.config
    cfg = load_compare_config(str(config), args.overrides)  # the grid as compare reads it, --set applied
    seeds = args.seeds if args.seeds else list(cfg.seeds)
    sets = [a for kv in args.overrides for a in ("--set", kv)]
    if args.records:
        sets += ["--records", str(Path(args.records).resolve())]
    output_dir = ROOT / cfg.output_dir  # compare runs in ROOT; an absolute output_dir stays as it is
    compare = [sys.executable, "-m", "prefalign", "compare", "--config", str(config)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = {"config": args.config, "budget_s": args.budget, "workers": args.workers, "machine": machine(), "steps": []}
    for seed in seeds:
        left = deadline - time.monotonic() - args.reserve
        if left < 30:
            log["steps"].append({"seed": seed, "skipped": f"{left:.0f} s left of the budget"})
            continue
        step = run_step([*compare, *sets, "--set", f"seeds=[{seed}]", "--workers", str(args.workers)], left)
        log["steps"].append({"seed": seed, **step})
    report = run_step([*compare, *sets, "--report-only"], max(20.0, deadline - time.monotonic()))
    log["steps"].append({"report": True, **report})
    records = Path(args.records).resolve() if args.records else output_dir / "records.jsonl"
    done = finished_runs(records)
    log["finished"] = {str(s): sum(r.endswith(f"/seed{s}") for r in done) for s in seeds}
    for source, name in ((records, "records.jsonl"), (output_dir / "table.md", "table.md")):
        if source.is_file():
            shutil.copy(source, out / name)
    (out / "gpu_grid.json").write_text(json.dumps(log, indent=1) + "\n")
    print(json.dumps(log["finished"]))
    return 0 if report["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
