"""Does P-Tuning v2 learn on MiniLM? Runs settings side by side on Rotten Tomatoes.

    python benchmarks/prefix_learning.py "method.name=ptuning-v2" "method.name=ptuning-v2,method.prefix_init=random"
    PREFALIGN_SEEDS=0,1,2 python benchmarks/prefix_learning.py ...   # several seeds per setting

Each argument is a comma-separated list of --set overrides on top of the demo's defaults, plus
optionally ``shift=sst2-p`` to train on the demo's polarity-shifted copy of the training set
(MiniLM, 2,000 training / 400 validation / 1,000 test reviews split by movie, 250 steps of batch
16, 64 tokens). Prints validation and test accuracy, steps and seconds per setting, and appends
one JSON line per run to benchmarks/results/prefix_learning.jsonl.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from prefalign.configuration import deep_merge
from prefalign.training.config import load_config
from prefalign.demo import DEMO_DEFAULTS, demo_splits, mean_logged
from prefalign.methods import method_config
from prefalign.models.loading import load_backbone
from prefalign.environment import versions
from prefalign.training.run import train
from prefalign.shifts import polarity_shift


SEEDS = [int(s) for s in os.environ.get("PREFALIGN_SEEDS", "0").split(",")]


def main(settings: list[str]) -> None:
    backbone = load_backbone("minilm")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    for seed, setting in [(s, x) for x in settings for s in SEEDS]:
        train_set, validation, test = demo_splits(seed, quick=False)
        items = [x for x in setting.split(",") if x]
        if "shift=sst2-p" in items:
            train_set = polarity_shift(train_set, seed=seed)[0]
        splits = (train_set, validation, test)
        overrides = [x for x in items if not x.startswith("shift=")] + ["training.output_dir=runs/prefix_learning",
                                                            "training.progress=false"]
        cfg = load_config(None, overrides, base=deep_merge(DEMO_DEFAULTS, {"training": {"seed": seed}}))
        t0 = time.time()
        result = train(cfg, backbone=backbone, splits=splits)
        row = {"setting": setting, "seed": seed, "method": cfg.method_name,
               "method_config": method_config(cfg.method_name, cfg.method_params).to_dict(),
               "training": cfg.training.to_dict(), "validation_accuracy": round(result.metrics["validation_accuracy"], 4),
               "test_accuracy": round(result.metrics["test_accuracy"], 4), "steps": result.metrics["train_steps"],
               "gate_cos_rate_mean": mean_logged(result.log_history, "gate_cos_rate"),
               "seconds": round(time.time() - t0, 1), "machine": platform.platform(), "versions": versions()}
        print(json.dumps({k: row[k] for k in ("setting", "seed", "validation_accuracy", "test_accuracy", "steps",
                                              "gate_cos_rate_mean", "seconds")}),
              flush=True)
        with open(out / "prefix_learning.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["method.name=ptuning-v2"])
