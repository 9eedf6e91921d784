"""The whole speed benchmark on one GPU in bf16, inside a ten-minute budget, into one JSON file.

    python benchmarks/gpu_bench.py                 # CUDA, bf16 -> benchmarks/results/gpu_bench_cuda-bf16.json
    python benchmarks/gpu_bench.py --cpu-smoke     # the same steps on CPU, fp32, tiny model, few rounds

Runs, in this order, each as its own process with a time limit taken from what is left of
``--budget`` seconds (a step that cannot start in time is recorded as skipped, never silently):

1. speed_memory.py on the tiny model and MiniLM at batch 16 and 64, m = 16: floor, P-Tuning v2,
   DCPC, its ablations, our LoRA and the peers (PEFT prefix tuning with and without projection,
   PEFT LoRA r=4 and all-linear r=8, plain full fine-tuning), ``--rounds`` interleaved rounds;
2. throughput.py on MiniLM: `prefalign train` / `prefalign predict` against the plain loop;
3. speed_memory.py on SmolLM2-135M at batch 16 and 64;
4. throughput.py on SmolLM2-135M.

Each step writes its own result file (speed_memory_<model>_<device>-<dtype>_<tag>.json,
throughput_<model>_<device>-<dtype>_<tag>.json); this script then writes gpu_bench_<device>-<dtype>.json
with the machine, every step's command, exit status and seconds, the speed rows (ratios, medians)
and throughput summaries of every step that finished, and the targets table `--report` prints.
``--cpu-smoke`` checks the script end to end on a machine without a GPU (tiny model only; its
figures are not GPU figures and its file is named ..._cpu-fp32_smoke.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def steps(args) -> list[tuple[str, list[str], Path]]:
    """(name, command, the result file it writes) of every step, in order."""
    py, sm, tp = sys.executable, str(HERE / "speed_memory.py"), str(HERE / "throughput.py")
    out = Path(args.out)
    tag = args.tag
    if args.cpu_smoke:
        dev = ["--device", "cpu", "--dtype", "fp32"]
        return [
            (
                "speed tiny",
                [py, sm, *dev, "--models", "tiny", "--batches", "16", "--prefixes", "16", "--rounds", "2"]
                + ["--memory-repeats", "1", "--tag", tag, "--out", str(out)],
                out / f"speed_memory_tiny_{tag}.json",
            ),
            (
                "throughput tiny",
                [py, tp, "--model", "tiny", "--steps", "2,4", "--predict", "64,128", "--tag", tag, "--out", str(out)],
                out / f"throughput_tiny_{tag}.json",
            ),
        ]
    dev = ["--device", "cuda", "--dtype", "bf16"]
    speed = ["--batches", "16,64", "--prefixes", "16", "--rounds", str(args.rounds), "--memory-repeats", "3"]
    speed += ["--tag", tag, "--out", str(out)]
    thr = ["--device", "cuda", "--bf16", "--steps", "20,100", "--predict", "512,4096", "--tag", tag]
    thr += ["--out", str(out)]
    suffix = f"cuda-bf16_{tag}"
    return [
        ("speed tiny", [py, sm, *dev, "--models", "tiny", *speed], out / f"speed_memory_tiny_{suffix}.json"),
        ("speed minilm", [py, sm, *dev, "--models", "minilm", *speed], out / f"speed_memory_minilm_{suffix}.json"),
        ("throughput minilm", [py, tp, "--model", "minilm", *thr], out / f"throughput_minilm_{suffix}.json"),
        (
            "speed smollm2-135m",
            [py, sm, *dev, "--models", "smollm2-135m", *speed],
            out / f"speed_memory_smollm2-135m_{suffix}.json",
        ),
        (
            "throughput smollm2-135m",
            [py, tp, "--model", "smollm2-135m", *thr],
            out / f"throughput_smollm2-135m_{suffix}.json",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="CPU, fp32, tiny model only: check the script runs")
    p.add_argument("--budget", type=float, default=570.0, help="seconds for all steps together (default 570)")
    p.add_argument("--rounds", type=int, default=20, help="timed rounds per speed configuration")
    p.add_argument("--tag", default=None, help="result files' tag (default: gpu, or smoke with --cpu-smoke)")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    args.tag = args.tag or ("smoke" if args.cpu_smoke else "gpu")
    sys.path.insert(0, str(HERE))
    import speed_memory
    import throughput

    from prefalign.utils.atomic_files import write_text_atomically
    from prefalign.utils.environment import machine, versions

    if not args.cpu_smoke:
        import torch

        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run on a GPU machine, or pass --cpu-smoke to check the script on CPU")
    device = "cpu-fp32" if args.cpu_smoke else "cuda-bf16"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.time()
    done, speed_files, throughput_files = [], [], []
    for name, cmd, path in steps(args):
        left = args.budget - (time.time() - t0)
        record = {"step": name, "command": " ".join(Path(c).name if c == sys.executable else c for c in cmd)}
        if left < 20:
            done.append({**record, "skipped": f"budget spent ({args.budget:.0f} s)"})
            print(f"skipped {name}: the budget is spent", flush=True)
            continue
        s0 = time.time()
        try:
            proc = subprocess.run(cmd, env=env, timeout=left, capture_output=True, text=True)
            rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
        except subprocess.TimeoutExpired:
            rc, tail = None, f"stopped after {left:.0f} s: the budget ran out"
        record.update(seconds=round(time.time() - s0, 1), returncode=rc)
        if rc != 0:
            record["output_tail"] = tail
        done.append(record)
        print(f"{name}: rc {rc}, {record['seconds']} s", flush=True)
        if rc == 0 and path.exists():
            (speed_files if name.startswith("speed") else throughput_files).append(str(path))
    result = {
        "command": "python benchmarks/gpu_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": device,
        "gpu_figures": not args.cpu_smoke,
        "machine": machine("cpu" if args.cpu_smoke else "cuda"),
        "versions": versions(),
        "budget_seconds": args.budget,
        "seconds": round(time.time() - t0, 1),
        "steps": done,
        "speed": {
            Path(f).name: {k: v for k, v in json.loads(Path(f).read_text()).items() if k != "raw"} for f in speed_files
        },
        "throughput": {
            Path(f).name: {k: v for k, v in json.loads(Path(f).read_text()).items() if k != "runs"}
            for f in throughput_files
        },
        "report": speed_memory.report(speed_files) if speed_files else "",
        "throughput_report": throughput.report(throughput_files) if throughput_files else "",
    }
    path = Path(args.out) / f"gpu_bench_{device}{'_smoke' if args.cpu_smoke else ''}.json"
    write_text_atomically(path, json.dumps(result, indent=1))
    print(result["report"])
    print(result["throughput_report"])
    print(f"wrote {path} in {result['seconds']} s")


if __name__ == "__main__":
    main()
