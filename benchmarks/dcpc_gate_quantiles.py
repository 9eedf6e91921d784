"""What the tau_ambiguity gate reads on a trained run: quantiles of cos x disagreement over cosine-gated pairs.

Trains DCPC once at the demo's settings (MiniLM, task rotten_tomatoes-demo, 250 steps of 16, prefixes 1e-2,
head 1e-3, PCM 1e-3: configs/compare/issue15_demo_rt_shift_seeds.yaml's DCPC row) and records, at every
training step, the pairs the gate sees: those through the cosine gate (centred cos >= tau_cos), with
cos x KL(L_A || L_B) (the default gate), cos x JS and cos x cross-entropy (eq. 4, the old gate). Writes
their quantiles over the whole run and over its last 50 steps (the trained model), and the share of
cosine-gated pairs that each candidate tau_ambiguity would let through; and, per step, the mean over the
cosine-gated pairs of L_align's two halves (the token half, a constant under eq. 27, and the prefix half
|P_A - P_B|^2 from the PCM, the only one with gradient) and of the PCM's Gaussian KL (eq. 12), and how much
the PCM's per-example outputs (p_pref, the row scales) differ across the batch:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dcpc_gate_quantiles.py --shifted --seed 0 \\
        --output benchmarks/results/dcpc_gate_quantiles_rt_a_seed0.json
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dcpc_gate_quantiles.py --shifted --seed 0 \\
        --tau-ambiguity 0.01 --output benchmarks/results/dcpc_gate_quantiles_rt_a_seed0_tau0.01.json

Issue 15's PCM question (why p_pref stays uniform) adds mu, sigma, the gradient reaching mu and the
meta-matrix's column spread to the PCM records; ``--mu-scale`` trains with ``method.pcm_mu_scale``:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dcpc_gate_quantiles.py --shifted --seed 0 \\
        --output benchmarks/results/dcpc_pcm_spread_rt_a_seed0.json
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
from prefalign.methods.dcpc.pcm import PreferenceCorrection
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
    """Wraps the losses module's cosine and disagreement functions to keep every training step's gated pairs,
    and the pair terms behind the gate (L_align's token half and prefix half, the Gaussian KL) on those pairs."""

    def __init__(self, tau_cos: float) -> None:
        self.tau_cos = tau_cos
        self.steps: list[dict[str, torch.Tensor]] = []
        self.terms: list[dict[str, float]] = []
        self.pcm: list[dict[str, float]] = []
        self._cos = None
        self._orig_cos = losses.pairwise_cosine
        self._orig_dis = losses.pairwise_disagreement
        self._orig_align = losses.pairwise_alignment
        self._orig_kl = losses.pairwise_gaussian_kl
        self._orig_gated_kl = losses.gated_gaussian_kl
        self._orig_delta = PreferenceCorrection.pairwise_delta_distance

    def _gated_mean(self, values: torch.Tensor) -> float | None:
        cos = self._cos
        if cos is None or values.shape != cos.shape:
            return None
        gate = (cos >= self.tau_cos) & losses.off_diagonal(len(cos), cos.device)
        return float(values.detach().double()[gate].mean()) if gate.any() else None

    def _term(self, name: str, values: torch.Tensor) -> None:
        if torch.is_grad_enabled():
            if not self.terms or name in self.terms[-1]:
                self.terms.append({})
            self.terms[-1][name] = self._gated_mean(values)

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

        def alignment(*args, **kwargs):
            out = self._orig_align(*args, **kwargs)
            self._term("align_token_half", out)  # DCPC passes no prefix_delta: this is the token half alone
            return out

        def gaussian_kl(mu, sigma):
            out = self._orig_kl(mu, sigma)
            self._term("kl_gaussian", out)
            return out

        def gated_kl(mu, sigma, gate):  # DCPC's default (gated_pairs): recorded from the full (B, B) matrix
            with torch.no_grad():
                full = self._orig_kl(mu, sigma)
            self._term("kl_gaussian", full)  # records in training steps only (grad enabled), as above
            return self._orig_gated_kl(mu, sigma, gate)

        orig_delta = self._orig_delta

        def delta_distance(pcm, pcm_out, *args, **kwargs):
            out = orig_delta(pcm, pcm_out, *args, **kwargs)
            self._term("align_prefix_half", out)  # |P_A - P_B|^2: the only half with gradient (eq. 27)
            if torch.is_grad_enabled():
                self.pcm.append(pcm_spread(pcm_out, pcm))
                if pcm_out.mu.requires_grad:  # the gradient of the whole objective that reaches mu, per entry
                    entry = self.pcm[-1]
                    pcm_out.mu.register_hook(lambda g: entry.update(mu_grad_rms=float(g.double().pow(2).mean().sqrt())))
            return out

        losses.pairwise_cosine, losses.pairwise_disagreement = cosine, disagreement
        losses.pairwise_alignment, losses.pairwise_gaussian_kl = alignment, gaussian_kl
        losses.gated_gaussian_kl = gated_kl
        PreferenceCorrection.pairwise_delta_distance = delta_distance
        return self

    def __exit__(self, *exc) -> None:
        losses.pairwise_cosine, losses.pairwise_disagreement = self._orig_cos, self._orig_dis
        losses.pairwise_alignment, losses.pairwise_gaussian_kl = self._orig_align, self._orig_kl
        losses.gated_gaussian_kl = self._orig_gated_kl
        PreferenceCorrection.pairwise_delta_distance = self._orig_delta


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


def pcm_spread(out, pcm=None) -> dict[str, float]:
    """How much the PCM's per-example outputs differ across a batch: p_pref (eq. 10) and, in 'gate' mode, the
    row scales s = M p_pref (eq. 11) that make each example's prefix; and why (issue 15's PCM question): the
    auxiliary classifier's mean mu (its size, and its spread across the batch, the only input-dependent
    signal) against the sampling noise sigma * eps, the softmax of mu alone (what inference uses), and, with
    ``pcm``, how much the meta-matrix's columns differ (s = M p varies with p only through that)."""
    p = out.p_pref.detach().double()
    mu, sigma = out.mu.detach().double(), out.sigma.detach().double()
    p_mu = torch.softmax(mu, dim=-1)  # eq. 10 without noise, as at inference
    spread = {
        "p_pref_std_across_batch": float(p.std(0).mean()) if len(p) > 1 else 0.0,
        "p_pref_max_abs_minus_uniform": float((p - 1.0 / p.shape[-1]).abs().max()),
        "mu_abs_mean": float(mu.abs().mean()),
        "mu_std_across_batch": float(mu.std(0).mean()) if len(mu) > 1 else 0.0,
        "mu_std_within_example": float(mu.std(1).mean()),
        "sigma_mean": float(sigma.mean()),
        "p_mu_std_across_batch_times_d": float(p_mu.std(0).mean() * p.shape[-1]) if len(p) > 1 else 0.0,
    }
    if out.scales is not None:
        s = out.scales.detach().double()
        spread["scale_std_across_batch"] = float(s.std(0).mean()) if len(s) > 1 else 0.0
        spread["scale_abs_mean"] = float(s.abs().mean())
    if pcm is not None:
        meta = pcm.meta.detach().double()
        spread["meta_abs_mean"] = float(meta.abs().mean())
        spread["meta_column_std"] = float(meta.std(1).mean())  # per row, across the d columns
        spread["aux_out_weight_std"] = float(pcm.aux[2].weight.detach().double()[: meta.shape[1]].std())
        if out.scales is not None:  # the row scales inference uses: eq. 11 on the noise-free p_pref
            d = p.shape[-1]
            s_mu = ((d * p_mu - 1.0) if getattr(pcm, "centred", False) else p_mu) @ meta.T
            spread["scale_noise_free_std_across_batch"] = float(s_mu.std(0).mean()) if len(s_mu) > 1 else 0.0
            spread["scale_noise_free_abs_mean"] = float(s_mu.abs().mean())
    return spread


def summarise_pcm(steps: list[dict[str, float]]) -> dict:
    """Mean and max over steps of each spread of the PCM's outputs."""
    names = sorted({k for step in steps for k in step})
    return {k: {"mean": sum(v) / len(v), "max": max(v)} for k in names for v in [[s[k] for s in steps if k in s]]}


def summarise_terms(terms: list[dict[str, float | None]]) -> dict:
    """Mean and max over steps of each pair term's mean over the step's cosine-gated pairs."""
    out = {}
    for name in ("align_token_half", "align_prefix_half", "kl_gaussian"):
        values = [t[name] for t in terms if t.get(name) is not None]
        out[name] = {"steps": len(values), "mean": float(sum(values) / len(values)) if values else None}
        out[name]["max"] = max(values) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shifted", action="store_true", help="train on the annotator-group-shifted labels (RT-A)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=250, help="training steps (the demo's 250)")
    parser.add_argument("--tau-ambiguity", type=float, help="train with this tau_ambiguity (default: DCPC's)")
    parser.add_argument("--mu-scale", type=float, help="train with this pcm_mu_scale (default: DCPC's)")
    parser.add_argument("--input-norm", action="store_true", help="train with method.pcm_input_norm: true")
    parser.add_argument("--gate-input", choices=("probability", "centred"), help="train with this pcm_gate_input")
    parser.add_argument("--sigma-bias", type=float, help="train with this pcm_sigma_bias")
    parser.add_argument("--pcm-learning-rate", type=float, default=1.0e-3, help="the PCM's learning rate")
    parser.add_argument("--output", help="write the record as JSON to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = demo_config(args.shifted, args.seed, args.steps, tmp + "/run")
        if args.tau_ambiguity is not None:
            cfg.method.tau_ambiguity = args.tau_ambiguity
        if args.mu_scale is not None:
            cfg.method.pcm_mu_scale = args.mu_scale
        if args.input_norm:
            cfg.method.pcm_input_norm = True
        if args.sigma_bias is not None:
            cfg.method.pcm_sigma_bias = args.sigma_bias
        if args.gate_input is not None:
            cfg.method.pcm_gate_input = args.gate_input
        cfg.method.pcm_learning_rate = args.pcm_learning_rate
        cfg.method.validate()
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
        "pair_terms_on_cos_gated_pairs": summarise_terms(rec.terms),
        "pcm_mu_scale": cfg.method.pcm_mu_scale,
        "pcm_learning_rate": cfg.method.pcm_learning_rate,
        "pcm_input_norm": cfg.method.pcm_input_norm,
        "pcm_gate_input": cfg.method.pcm_gate_input,
        "pcm_sigma_bias": cfg.method.pcm_sigma_bias,
        "pcm_outputs_first_step": rec.pcm[0] if rec.pcm else None,
        "pcm_outputs_over_steps": summarise_pcm(rec.pcm),
        f"pcm_outputs_last_{LAST_STEPS}_steps": summarise_pcm(rec.pcm[-LAST_STEPS:]),
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
