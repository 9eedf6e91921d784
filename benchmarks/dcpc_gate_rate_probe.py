"""How many pairs DCPC's ambiguity gate passes in speed_memory.py's step: the share of the B (B - 1) ordered pairs
on which the gated Gaussian KL (eq. 12, ``method.pair_reduction: gated_pairs``) is computed.

    OMP_NUM_THREADS=1 python benchmarks/dcpc_gate_rate_probe.py --output benchmarks/results/dcpc_gate_rate_probe.json

Same backbone, batch, DCPC settings, seed and AdamW step as speed_memory.py's rotation; ``--steps`` training steps
(speed_memory's untimed round plus its timed rounds), each step's ``gate_cos_rate`` and ``gate_ambiguity_rate``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rates(model_name: str, batch_size: int, steps: int, prefix: int, max_length: int) -> list[dict]:
    import speed_memory as sm
    import torch

    backbone = sm.build_backbone(model_name, "fp32")
    task, batch = sm.make_batch(backbone, batch_size, max_length)
    torch.manual_seed(0)
    model, params = sm.build_model("dcpc", backbone, task, prefix, task.num_classes)
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    out = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        result = model(**batch)
        result.loss.backward()
        opt.step()
        out.append({k: round(float(result.terms[k]), 6) for k in ("gate_cos_rate", "gate_ambiguity_rate")})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="tiny:16:16,tiny:64:16,minilm:16:7,minilm:64:7", help="model:batch:steps,...")
    p.add_argument("--prefix", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--output")
    args = p.parse_args()
    import torch

    from prefalign.utils.atomic_files import write_text_atomically
    from prefalign.utils.environment import machine, versions

    torch.set_num_threads(1)
    rows = []
    for run in args.runs.split(","):
        model_name, batch, steps = run.split(":")
        per_step = rates(model_name, int(batch), int(steps), args.prefix, args.max_length)
        amb = sorted(s["gate_ambiguity_rate"] for s in per_step)
        rows.append({"model": model_name, "batch": int(batch), "steps": per_step})
        print(f"{model_name:7s} B={batch:<3s} ambiguity gate rate per step: min {amb[0]:.3f} max {amb[-1]:.3f}")
    record = {
        "command": "python benchmarks/dcpc_gate_rate_probe.py " + " ".join(sys.argv[1:]),
        "machine": machine("cpu"),
        "versions": versions(),
        "load_average": list(os.getloadavg()),
        "rows": rows,
    }
    if args.output:
        write_text_atomically(args.output, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
