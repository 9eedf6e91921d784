"""Shared helpers for the reward-model tests: toy preference pairs over the tiny vocabulary, configs."""

from __future__ import annotations

import random
from pathlib import Path

from helpers_cli import write_jsonl

POSITIVE = "good great fine lovely superb".split()
NEGATIVE = "bad awful poor dull boring".split()
FILLER = "the movie film plot actor scene story".split()


def toy_pairs(n: int, seed: int = 0, flip: float = 0.0) -> list[dict]:
    """Pairs whose chosen text holds a positive word and rejected a negative one; ``flip`` of them swapped."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        stem = f"{rng.choice(FILLER)} {rng.choice(FILLER)} was"
        chosen, rejected = f"{stem} {rng.choice(POSITIVE)}", f"{stem} {rng.choice(NEGATIVE)}"
        if i < round(flip * n):
            chosen, rejected = rejected, chosen
        rows.append({"chosen": chosen, "rejected": rejected})
    return rows


def reward_config(tmp_path: Path, model: str = "tiny", flips=(0.0, 0.0, 1.0), n: int = 24, **sections) -> dict:
    """A reward config as a dict: one toy source per flip rate, clean validation and test pairs."""
    sources = []
    for k, flip in enumerate(flips):
        path = write_jsonl(tmp_path / f"src{k}.jsonl", toy_pairs(n, seed=10 + k, flip=flip))
        sources.append({"name": f"s{k}-flip{int(flip * 100)}", "path": str(path), "format": "pairs"})
    val = write_jsonl(tmp_path / "val.jsonl", toy_pairs(16, seed=99))
    test = write_jsonl(tmp_path / "test.jsonl", toy_pairs(16, seed=98))
    cfg = {
        "sources": sources,
        "validation": [{"name": "val", "path": str(val)}],
        "test": [{"name": "test", "path": str(test)}],
        "model": {"name": model, "max_length": 16},
        "dorm": {"prior_steps": 4, "mc_passes": 4},
        "training": {
            "output_dir": str(tmp_path / "run"),
            "steps": 6,
            "batch_size": 4,
            "log_every": 2,
            "checkpoint_every": 0,
            "learning_rate": 1e-2,
        },
    }
    for section, values in sections.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return cfg
