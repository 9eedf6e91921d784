"""Where a model loses accuracy under the annotator-group shift: per test group (the shift's subset crossed with
the clean label), the share of test items predicted as the group's label, and how many of the relabelled
training items the model follows. Issue 15's question: why do prefix methods lose more on SST-2-A than LoRA?

    OMP_NUM_THREADS=1 python benchmarks/shift_groups.py --config configs/compare/issue15_smollm2.yaml \\
        --clean SST-2 --shifted SST-2-A --methods "P-Tuning v2" "DCPC (lambda1 0.1)" "LoRA (r=4) lr 3e-3" Full-FT \\
        --seeds 0 --records benchmarks/results/shift_groups_smollm2_sst2.jsonl

Each run is trained again as the grid trains it (same settings, seed and data, so its test accuracy must equal
the grid's record; the record keeps both), then it predicts every test item and every training item the shift
relabelled. The clean run predicts those same training items (same sample, same seed), which shows what the
model would say without the group. Records append one line per run; a run already in ``--records`` is skipped.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from grid_runs import read_jsonl, row_run_ids
from provenance import provenance


def groups(examples, shift: dict) -> dict[str, list[int]]:
    """Test item indices per group: in the shift's subset or not, crossed with the clean label ("toward" is the
    group's label). The subset's items not labelled "toward" are the ones the group relabels in training."""
    from prefalign.shifts.annotator_group import in_subset

    out: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        inside = in_subset(ex.text, shift["subset"], shift["max_words"])
        toward = ex.hard_label() == shift["toward_index"]
        key = f"{'subset' if inside else 'rest'}, {'toward' if toward else 'other'}"
        out.setdefault(key, []).append(i)
    return out


def shift_parameters(exp) -> dict:
    """The annotator-group shift's settings for a shifted run, defaults filled in."""
    from prefalign.shifts.registry import shift_parameters as defaults

    if exp.data.shift is None or exp.data.shift.name != "annotator-group":
        raise SystemExit(f"error: {exp.data.task} is not under the annotator-group shift")
    params = {**defaults("annotator-group"), **(exp.data.shift.params or {})}
    return params


def measure(
    exp, backbone, shift: dict, relabelled_texts: list[str] | None, attention: bool = False, padding: str | None = None
) -> dict:
    """Train ``exp`` as the grid would; per-group test predictions and its predictions on the relabelled items
    (with ``attention``, each test item's attention share on the prefix, per layer; with ``padding``, each test
    item's P(group's label) again with that text appended, and with it prepended)."""
    import numpy as np

    from prefalign.data.collator import Collator
    from prefalign.data.examples import TaskDataset
    from prefalign.inference import predict_proba
    from prefalign.training.run import train
    from prefalign.training.splits import load_splits

    t0 = time.time()
    result = train(copy.deepcopy(exp), backbone=backbone, overwrite=True)
    model = result.model.eval()
    train_set, _, test_set = load_splits(exp.data, exp.training.seed)
    names = list(test_set.label_names)
    toward = names.index(shift["toward"]) if isinstance(shift["toward"], str) else int(shift["toward"])
    shift = {**shift, "toward_index": toward, "toward_label": names[toward]}
    geometry = backbone.geometry
    collator = Collator(
        backbone.tokenizer, geometry, test_set.num_classes, exp.data.prompt(geometry.is_decoder), exp.data.max_length
    )
    probs = predict_proba(model, collator, test_set, batch_size=exp.training.eval_batch_size)
    labels = np.array([ex.hard_label() for ex in test_set.examples])
    predicted = probs.argmax(-1)
    per_group = {}
    for key, idx in sorted(groups(test_set.examples, shift).items()):
        idx = np.array(idx)
        per_group[key] = {
            "n": len(idx),
            "accuracy": float((predicted[idx] == labels[idx]).mean()),
            "predicted_toward": float((predicted[idx] == toward).mean()),
            "mean_p_toward": float(probs[idx, toward].mean()),
        }
    if relabelled_texts is None:  # the shifted run: its own relabelled items
        relabelled = [ex for ex in train_set.examples if ex.meta.get("shifted")]
    else:  # the clean run: the same items, found by text
        wanted = set(relabelled_texts)
        relabelled = [ex for ex in train_set.examples if ex.text in wanted]
    items = {  # per test item, in order: for analyses by length without training again
        "words": [len(ex.text.split()) for ex in test_set.examples],
        "label": labels.tolist(),
        "p_toward": [round(float(p), 5) for p in probs[:, toward]],
    }
    train_probs = predict_proba(
        model, collator, TaskDataset(relabelled, names, "relabelled"), batch_size=exp.training.eval_batch_size
    )
    if attention:
        items["prefix_attention"] = prefix_attention(model, collator, test_set.examples, exp.training.eval_batch_size)
    if padding:
        for where in ("appended", "prepended"):
            data = TaskDataset(padded(test_set.examples, padding, where), names, where)
            p = predict_proba(model, collator, data, batch_size=exp.training.eval_batch_size)
            items[f"p_toward_{where}"] = [round(float(x), 5) for x in p[:, toward]]
    return {
        "toward_label": names[toward],
        "test_accuracy": float((predicted == labels).mean()),
        "grid_test_accuracy": result.metrics.get("test_accuracy"),
        "validation_accuracy": result.metrics.get("validation_accuracy"),
        "test_predicted_toward": float((predicted == toward).mean()),
        "test_share_toward": float((labels == toward).mean()),
        "train_share_toward": float(np.mean([ex.hard_label() == toward for ex in train_set.examples])),
        "groups": per_group,
        "relabelled_n": len(relabelled),
        "relabelled_predicted_toward": float((train_probs.argmax(-1) == toward).mean()),
        "relabelled_texts": [ex.text for ex in relabelled],
        "test_items": items,
        "seconds": round(time.time() - t0, 1),
    }


