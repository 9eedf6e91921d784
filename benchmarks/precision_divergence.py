"""How far two runs that differ by almost nothing end apart, in fp32 and under bf16 autocast. Issue 15's question:
on the GPU (bf16) "DCPC w/o CLPA" ends 0.7-1.3 points from DCPC in some cells, on CPU (fp32) never; is that CLPA,
whose gradient on the PCM is 1.6e-8 of the task loss's (benchmarks/dcpc_term_gradients.py), or the precision?

    OMP_NUM_THREADS=1 python benchmarks/precision_divergence.py --config configs/compare/issue15_smollm2.yaml \\
        --column SST-2 --rows "DCPC (lambda1 0.1)" "DCPC w/o CLPA" --control method.pcm_learning_rate=0.001000001 \\
        --records benchmarks/results/precision_divergence_smollm2_sst2.jsonl

Every row trains once per precision exactly as the grid trains it, the same seed and data, with
``training.bf16`` off and on; ``--control`` trains the first (reference) row once more with one value nudged (above:
the PCM's learning rate by one part in a million, a perturbation of M's updates of CLPA's size without CLPA). Each
run then scores every test item in fp32 (the same scoring for both precisions, so only training differs), and is
compared with the reference run of its precision: test items predicted differently, the largest change of a test
item's probabilities, and the relative distance of the trainable parameters (prefix, PCM, head). Records append
one line per run (``train_losses``: the logged eq. 13 totals, [step, loss], which include each row's own terms); a
run already in ``--records`` is not trained again.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

from dcpc_term_gradients import group_of
from grid_runs import add_row_arguments, grid_rows, read_jsonl, with_setting
from provenance import provenance

PRECISIONS = ("fp32", "bf16")


def train_and_score(exp, backbone) -> tuple[dict, dict, list[list[float]]]:
    """(record fields, trainable parameters, test probabilities) of one run trained as the grid trains it."""
    import numpy as np

    from prefalign.data.collator import Collator
    from prefalign.inference import predict_proba
    from prefalign.training.run import train
    from prefalign.training.splits import load_splits

    result = train(copy.deepcopy(exp), backbone=backbone, overwrite=True)
    model = result.model.eval().float()
    _, _, test_set = load_splits(exp.data, exp.training.seed)
    geometry = backbone.geometry
    collator = Collator(
        backbone.tokenizer, geometry, test_set.num_classes, exp.data.prompt(geometry.is_decoder), exp.data.max_length
    )
    probs = predict_proba(model, collator, test_set, batch_size=exp.training.eval_batch_size)
    labels = np.array([ex.hard_label() for ex in test_set.examples])
    params = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = [[h["step"], round(h["loss"], 6)] for h in result.log_history if "loss" in h and "eval_loss" not in h]
    fields = {
        "test_accuracy": float((probs.argmax(-1) == labels).mean()),
        "trainer_test_accuracy": result.metrics.get("test_accuracy"),
        "validation_accuracy": result.metrics.get("validation_accuracy"),
        "train_losses": losses,
        "seconds": round(result.seconds, 1),
    }
    return fields, params, probs.tolist()


def compare_runs(params: dict, probs: list, ref_params: dict, ref_probs: list) -> dict:
    """Test items predicted differently, the largest probability change, and per parameter group the relative
    distance |a - b| / |b| of the trainable parameters."""
    import numpy as np
    import torch

    a, b = np.array(probs), np.array(ref_probs)
    out = {
        "items_predicted_differently": int((a.argmax(-1) != b.argmax(-1)).sum()),
        "max_probability_change": float(np.abs(a - b).max()),
    }
    for group in ("prefix", "pcm", "head"):
        names = [n for n in ref_params if group_of(n) == group and n in params]
        if names:
            diff = torch.sqrt(sum(((params[n] - ref_params[n]) ** 2).sum() for n in names))
            norm = torch.sqrt(sum((ref_params[n] ** 2).sum() for n in names))
            out[f"{group}_relative_distance"] = float(diff / norm) if norm > 0 else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_row_arguments(p, "row labels; the first is the reference")
    p.add_argument("--control", metavar="KEY=VALUE", help="train the reference row again with this value set")
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument("--records", required=True, help="JSONL to append to (runs already there are skipped)")
    args = p.parse_args(argv)
    if args.control and "=" not in args.control:
        p.error("--control takes KEY=VALUE, e.g. method.pcm_learning_rate=0.001000001")

    from prefalign.models.loading import load_backbone

    found = grid_rows(args)
    if found is None:
        return 2
    cfg, specs, ids = found
    runs = [(run_id, None) for run_id in ids] + ([(ids[0], args.control)] if args.control else [])
    path = Path(args.records)
    done = {(r["run"], r["control"], r["precision"]): r for r in read_jsonl(path)}
    backbone = None
    for precision in args.precisions:
        if all((run_id, control, precision) in done for run_id, control in runs):
            continue
        reference = None  # (params, probs) of the reference run at this precision, trained in this call
        for run_id, control in runs:
            key = (run_id, control, precision)
            if key in done and reference is not None:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                exp = specs[run_id].experiment(cfg, Path(tmp) / "run")
                exp.training.bf16 = precision == "bf16"
                if control:
                    exp = with_setting(exp, args.control)
                if backbone is None:
                    backbone = load_backbone(
                        exp.model.name, trust_remote_code=exp.model.trust_remote_code, dtype=exp.model.dtype
                    )
                fields, params, probs = train_and_score(exp, backbone)
            if reference is None:
                reference = (params, probs)
                if key in done:  # the reference was only retrained to compare the others with it
                    continue
            record = {
                "run": run_id,
                "control": control,
                "precision": precision,
                "reference": ids[0],
                **fields,
                **compare_runs(params, probs, *reference),
                "test_probabilities": [[round(x, 6) for x in row] for row in probs],
                **provenance("precision_divergence.py", argv),
            }
            done[key] = record
            with path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            what = run_id + (f" + {control}" if control else "")
            print(
                f"{what} [{precision}]: test {100 * record['test_accuracy']:.1f}, "
                f"{record['items_predicted_differently']} items differ from the reference, "
                f"prefix distance {record.get('prefix_relative_distance', 0):.2e}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
