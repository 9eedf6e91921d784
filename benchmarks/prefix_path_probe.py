"""Where our P-Tuning v2's decoder forward differs from PEFT's prefix tuning with the same head: interleaved
eval-mode forwards (no_grad) of the whole methods and of the two backbones alone on identical inputs.

    OMP_NUM_THREADS=1 python benchmarks/prefix_path_probe.py --model smollm2-135m --batch 16 --rounds 10 \\
        --output benchmarks/results/prefix_path_probe_smollm2-135m.json

On speed_memory.py's batch, m = 16: ``ours`` is ptuning-v2-score (our prefix path and classifier, PEFT's linear
score head), ``peft`` PEFT's prefix-tuned sequence classifier with the same prefix copied in. ``ours backbone`` and
``peft backbone`` run only the transformer (LlamaModel) of each, ours on prefalign's backbone and PEFT's on its
own copy of the same weights, with the same prefix cache (build_prefix_cache), mask and ids: any difference
between those two is the weights' copy, not code. ``mapped backbone`` is the same transformer loaded by
transformers alone (``from_pretrained``), its weights left in the memory-mapped safetensors file, as
``load_backbone`` left them before ``own_memory``. CPU time of the compute thread, medians of within-round ratios.
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
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prefix", type=int, default=16)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--output")
    args = p.parse_args()
    import speed_memory as sm
    import torch
    from transformers import AutoModelForCausalLM

    from prefalign.models.prefix import build_prefix_cache, extend_attention_mask
    from prefalign.utils.atomic_files import write_text_atomically
    from prefalign.utils.environment import machine, versions

    torch.set_num_threads(1)
    load0 = os.getloadavg()
    backbone = sm.build_backbone(args.model, "fp32")
    task, batch = sm.make_batch(backbone, args.batch, 64)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    torch.manual_seed(0)
    ours = sm.build_model("ptuning-v2-score", backbone, task, args.prefix, task.num_classes)[0].eval()
    peer = sm.Peer("peft-prefix", backbone, task.num_classes, args.prefix)
    peer.eval()
    kv = ours.prefix().detach()  # (L, 2, m, kv); PEFT's embedding rows are (m, L, 2, kv)
    with torch.no_grad():
        peer.model.prompt_encoder["default"].embedding.weight.copy_(kv.permute(2, 0, 1, 3).reshape(args.prefix, -1))
        peer.model.base_model.score.weight.copy_(ours.classifier.score.weight)
    geo, config = backbone.geometry, backbone.model.config
    ext = extend_attention_mask(mask, args.prefix)
    per_example = kv.unsqueeze(0).expand(len(ids), *kv.shape)

    def transformer(model):
        return lambda: model(
            input_ids=ids, attention_mask=ext, past_key_values=build_prefix_cache(per_example, geo, config)
        )

    calls = {
        "ours": lambda: ours(input_ids=ids, attention_mask=mask),
        "peft": lambda: peer(input_ids=ids, attention_mask=mask),
        "ours backbone": transformer(backbone.model.base_model),
        "peft backbone": transformer(peer.model.base_model.model),
    }
    if geo.is_decoder:
        mapped = AutoModelForCausalLM.from_pretrained(backbone.path, dtype=torch.float32).eval()
        calls["mapped backbone"] = transformer(mapped.base_model)
    with torch.no_grad():
        torch.testing.assert_close(calls["ours"]().logits, calls["peft"]().logits, rtol=1e-4, atol=1e-4)
        times = {n: [] for n in calls}
        for r in range(args.rounds + 1):
            names = list(calls)[r % len(calls) :] + list(calls)[: r % len(calls)]
            for name in names:
                t0 = time.thread_time()
                calls[name]()
                if r:
                    times[name].append(time.thread_time() - t0)

    def ratio(a, b):
        rs = [x / y for x, y in zip(times[a], times[b])]
        return {"median": round(statistics.median(rs), 4), "min": round(min(rs), 4), "max": round(max(rs), 4)}

    record = {
        "command": "python benchmarks/prefix_path_probe.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "batch": args.batch,
        "prefix_length": args.prefix,
        "rounds": args.rounds,
        "machine": machine("cpu"),
        "versions": versions(),
        "load_average_start": list(load0),
        "load_average": list(os.getloadavg()),
        "forward_ms": {n: round(1000 * statistics.median(v), 2) for n, v in times.items()},
        "ratios": {
            "ours / peft": ratio("ours", "peft"),
            "ours backbone / peft backbone": ratio("ours backbone", "peft backbone"),
            "ours / ours backbone": ratio("ours", "ours backbone"),
            "peft / peft backbone": ratio("peft", "peft backbone"),
        }
        | ({"mapped backbone / ours backbone": ratio("mapped backbone", "ours backbone")} if geo.is_decoder else {}),
        "raw_thread_cpu_seconds": times,
    }
    print(json.dumps({k: v for k, v in record.items() if k != "raw_thread_cpu_seconds"}, indent=1))
    if args.output:
        write_text_atomically(args.output, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
