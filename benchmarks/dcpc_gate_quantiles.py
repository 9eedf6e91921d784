"""What the tau_ambiguity gate reads on a trained run: quantiles of cos x disagreement over cosine-gated pairs.

Trains DCPC once at the demo's settings (MiniLM, task rotten_tomatoes-demo, 250 steps of 16, prefixes 1e-2,
head 1e-3, PCM 1e-3: configs/compare/issue15_demo_rt_shift_seeds.yaml's DCPC row) and records, at every
training step, the pairs the gate sees: those through the cosine gate (centred cos >= tau_cos), with
cos x KL(L_A || L_B) (the default gate), cos x JS and cos x cross-entropy (eq. 4, the old gate). Writes
their quantiles over the whole run and over its last 50 steps (the trained model), and the share of
cosine-gated pairs that each candidate tau_ambiguity would let through:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dcpc_gate_quantiles.py --shifted --seed 0 \\
        --output benchmarks/results/dcpc_gate_quantiles_rt_a_seed0.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time

import torch

from prefalign.methods.dcpc import losses
from prefalign.training.config import load_config
from prefalign.training.run import train
from prefalign.utils.atomic_files import write_text_atomically
from prefalign.utils.environment import versions

QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99, 0.999)
CANDIDATES = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
LAST_STEPS = 50


def demo_config(shifted: bool, seed: int, steps: int, out_dir: str) -> object:
    """The demo's DCPC run (issue-15 seeds grid), on clean or annotator-group-shifted labels."""
    data = {"task": "rotten_tomatoes-demo", "max_length": 64}
    if shifted:
        data.update(shift={"name": "annotator-group"}, shift_splits=["train", "validation"])
    base = {
        "model": {"name": "minilm"},
        "data": data,
        "method": {"name": "dcpc", "pcm_learning_rate": 1.0e-3},
        "training": {
            "output_dir": out_dir,
            "learning_rate": 1.0e-2,
            "head_learning_rate": 1.0e-3,
            "batch_size": 16,
            "max_steps": steps,
            "eval_steps": 50,
            "logging_steps": 25,
            "early_stopping_patience": 10,
            "seed": seed,
        },
    }
    return load_config(base=base)


class GateRecorder:
    """Wraps the losses module's cosine and disagreement functions to keep every training step's gated pairs."""

    def __init__(self, tau_cos: float) -> None:
        self.tau_cos = tau_cos
        self.steps: list[dict[str, torch.Tensor]] = []
        self._cos = None
        self._orig_cos = losses.pairwise_cosine
        self._orig_dis = losses.pairwise_disagreement

    def __enter__(self) -> GateRecorder:
        def cosine(embeddings, center=False):
            cos = self._orig_cos(embeddings, center=center)
            self._cos = cos.detach()
            return cos

        def disagreement(probs, kind="kl"):
            out = self._orig_dis(probs, kind)
            if torch.is_grad_enabled() and self._cos is not None:  # training steps only, not evaluation
                cos = self._cos
                gate = (cos >= self.tau_cos) & losses.off_diagonal(len(cos), cos.device)
                p = probs.detach().float()
                self.steps.append(
                    {
                        "pairs": torch.tensor(len(cos) * (len(cos) - 1)),
                        "kl": (cos * self._orig_dis(p, "kl"))[gate],
                        "js": (cos * self._orig_dis(p, "js"))[gate],
                        "cross_entropy": (cos * self._orig_dis(p, "cross_entropy"))[gate],
                    }
                )
            return out

        losses.pairwise_cosine, losses.pairwise_disagreement = cosine, disagreement
        return self

    def __exit__(self, *exc) -> None:
        losses.pairwise_cosine, losses.pairwise_disagreement = self._orig_cos, self._orig_dis


def summarise(steps: list[dict[str, torch.Tensor]]) -> dict:
    """Quantiles of each gate score over the cosine-gated pairs, and the share each candidate tau passes."""
    pairs = int(sum(int(s["pairs"]) for s in steps))
    out: dict = {"steps": len(steps), "pairs": pairs}
    for kind in ("kl", "js", "cross_entropy"):
        values = torch.cat([s[kind] for s in steps]).double() if steps else torch.zeros(0)
        entry: dict = {"cos_gated_pairs": len(values), "cos_gate_rate": len(values) / max(pairs, 1)}
        if len(values):
            qs = torch.quantile(values, torch.tensor(QUANTILES, dtype=torch.float64))
            entry["quantiles"] = {str(q): round(float(v), 6) for q, v in zip(QUANTILES, qs, strict=True)}
            entry["max"] = round(float(values.max()), 6)
            entry["pass_share_of_cos_gated"] = {
                str(t): round(float((values > t).double().mean()), 6) for t in CANDIDATES
            }
            entry["pass_rate_of_all_pairs"] = {str(t): round(float((values > t).sum()) / pairs, 6) for t in CANDIDATES}
        out[kind] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shifted", action="store_true", help="train on the annotator-group-shifted labels (RT-A)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=250, help="training steps (the demo's 250)")
    parser.add_argument("--output", help="write the record as JSON to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = demo_config(args.shifted, args.seed, args.steps, tmp + "/run")
        with GateRecorder(cfg.method.tau_cos) as rec:
            result = train(cfg)
    record = {
        "command": "python benchmarks/dcpc_gate_quantiles.py " + " ".join(sys.argv[1:]),
        "column": "RT-A" if args.shifted else "RT",
        "seed": args.seed,
        "model": "minilm",
        "task": "rotten_tomatoes-demo",
        "tau_cos": cfg.method.tau_cos,
        "tau_ambiguity": cfg.method.tau_ambiguity,
        "gate_divergence": cfg.method.gate_divergence,
        "whole_run": summarise(rec.steps),
        f"last_{LAST_STEPS}_steps": summarise(rec.steps[-LAST_STEPS:]),
        "validation_accuracy": result.metrics.get("validation_accuracy"),
        "test_accuracy": result.metrics.get("test_accuracy"),
        "seconds": round(time.time() - t0, 1),
        "machine": platform.platform() + ", 2 shared CPU cores, 1 torch thread",
        "versions": versions(),
    }
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    print(text)
    if args.output:
        write_text_atomically(args.output, text)


if __name__ == "__main__":
    main()
