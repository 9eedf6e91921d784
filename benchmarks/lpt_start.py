"""Where a method starts before its first step: the cross-entropy, accuracy and share of each predicted class of
the untrained method on training and validation items, beside the untuned model's. Issue 15's question: why is
LPT the lowest row of the Tables 1-2 CPU grid (SST-2 67.7, COPA at chance) when prompt tuning, which also puts
soft tokens before the input, is not?

    OMP_NUM_THREADS=1 python benchmarks/lpt_start.py --config configs/compare/paper_grid_smollm2.yaml \\
        --column SST-2 --rows "Prompt tuning" "P-Tuning v2" LPT \\
        --output benchmarks/results/lpt_start_smollm2_sst2.json

Each row is built as the grid builds it (same settings and seed) and scored without training; so is the untuned
model (``zero-shot``, the label words read off the LM head) and, for LPT, two readings that take its parts apart:
the placeholders alone (its hook removed, so they pass the insert layer as they are; zero placeholders stay zero
at every layer) and the generated prompt; ``--variant KEY=VALUE`` builds each LPT row once more with one setting
changed. For LPT it also measures the generated prompt's scale beside the hidden states it sits among and the ones
it overwrites (root mean square per position, entering the insert layer). Training and validation items only; no
test item.

"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from grid_runs import add_row_arguments, grid_rows, with_setting
from provenance import provenance

# The config option that says how many positions a method places before the input.
ADDED_POSITIONS = ("prompt_length", "num_virtual_tokens", "prefix_length")


def scores(model, collator, examples, batch_size: int) -> dict:
    """Mean cross-entropy with the hard labels, accuracy, and the share of items predicted as each class."""
    import numpy as np

    from prefalign.inference import predict_proba

    probs = predict_proba(model, collator, examples, batch_size=batch_size)
    labels = np.array([ex.hard_label() for ex in examples])
    predicted = probs.argmax(-1)
    return {
        "items": len(examples),
        "cross_entropy": float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()),
        "accuracy": float((predicted == labels).mean()),
        "predicted_share": [float((predicted == c).mean()) for c in range(probs.shape[1])],
    }


@contextmanager
def insert_layer_scale(method):
    """LPT: while the block runs, collect the RMS of the hidden states entering the insert layer: the real tokens',
    the placeholders' (all, and the first position's, where an attention sink would sit) and the generated prompt's
    that overwrites them; yields the dict the medians are written into when the block ends."""
    from prefalign.methods.baselines.hooks import find_layers, layer_hidden

    generator = method.generator
    layer = find_layers(method.classifier.model, method.geo)[method.insert_layer]
    seen: dict[str, list[float]] = {"real": [], "placeholder": [], "placeholder_first": [], "prompt": []}

    def look(module, args, kwargs):
        hidden = layer_hidden(args, kwargs)
        mask = generator.real_mask
        if mask is None or hidden.shape[1] != mask.shape[1] + generator.length:
            return None
        real = hidden[:, generator.length :].float()
        rms = real.pow(2).mean(-1).sqrt()[mask.to(real.device).bool()]
        seen["real"] += rms.tolist()
        held = hidden[:, : generator.length].float().pow(2).mean(-1).sqrt()  # what the prompt overwrites
        seen["placeholder"] += held.flatten().tolist()
        seen["placeholder_first"] += held[:, 0].tolist()
        prompt = generator.generate(hidden).float()
        seen["prompt"] += prompt.pow(2).mean(-1).sqrt().flatten().tolist()
        return None

    medians: dict[str, float] = {}
    handle = layer.register_forward_pre_hook(look, with_kwargs=True, prepend=True)  # before LPT overwrites
    try:
        yield medians
    finally:
        handle.remove()
    medians.update({f"{k}_rms_median": statistics.median(v) for k, v in seen.items()})


def attention_share(method, collator, examples, batch_size: int, added: int) -> list[float]:
    """Per layer, the mean share of attention the scoring position (the last real token) puts on the ``added``
    positions a method places before the input (soft tokens, placeholders or prefix keys), over heads and items.
    Eager attention, so the weights can be read; switched back afterwards."""
    import torch

    backbone = method.classifier.model
    before = backbone.config._attn_implementation
    backbone.set_attn_implementation("eager")
    attention = [m for name, m in backbone.named_modules() if name.endswith("self_attn")]
    if not attention:  # BERT's and GPT-2's attention modules return their weights differently
        raise SystemExit("error: attention shares are read from LLaMA-style 'self_attn' modules; this model has none")
    shares: list[list[float]] = [[] for _ in attention]
    real: dict[str, torch.Tensor] = {}

    def look(index):
        def hook(module, args, output):
            weights = output[1].float()  # (B, H, Q, K)
            mask = real["mask"]
            last = weights.shape[2] - mask.shape[1] + (mask * torch.arange(mask.shape[1])).argmax(-1)
            rows = weights[torch.arange(weights.shape[0]), :, last]  # (B, H, K)
            shares[index] += rows[..., :added].sum(-1).mean(-1).tolist()

        return hook

    handles = [m.register_forward_hook(look(i)) for i, m in enumerate(attention)]
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                batch = collator(examples[start : start + batch_size])
                real["mask"] = batch["attention_mask"]
                method(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for h in handles:
            h.remove()
        backbone.set_attn_implementation(before)
    return [statistics.fmean(s) for s in shares]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_row_arguments(p, "row labels, as in the grid's table")
    p.add_argument("--train-items", type=int, default=256, help="training items to score (the first of the split)")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also build each LPT row with this dotted setting (e.g. method.placeholder_init=text); repeatable",
    )
    p.add_argument("--output", required=True, help="JSON to write")
    args = p.parse_args(argv)

    import torch

    from prefalign.data import Collator, build_task_spec
    from prefalign.methods import build_method
    from prefalign.models.loading import load_backbone
    from prefalign.training.config import ExperimentConfig
    from prefalign.training.splits import load_splits

    found = grid_rows(args)
    if found is None:
        return 2
    cfg, specs, ids = found
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exps = [specs[run_id].experiment(cfg, Path(tmp) / "run") for run_id in ids]
        untuned = ExperimentConfig.from_dict({**exps[0].to_dict(), "method": {"name": "zero-shot"}})
        first = exps[0]
        backbone = load_backbone(
            first.model.name, trust_remote_code=first.model.trust_remote_code, dtype=first.model.dtype
        )
        train_set, val_set, _ = load_splits(first.data, args.seed)
        items = {"train": train_set.examples[: args.train_items], "validation": val_set.examples}
        prompt = first.data.prompt(backbone.geometry.is_decoder)
        spec = build_task_spec(train_set, backbone.geometry, backbone.tokenizer, prompt)
        collator = Collator(backbone.tokenizer, backbone.geometry, train_set.num_classes, prompt, first.data.max_length)
        batch = first.training.eval_batch_size
        builds = [("untuned model (zero-shot)", untuned), *zip(args.rows, exps)]
        for label, exp in list(builds[1:]):
            if exp.method.name == "lpt":
                builds += [(f"{label}, {variant}", with_setting(exp, variant)) for variant in args.variant]
        for label, exp in builds:
            torch.manual_seed(args.seed)  # as train() seeds before it builds the method
            method = build_method(copy.deepcopy(exp.method), backbone, spec).eval()
            readings = [(label, method)]
            if exp.method.name == "lpt":
                silent = copy.deepcopy(method)
                silent.remove_hooks()  # the placeholders pass layer k as they are
                readings.append((f"{label}: without its generator", silent))
            for name, model in readings:
                row = {"row": name, "method": exp.method.name}
                row["train"] = scores(model, collator, items["train"], batch)
                measured = name == label and exp.method.name == "lpt"  # the scale read while validation is scored
                with insert_layer_scale(method) if measured else nullcontext({}) as scale:
                    row["validation"] = scores(model, collator, items["validation"], batch)
                added = next((getattr(exp.method, key) for key in ADDED_POSITIONS if hasattr(exp.method, key)), None)
                if added:
                    row["added_positions"] = added
                    row["attention_share"] = attention_share(model, collator, items["validation"], batch, added)
                if measured:
                    row.update(insert_layer=method.insert_layer, **scale)
                rows.append(row)
                share = row.get("attention_share")
                half = len(share) // 2 if share else 0
                print(
                    (
                        f"{name}: attention on the {added} added positions, layers < {half} "
                        f"{statistics.fmean(share[:half]):.3f}, >= {half} {statistics.fmean(share[half:]):.3f}"
                    )
                    if share
                    else f"{name}: adds no positions"
                )
                train_scores, val_scores = row["train"], row["validation"]
                print(
                    f"{name}: train CE {train_scores['cross_entropy']:.3f} acc {100 * train_scores['accuracy']:.1f}, "
                    f"validation CE {val_scores['cross_entropy']:.3f} acc {100 * val_scores['accuracy']:.1f}"
                )
    out = {
        "config": args.config,
        "column": args.column,
        "seed": args.seed,
        "model": first.model.name,
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
        **provenance("lpt_start.py", argv),
    }
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
