"""Where DCPC's inference time goes beyond P-Tuning v2's: each part of its eval-mode prefix path, timed alone.

    OMP_NUM_THREADS=1 python benchmarks/dcpc_infer_profile.py --model minilm --batch 64 \
        --output benchmarks/results/dcpc_infer_profile_minilm_b64.json

On the batch and methods of ``speed_memory.py`` (the first B Rotten Tomatoes reviews, m = 16, one torch
thread), in eval mode without targets (what ``predict`` runs): the whole forward of P-Tuning v2 and DCPC,
interleaved, and the parts only DCPC runs, each repeated on its own: the word-embedding lookup the PCM
reads, its masked mean, the PCM (aux classifier, p_pref, s = M p_pref and the scaled prefix), and the
per-example prefix (B, L, 2, m, kv) it writes when materialised (training) and the inference path that
writes the scaled rows straight into the attention cache instead (``rows=True``; its rows are written
inside the backbone's cache set-up, so this part times the PCM alone). Times are medians of the compute
thread's CPU time (``time.thread_time``), in ms; a part timed alone runs with warm caches, so the parts
need not add up to the difference of the two forwards (the rest is the backbone with a per-example prefix).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="tiny, minilm or smollm2-135m (speed_memory.py's names)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prefix", type=int, default=16)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument(
        "--op-times", type=int, default=0, metavar="N", help="also profile N forwards of each, self CPU time by aten op"
    )
    p.add_argument("--output", help="write the timings here as JSON")
    args = p.parse_args()

    import speed_memory as sm
    import torch
    from op_profile import median_ms, op_diff, op_times

    from prefalign.models.classifier import masked_mean
    from prefalign.models.prefix import build_prefix_cache, build_row_scaled_prefix_cache
    from prefalign.utils.environment import machine, versions

    torch.set_num_threads(1)
    backbone = sm.build_backbone(args.model, "fp32")
    task, batch = sm.make_batch(backbone, args.batch, 64)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    models = {
        n: sm.build_model(n, backbone, task, args.prefix, task.num_classes)[0].eval() for n in ("ptuning-v2", "dcpc")
    }
    dcpc = models["dcpc"]
    forward = {n: [] for n in models}
    with torch.no_grad():
        for r in range(args.rounds + 1):
            for name in list(models)[r % 2 :] + list(models)[: r % 2]:
                t0 = time.thread_time()
                models[name](input_ids=ids, attention_mask=mask)
                if r:
                    forward[name].append(time.thread_time() - t0)
        static = dcpc.prefix()
        words = dcpc.classifier.model.get_input_embeddings()(ids)
        e_in = masked_mean(words.float(), mask)
        scales = dcpc.pcm(e_in, static, sample=False, write_prefix=False).scales
        geo, config = backbone.geometry, backbone.model.config
        parts = {
            "embedding lookup": lambda: dcpc.classifier.model.get_input_embeddings()(ids),
            "masked mean": lambda: masked_mean(words.float(), mask),
            "PCM with the prefix it writes": lambda: dcpc.pcm(e_in, static, sample=False, add_static=True),
            "aux classifier alone": lambda: dcpc.pcm.aux(e_in),
            "whole prefix path, materialised (_prefix_for)": lambda: dcpc._prefix_for(ids, mask, sample=False),
            "whole prefix path, rows into the cache (rows=True)": lambda: dcpc._prefix_for(
                ids, mask, sample=False, rows=True
            ),
            "P-Tuning v2's prefix path": lambda: models["ptuning-v2"]._prefix_for(ids, mask, sample=False),
            "DCPC's cache set-up (each example's scaled rows)": lambda: build_row_scaled_prefix_cache(
                static, scales, geo, config
            ),
            "P-Tuning v2's cache set-up (one prefix, broadcast)": lambda: build_prefix_cache(
                static.unsqueeze(0).expand(len(ids), *static.shape), geo, config
            ),
        }
        timed = {name: median_ms(fn, 5 * args.rounds) for name, fn in parts.items()}
        call = {n: (lambda m=m: m(input_ids=ids, attention_mask=mask)) for n, m in models.items()}
        ops = {n: op_times(fn, args.op_times) for n, fn in call.items()} if args.op_times else {}
    if args.op_times:
        print("dcpc: " + op_diff(ops["dcpc"], ops["ptuning-v2"], top=15))
    shape = (args.batch, backbone.geometry.num_layers, 2, args.prefix, backbone.geometry.kv_dim)
    record = {
        "command": "python benchmarks/dcpc_infer_profile.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "batch": args.batch,
        "prefix_length": args.prefix,
        "rounds": args.rounds,
        "machine": machine("cpu"),
        "versions": versions(),
        "load_average": os.getloadavg(),
        "forward_ms": {n: round(1000 * statistics.median(v), 3) for n, v in forward.items()},
        "forward_ratio_dcpc_vs_ptuning": round(
            statistics.median(a / b for a, b in zip(forward["dcpc"], forward["ptuning-v2"])), 4
        ),
        "parts_ms": timed,
        "per_example_prefix_mib": round(torch.Size(shape).numel() * 4 / 2**20, 2),
        "raw_forward_seconds": forward,
    }
    if args.op_times:
        record |= {"op_times_forwards": args.op_times, "op_self_cpu_ms_per_forward": ops}
    print(json.dumps({k: v for k, v in record.items() if k != "raw_forward_seconds"}, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
