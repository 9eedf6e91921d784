"""benchmarks/annotation_pairs.py: seed-matched wins of one target over another, on hand-made runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "annotation_pairs.py"


def load_script():
    spec = importlib.util.spec_from_file_location("annotation_pairs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(method, seed, f1, soft_ce, column="MD", status="ok"):
    return {"column": column, "method": method, "seed": seed, "status": status,
            "metrics": {"test_f1": f1, "test_soft_ce": soft_ce}}


def test_pairs_match_method_and_seed_and_respect_the_direction_of_each_metric():
    pairs = load_script()
    runs = [run("LoRA / majority", 0, 0.60, 0.58), run("LoRA / soft", 0, 0.65, 0.55),  # soft wins both
            run("LoRA / majority", 1, 0.70, 0.50), run("LoRA / soft", 1, 0.70, 0.52),  # tie on F1, loses CE
            run("DCPC / majority", 0, 0.40, 0.70), run("DCPC / soft", 0, 0.50, 0.60),  # soft wins both
            run("DCPC / soft", 2, 0.90, 0.10),  # no majority run with seed 2: not a pair
            run("PTv2 / majority", 0, 0.1, 0.9), run("PTv2 / soft", 0, 0.9, 0.1, status="failed")]
    wins = pairs.paired_wins(runs, "majority", "soft")
    assert wins == {("MD", "f1"): (2, 3), ("MD", "soft_ce"): (2, 3)}
    assert pairs.paired_wins(runs, "soft", "majority") == {("MD", "f1"): (0, 3), ("MD", "soft_ce"): (1, 3)}
