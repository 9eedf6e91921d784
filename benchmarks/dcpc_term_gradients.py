"""Which of eq. 13's terms move which of DCPC's parameters: per term, the gradient it sends to the static prefix,
the PCM and the rest (the head), on training batches of one compare run, after its first step and after all its
steps. Issue 15's measured mechanism for ablation rows that repeat DCPC.

    OMP_NUM_THREADS=2 python benchmarks/dcpc_term_gradients.py --config configs/compare/issue15_smollm2.yaml \\
        --run "SmolLM2-135M/RT-A/DCPC (lambda1 0.1)/seed0" --output benchmarks/results/dcpc_term_gradients_smollm2.json

The run is trained as the grid trains it (same settings, seed and data; ``--steps`` also trains a copy stopped
after that many steps). Then, in eval mode (the PCM's mean, no sampling, no dropout, so every pass sees the same
numbers), each of ``--batches`` training batches of the grid's batch size is passed once per term: the gradient
of L_task alone, and of L_task + lambda_t x term_t with the other lambdas at zero, whose difference is
lambda_t x grad term_t exactly as eq. 13 weighs it. Norms are taken over each parameter group.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from provenance import provenance

TERMS = {"ambiguity": "lambda_ambiguity", "align": "lambda_align", "kl": "lambda_kl"}


def group_of(name: str) -> str:
    """The parameter group a trainable parameter belongs to."""
    if name.startswith("pcm.") or ".pcm." in name:
        return "pcm"
    if "prefix" in name:
        return "prefix"
    return "head"


def term_gradients(model, batch: dict, lambdas: dict) -> tuple[dict, dict]:
    """{term: {group: norm}} of each weighted term's gradient on ``batch``, and the batch's logged terms."""
    import torch

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}

    def grads(weights: dict) -> tuple[dict, dict]:
        for key, value in weights.items():
            setattr(model.config, key, value)
        model.zero_grad(set_to_none=True)
        out = model(**batch)
        out.loss.backward()
        got = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
        return got, {k: float(v) for k, v in out.terms.items()}

    off = dict.fromkeys(TERMS.values(), 0.0)
    task, logged = grads(off)
    norms = {"task": _group_norms(task)}
    for term, key in TERMS.items():
        with_term, _ = grads({**off, key: lambdas[key]})
        norms[term] = _group_norms({n: with_term[n] - task[n] for n in task})
    for key, value in lambdas.items():  # the run's weights back
        setattr(model.config, key, value)
    return norms, logged


def _group_norms(grads: dict) -> dict:
    import torch

    sums: dict[str, float] = {}
    for name, g in grads.items():
        group = group_of(name)
        sums[group] = sums.get(group, 0.0) + float(torch.sum(g.double() ** 2))
    return {group: total**0.5 for group, total in sums.items()}


def measure(exp, backbone, batches: int) -> dict:
    """Train ``exp`` as the grid would, then the per-term gradient norms on its first training batches."""
    import torch

    from prefalign.data.collator import Collator
    from prefalign.training.run import train
    from prefalign.training.splits import load_splits

    t0 = time.time()
    # train loads the splits itself, after seeding, exactly as the grid's run did; passing them in would skip that
    # load and could shift the initialisation, so the measured run would no longer be the grid's. Load them again.
    result = train(copy.deepcopy(exp), backbone=backbone, overwrite=True)
    model = result.model.eval()
    train_set, _, _ = load_splits(exp.data, exp.training.seed)
    geometry = backbone.geometry
    collator = Collator(
        backbone.tokenizer, geometry, train_set.num_classes, exp.data.prompt(geometry.is_decoder), exp.data.max_length
    )
    lambdas = {key: getattr(model.config, key) for key in TERMS.values()}
    size = exp.training.batch_size
    rows = []
    for i in range(batches):
        batch = collator(train_set.examples[i * size : (i + 1) * size])
        batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels", "target_dist")}
        with torch.enable_grad():
            norms, logged = term_gradients(model, batch, lambdas)
        rows.append({"batch": i, "norms": norms, "terms": logged})
    return {
        "steps": result.metrics["train_steps"],
        "test_accuracy": result.metrics.get("test_accuracy"),
        "validation_accuracy": result.metrics.get("validation_accuracy"),
        "lambdas": lambdas,
        "seconds": round(time.time() - t0, 1),
        "batches": rows,
        "medians": summarise(rows),
    }


def summarise(rows: list[dict]) -> dict:
    """Per term and group: the median norm over batches and the median ratio to the task loss's norm."""
    out: dict = {}
    for term in ["task", *TERMS]:
        for group in rows[0]["norms"]["task"]:
            norms = [r["norms"][term].get(group, 0.0) for r in rows]
            ratios = [r["norms"][term].get(group, 0.0) / max(r["norms"]["task"][group], 1e-30) for r in rows]
            out[f"{term}/{group}"] = {"norm": statistics.median(norms), "ratio_to_task": statistics.median(ratios)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="compare YAML holding the run")
    p.add_argument("--run", required=True, help="the run id, as `prefalign compare --dry-run` lists it")
    p.add_argument("--batches", type=int, default=8, help="training batches to measure (default 8)")
    p.add_argument("--steps", type=int, default=1, help="also measure a copy stopped after this many steps")
    p.add_argument("--output", required=True, help="JSON to write")
    args = p.parse_args(argv)

    from prefalign.compare import load_compare_config
    from prefalign.compare.grid import plan
    from prefalign.models.loading import load_backbone

    cfg = load_compare_config(args.config)
    found = [spec for spec in plan(cfg) if spec.run_id == args.run]
    if not found:
        print(f"error: no run {args.run!r} in {args.config} (see prefalign compare --dry-run)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        exp = found[0].experiment(cfg, Path(tmp) / "run")
        backbone = load_backbone(exp.model.name, trust_remote_code=exp.model.trust_remote_code, dtype=exp.model.dtype)
        early = copy.deepcopy(exp)
        early.training.max_steps = args.steps
        early.training.eval_steps = args.steps
        early.training.output_dir = str(Path(tmp) / "early")
        stages = {f"after {args.steps} step(s)": measure(early, backbone, args.batches)}
        stages[f"after {exp.training.max_steps} steps (the grid's run)"] = measure(exp, backbone, args.batches)
    record = {
        "config": args.config,
        "run": args.run,
        **provenance("dcpc_term_gradients.py", argv),
        "stages": stages,
    }
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    for stage, d in stages.items():
        print(f"{stage}: test accuracy {d['test_accuracy']}")
        for key, v in d["medians"].items():
            print(f"  {key:20s} norm {v['norm']:.3e}  ratio to task {v['ratio_to_task']:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