def padded(examples, text: str, where: str) -> list:
    """``examples`` with ``text`` appended to (``where`` "appended") or put before ("prepended") each one's text;
    labels and every other field kept."""
    if where not in ("appended", "prepended"):
        raise ValueError(f"where must be appended or prepended, got {where!r}")
    join = (lambda t: f"{t} {text}") if where == "appended" else (lambda t: f"{text} {t}")
    return [dataclasses.replace(ex, text=join(ex.text)) for ex in examples]


def prefix_attention(model, collator, examples, batch_size: int) -> list[list[float]]:
    """Per example and layer: the share of attention the scoring (last real) token gives the prefix's keys,
    averaged over heads. Run with eager attention (its weights are returned; SDPA's are not), then put back."""
    import torch
    from transformers import PreTrainedModel

    hf = next(m for m in model.modules() if isinstance(m, PreTrainedModel))
    before = hf.config._attn_implementation
    hf.set_attn_implementation("eager")
    caught: list = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: caught.append(out[1]))
        for name, module in hf.named_modules()
        if name.endswith("self_attn")
    ]
    shares = []
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                batch = collator(examples[start : start + batch_size])
                caught.clear()
                model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")})
                last = batch["attention_mask"].long().sum(-1) - 1
                rows = torch.arange(len(last))
                per_layer = []
                for weights in caught:  # (B, heads, T, m + T)
                    m = weights.shape[-1] - weights.shape[-2]
                    per_layer.append(weights[rows, :, last, :m].sum(-1).mean(-1))  # (B,)
                shares += torch.stack(per_layer, 1).tolist()
    finally:
        for h in hooks:
            h.remove()
        hf.set_attn_implementation(before)
    return [[round(x, 5) for x in row] for row in shares]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="compare YAML holding the runs")
    p.add_argument("--clean", required=True, help="the clean column, e.g. SST-2")
    p.add_argument("--shifted", required=True, help="its annotator-group column, e.g. SST-2-A")
    p.add_argument("--methods", nargs="+", required=True, help="row labels, as `prefalign compare --dry-run` shows")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--records", required=True, help="JSONL to append to (runs already there are skipped)")
    p.add_argument(
        "--prefix-attention",
        action="store_true",
        help="also record, per test item and layer, the scoring token's attention share on the prefix's keys "
        "(prefix methods; a pass with eager attention after the scored one)",
    )
    p.add_argument(
        "--padding",
        metavar="TEXT",
        help="also score every test item with TEXT appended, and with it prepended: does a short item lose the "
        "group's label once it is long?",
    )
    args = p.parse_args(argv)

    from prefalign.compare import load_compare_config
    from prefalign.compare.grid import plan
    from prefalign.models.loading import load_backbone

    cfg = load_compare_config(args.config)
    specs = {spec.run_id: spec for spec in plan(cfg)}
    path = Path(args.records)
    done = {r["run"]: r for r in read_jsonl(path)}
    backbone = None
    for method in args.methods:
        for seed in args.seeds:
            ids = {}
            for column in (args.shifted, args.clean):  # shifted first: the clean run needs its relabelled items
                found = row_run_ids(specs, column, [method], seed, args.config)
                if found is None:
                    return 2
                ids[column] = found[0]
            with tempfile.TemporaryDirectory() as tmp:
                shifted_exp = specs[ids[args.shifted]].experiment(cfg, Path(tmp) / "shifted")
                shift = shift_parameters(shifted_exp)
                for column, exp_dir in ((args.shifted, "shifted"), (args.clean, "clean")):
                    run_id = ids[column]
                    if run_id in done:
                        continue
                    exp = specs[run_id].experiment(cfg, Path(tmp) / exp_dir)
                    if backbone is None:
                        backbone = load_backbone(
                            exp.model.name, trust_remote_code=exp.model.trust_remote_code, dtype=exp.model.dtype
                        )
                    texts = None if column == args.shifted else done[ids[args.shifted]]["relabelled_texts"]
                    record = {
                        "run": run_id,
                        "role": "shifted" if column == args.shifted else "clean",
                        "config": args.config,
                        "shift": shift,
                        **measure(exp, backbone, shift, texts, args.prefix_attention, args.padding),
                        **({"padding": args.padding} if args.padding else {}),
                        **provenance("shift_groups.py", argv),
                    }
                    done[run_id] = record
                    with path.open("a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    g = ", ".join(f"{k} {100 * v['accuracy']:.1f}" for k, v in record["groups"].items())
                    grid = record["grid_test_accuracy"]
                    print(f"{run_id}: test {100 * record['test_accuracy']:.1f} (grid {grid}); {g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
