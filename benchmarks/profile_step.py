"""Where a method's optimizer step spends memory and operations: the profile behind docs/performance.md.

    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --model minilm --batch 16 --prefix 16
    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --model tiny --batch 8 --table   # + torch.profiler table
    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --model minilm --methods ptuning-v2,peft-prefix --table

Per method, on the batch speed_memory.py uses: the tensors autograd keeps for the backward pass
(saved_tensors_hooks, MiB of distinct storages), the peak memory above the step's start during the
forward pass (loss included) and during the backward pass (VmHWM, reset through
/proc/self/clear_refs, as speed_memory.py measures), the number of top-level aten operations of
one step (torch.profiler) and the step's CPU time of the compute thread, median of 10. Every name
speed_memory.py measures works, the peers included (peft-prefix, peft-lora, hf-full-ft, lora ...).

``--records FILE`` also writes one JSON line per method (the numbers above, the settings, seed 0,
library versions, machine, seconds and the command), replacing FILE atomically at the end; the
profile table in docs/performance.md is generated from benchmarks/results/profile_step_minilm.jsonl:

    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --model minilm --batch 16 --prefix 16 \
        --methods ptuning-v2,dcpc --records benchmarks/results/profile_step_minilm.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # let the resident set follow live memory (speed_memory.py)
    os.environ.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    os.execv(sys.executable, [sys.executable] + sys.argv)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_memory as sm  # noqa: E402
from op_profile import op_diff, op_times  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prefix", type=int, default=16)
    p.add_argument("--methods", default="ptuning-v2,dcpc,dcpc-no-clpa,dcpc-no-pcm,dcpc-no-clpa-pcm")
    p.add_argument("--table", action="store_true", help="also print torch.profiler's op table per method")
    p.add_argument(
        "--counts",
        action="store_true",
        help="also print how the top-level aten op counts differ from the first method's",
    )
    p.add_argument(
        "--op-times",
        type=int,
        default=0,
        metavar="N",
        help="also profile N steps and print where each method's self CPU time per step differs from the first's, "
        "by aten op (the records keep every op's time). torch.profiler times are wall-clock: on a shared machine "
        "they carry its load, so compare them only between methods profiled under the same load",
    )
    p.add_argument("--records", help="write one JSON line per method into this JSONL file (replaced at the end)")
    args = p.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    backbone = sm.build_backbone(args.model, "fp32")
    task, batch = sm.make_batch(backbone, args.batch, 64)

    def rss(field: str) -> float:
        return sm._proc_kib(field) / 1024

    meter = sm.Meter("cpu")

    def reset() -> float:
        """Reset the peak resident set to the current one (speed_memory's own reset); MiB held now."""
        return meter.memory_start() / 2**20

    print(f"{args.model}, batch {args.batch}, m {args.prefix}, {batch['input_ids'].shape[1]} tokens per row")
    first = first_op_ms = None
    records = []
    for name in args.methods.split(","):
        started = time.time()
        torch.manual_seed(0)
        model, params = sm.build_model(name, backbone, task, args.prefix, task.num_classes)
        model.train()
        opt = torch.optim.AdamW(params, lr=1e-4)

        def step(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            opt.step()

        step()
        opt.zero_grad(set_to_none=True)
        storages = {}

        def pack(t, storages=storages):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        base = reset()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(**batch).loss
        fwd_peak = rss("VmHWM") - base
        reset()
        loss.backward()
        bwd_peak = rss("VmHWM") - base
        del loss
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        top = Counter(
            e.name
            for e in prof.events()
            if e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
        )
        ops = sum(top.values())
        first = first if first is not None else top
        op_ms = op_times(step, args.op_times) if args.op_times else None
        first_op_ms = first_op_ms if first_op_ms is not None else op_ms
        times = []
        for _ in range(10):
            c0 = time.thread_time()
            step()
            times.append(time.thread_time() - c0)
        print(
            f"{name:18s} saved {sum(storages.values()) / 2**20:7.2f} MiB | peak forward {fwd_peak:7.1f} MiB, "
            f"backward {bwd_peak:7.1f} MiB | {ops:4d} aten ops | {1000 * statistics.median(times):8.2f} ms CPU",
            flush=True,
        )
        records.append(
            {
                "method": name,
                "model": args.model,
                "batch": args.batch,
                "prefix": args.prefix,
                "tokens_per_row": int(batch["input_ids"].shape[1]),
                "seed": 0,
                "saved_for_backward_mib": round(sum(storages.values()) / 2**20, 3),
                "peak_forward_mib": round(fwd_peak, 3),
                "peak_backward_mib": round(bwd_peak, 3),
                "top_level_aten_ops": ops,
                "step_cpu_ms_median_of_10": round(1000 * statistics.median(times), 3),
                "seconds": round(time.time() - started, 1),
            }
            | ({"op_self_cpu_ms_per_step": op_ms, "op_times_steps": args.op_times} if op_ms is not None else {})
        )
        if op_ms is not None and op_ms is not first_op_ms:
            print("   " + op_diff(op_ms, first_op_ms))
        if args.table:
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        if args.counts and top is not first:
            diff = {k: top[k] - first[k] for k in top.keys() | first.keys() if top[k] != first[k]}
            print(
                "   top-level aten ops, this method minus the first: "
                + ", ".join(f"{k[6:]} {v:+d}" for k, v in sorted(diff.items(), key=lambda kv: (-abs(kv[1]), kv[0])))
            )
    if args.records:
        write_records(args.records, records)


def write_records(path: str, records: list[dict]) -> None:
    """The per-method records, each with the versions, machine and command that produced it."""
    from prefalign.utils.atomic_files import write_text_atomically
    from prefalign.utils.environment import hardware, machine, versions

    shared = {
        "command": "python benchmarks/profile_step.py " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "machine": machine(),
        "hardware": hardware(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_text_atomically(path, "".join(json.dumps({**r, **shared}, sort_keys=True) + "\n" for r in records))


if __name__ == "__main__":
    main()
