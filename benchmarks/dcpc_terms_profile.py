"""What each of DCPC's pairwise loss terms costs per step, forward and backward, alone: which part of DCPC's step
over P-Tuning v2's grows with the batch.

    OMP_NUM_THREADS=1 python benchmarks/dcpc_terms_profile.py --output benchmarks/results/dcpc_terms_profile.json

Each term of eq. 13 (``methods/dcpc/losses.py``) on random inputs of the shapes DCPC feeds it at a batch size B
for a backbone's geometry (hidden d, layers L, prefix m): every (B, B) pair matrix, the gradient through it to its
inputs, then ``reduce_pairs`` (the gate: half the pairs at random; the gated Gaussian KL computes only those
pairs, the default with ``method.pair_reduction: gated_pairs``). Median CPU time of the compute thread over
``--repeats`` calls, one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from op_profile import median_ms  # noqa: E402

# (hidden d, layers L) of speed_memory.py's backbones; kv width = d for both (no GQA).
GEOMETRIES = {"tiny": (64, 2), "minilm": (384, 6)}


def terms(b: int, d: int, layers: int, m: int, classes: int = 2) -> dict:
    """name -> a call running one term's forward and backward on fresh leaves of DCPC's shapes."""
    import torch

    from prefalign.methods.dcpc import losses

    g = torch.Generator().manual_seed(0)
    emb = torch.randn(b, d, generator=g).requires_grad_()
    probs = torch.softmax(torch.randn(b, classes, generator=g), -1).requires_grad_()
    states = torch.randn(b, layers, d, generator=g)
    mu = torch.randn(b, d, generator=g).requires_grad_()
    sigma = (torch.rand(b, d, generator=g) + 0.1).requires_grad_()
    scales = (0.1 * torch.randn(b, m, generator=g)).requires_grad_()
    row_sq = torch.rand(layers, m, generator=g)
    gate = torch.rand(b, b, generator=g) > 0.5
    sparse = torch.rand(b, b, generator=g) > 0.98  # the tau_ambiguity gate's 2.0% in a logged training run
    every = torch.ones(b, b, dtype=torch.bool)  # the gated KL's worst case

    def reduce(x):
        return losses.reduce_pairs(x, gate).backward()

    return {
        "ambiguity (eq. 3-5)": lambda: reduce(losses.pairwise_ambiguity(emb, probs, 0.3, center=True)[0]),
        "alignment, token half (eq. 6-7)": lambda: losses.pairwise_alignment(states, None, normalize=True),
        "alignment, prefix half (row scales)": lambda: reduce(
            losses.pairwise_row_scale_sq_distance(scales, row_sq, "mean", 2 * m * d)
        ),
        "KL, gaussian, full (B, B) (all_pairs)": lambda: reduce(losses.pairwise_gaussian_kl(mu, sigma)),
        "KL, gaussian, gated, half of the pairs": lambda: losses.gated_gaussian_kl(mu, sigma, gate).backward(),
        "KL, gaussian, gated, 2% of pairs": lambda: losses.gated_gaussian_kl(mu, sigma, sparse).backward(),
        "KL, gaussian, gated, every pair": lambda: losses.gated_gaussian_kl(mu, sigma, every).backward(),
        "KL, softmax (method.pcm_kl: softmax)": lambda: reduce(losses.pairwise_categorical_kl(torch.softmax(mu, -1))),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,minilm")
    p.add_argument("--batches", default="16,64")
    p.add_argument("--prefix", type=int, default=16)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--output")
    args = p.parse_args()
    import torch

    from prefalign.utils.atomic_files import write_text_atomically
    from prefalign.utils.environment import machine, versions

    torch.set_num_threads(1)
    rows = []
    for model in args.models.split(","):
        d, layers = GEOMETRIES[model]
        for b in (int(x) for x in args.batches.split(",")):
            for name, fn in terms(b, d, layers, args.prefix).items():
                ms = median_ms(fn, args.repeats, warmup=3, digits=4)
                rows.append({"model": model, "batch": b, "term": name, "ms": ms})
                print(f"{model:7s} B={b:<3d} {name:38s} {rows[-1]['ms']:8.3f} ms", flush=True)
    record = {
        "command": "python benchmarks/dcpc_terms_profile.py " + " ".join(sys.argv[1:]),
        "machine": machine("cpu"),
        "versions": versions(),
        "load_average": list(os.getloadavg()),
        "repeats": args.repeats,
        "prefix_length": args.prefix,
        "rows": rows,
    }
    if args.output:
        write_text_atomically(args.output, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
