"""How far a PEFT low-rank adapter moved the frozen weights in a compare run: per adapted module, the Frobenius
norm of its weight update (PEFT's ``get_delta_weight``), alone and relative to the module's frozen weight; for
AdaLoRA also how many singular values its budget kept and the sizes of P, Q and E. Issue 15's question: why does
AdaLoRA not learn BoolQ in the Tables 1-2 grid's 40 steps, when LoRA does?

    OMP_NUM_THREADS=1 python benchmarks/adapter_update_size.py --config configs/compare/paper_grid_smollm2.yaml \\
        --runs "SmolLM2-135M/SST-2/AdaLoRA/seed0" "SmolLM2-135M/SST-2/LoRA (r=4)/seed0" \\
        --output benchmarks/results/adapter_update_size_smollm2_sst2.json

Each run is trained again as the grid trains it (same settings, seed and data), then measured.
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


def update_sizes(model) -> dict:
    """Medians over the adapted modules of |delta W|_F and |delta W|_F / |W|_F; AdaLoRA's kept ranks and the
    Frobenius norms of its P (lora_A), Q (lora_B) and the largest |E|."""
    norms, relative, kept, p_norm, q_norm, e_max = [], [], [], [], [], []
    for _, module in model.named_modules():
        if not (hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")):
            continue
        delta = module.get_delta_weight("default").float()
        norms.append(float(delta.norm()))
        relative.append(norms[-1] / float(module.base_layer.weight.float().norm()))
        if hasattr(module, "lora_E"):
            e = module.lora_E["default"].detach()
            kept.append(int((e != 0).sum()))
            p_norm.append(float(module.lora_A["default"].detach().norm()))
            q_norm.append(float(module.lora_B["default"].detach().norm()))
            e_max.append(float(e.abs().max()))
    if not norms:
        raise SystemExit("error: the run's method has no PEFT low-rank modules (LoRA or AdaLoRA) to measure")
    out = {
        "modules": len(norms),
        "delta_norm_median": statistics.median(norms),
        "delta_relative_median": statistics.median(relative),
    }
    if kept:
        out.update(
            kept_rank_median=statistics.median(kept),
            p_norm_median=statistics.median(p_norm),
            q_norm_median=statistics.median(q_norm),
            e_abs_max_median=statistics.median(e_max),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="compare YAML holding the runs")
    p.add_argument("--runs", nargs="+", required=True, help="run ids, as `prefalign compare --dry-run` lists them")
    p.add_argument("--output", required=True, help="JSON to write")
    args = p.parse_args(argv)

    from prefalign.compare import load_compare_config
    from prefalign.compare.grid import plan
    from prefalign.models.loading import load_backbone
    from prefalign.training.run import train

    cfg = load_compare_config(args.config)
    specs = {spec.run_id: spec for spec in plan(cfg)}
    missing = [r for r in args.runs if r not in specs]
    if missing:
        print(f"error: no run {missing[0]!r} in {args.config} (see prefalign compare --dry-run)", file=sys.stderr)
        return 2
    runs, backbone = [], None
    for run_id in args.runs:
        with tempfile.TemporaryDirectory() as tmp:
            exp = specs[run_id].experiment(cfg, Path(tmp) / "run")
            if backbone is None:
                backbone = load_backbone(
                    exp.model.name, trust_remote_code=exp.model.trust_remote_code, dtype=exp.model.dtype
                )
            t0 = time.time()
            result = train(copy.deepcopy(exp), backbone=backbone, overwrite=True)
            logged = [e for e in result.log_history if "loss" in e]
            record = {
                "run": run_id,
                "test_accuracy": result.metrics.get("test_accuracy"),
                "train_loss": result.metrics.get("train_loss"),
                "loss_task_logged": [e.get("loss_task") for e in logged],
                **update_sizes(result.model),
                "seconds": round(time.time() - t0, 1),
            }
        runs.append(record)
        print(json.dumps(record), flush=True)
    out = {
        "config": args.config,
        **provenance("adapter_update_size.py", argv),
        "runs": runs,
    }
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
