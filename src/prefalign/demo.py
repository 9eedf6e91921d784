"""`prefalign demo`: P-Tuning v2 vs DCPC on clean and SST-2-P-shifted Rotten Tomatoes, with MiniLM."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from .data import TaskDataset, rotten_tomatoes
from .models.loading import load_backbone
from .shifts import polarity_shift, write_card, write_dataset_jsonl
from .training.config import load_config
from .training.run import mean_logged, train
from .utils.config_base import deep_merge
from .utils.environment import versions

# The embedded defaults: chosen on validation data so that P-Tuning v2 itself learns (docs/methods/dcpc.md).
DEMO_DEFAULTS = {
    "model": {"name": "minilm"},
    "data": {"max_length": 64},
    "method": {
        "pcm_learning_rate": 1e-3,  # the PCM moves every prefix at once: 1e-2 destabilises it
        # tau_cos stays at its default, 0.3 on centred cosines: a few percent of pairs pass on clean labels
        # (each run's share: docs/results.md, the demo); the paper's 0.85 passes none of these reviews.
    },
    "training": {
        "learning_rate": 1e-2,  # prefixes (and the PCM): P-Tuning v2's range, not section 4.1's 1e-4
        "head_learning_rate": 1e-3,
        "batch_size": 16,
        "max_steps": 250,
        "eval_steps": 50,
        "logging_steps": 25,
        "early_stopping_patience": 10,
    },
}
QUICK = {"training": {"max_steps": 6, "eval_steps": 3, "logging_steps": 3}}
METHODS = ("ptuning-v2", "dcpc")


def demo_splits(seed: int, quick: bool) -> tuple[TaskDataset, TaskDataset, TaskDataset]:
    """Train / validation / test reviews, the test movies apart: the task rotten_tomatoes-demo's splits
    (configs/compare/demo_minilm.yaml), or with ``quick`` a small sample drawn the same way."""
    return rotten_tomatoes.demo_splits(seed, rotten_tomatoes.QUICK_SIZES if quick else rotten_tomatoes.DEMO_SIZES)


def run_demo(
    output_dir: str = "runs/demo",
    model: str = "minilm",
    seed: int = 0,
    quick: bool = False,
    config_path: str | None = None,
    overrides: list[str] | None = None,
) -> dict:
    """Train both methods on both training sets, print the accuracy table, write summary files."""
    t0 = time.time()
    out = Path(output_dir)
    base = deep_merge(DEMO_DEFAULTS, QUICK) if quick else DEMO_DEFAULTS
    base = deep_merge(base, {"model": {"name": model}, "training": {"seed": seed}})
    train_clean, validation, test = demo_splits(seed, quick)
    train_shifted, card = polarity_shift(train_clean, seed=seed)
    write_card(out / "data" / "sst2-p", card)
    write_dataset_jsonl(out / "data" / "sst2-p" / "train.jsonl", train_shifted)
    print(
        f"Rotten Tomatoes: {len(train_clean)} train / {len(validation)} validation / {len(test)} test reviews; "
        f"SST-2-P shifted {card['n_changed']} training labels (fraction {card['parameters']['fraction']})"
    )
    backbone = load_backbone(base["model"]["name"])
    rows = []
    for train_name, train_set in (("clean", train_clean), ("sst2-p", train_shifted)):
        for method in METHODS:
            run_dir = out / f"{method}-{train_name}"
            cfg = load_config(
                config_path,
                list(overrides or []) + [f"training.output_dir={run_dir}"],
                base=deep_merge(base, {"method": {"name": method}}),
            )
            print(f"training {method} on {train_name} labels ...", flush=True)
            result = train(cfg, backbone=backbone, splits=(train_set, validation, test), overwrite=True)
            m = result.metrics
            print(
                f"  validation {m['validation_accuracy']:.3f}, test {m['test_accuracy']:.3f}, "
                f"{m['train_steps']} steps, {m['seconds']:.0f} s",
                flush=True,
            )
            rows.append(
                {
                    "method": method,
                    "train_labels": train_name,
                    "test_accuracy": result.metrics["test_accuracy"],
                    "gate_cos_rate": mean_logged(result.log_history, "gate_cos_rate"),
                    "validation_accuracy": result.metrics["validation_accuracy"],
                    "steps": result.metrics["train_steps"],
                    "seconds": result.metrics["seconds"],
                }
            )
    seconds = time.time() - t0
    summary = {
        "rows": rows,
        "seconds": round(seconds, 1),
        "model": base["model"]["name"],
        "seed": seed,
        "quick": quick,
        "machine": platform.platform(),
        "versions": versions(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = render_table(rows)
    (out / "summary.md").write_text(table + f"\n\nTotal time: {seconds:.0f} s\n")
    print()
    print(table)
    print(
        f"\nAccuracy on clean held-out reviews. Total time: {seconds / 60:.1f} min ({seconds:.0f} s). Results in {out}/"
    )
    return summary


def render_table(rows: list[dict]) -> str:
    """Markdown table: one row per method, one column per training-label set."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sets = list(dict.fromkeys(r["train_labels"] for r in rows))
    acc = {(r["method"], r["train_labels"]): r["test_accuracy"] for r in rows}
    gate = {(r["method"], r["train_labels"]): r.get("gate_cos_rate") for r in rows}
    lines = [
        "| method | " + " | ".join(f"trained on {s} labels" for s in sets) + " | pairs through the cosine gate |",
        "|---|" + "---|" * (len(sets) + 1),
    ]
    for m in methods:
        rates = [gate[(m, s)] for s in sets if gate.get((m, s)) is not None]
        shown = " / ".join(f"{100 * r:.1f}%" for r in rates) if rates else "n/a (no pairwise terms)"
        lines.append(f"| {m} | " + " | ".join(f"{acc[(m, s)]:.3f}" for s in sets) + f" | {shown} |")
    return "\n".join(lines)
