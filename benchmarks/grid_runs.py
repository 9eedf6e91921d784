"""What the benchmarks that train a compare grid's run again share: finding the run, and reading their own JSONL.
Scripts in this folder import it as ``from grid_runs import ...``."""

from __future__ import annotations

import json
from pathlib import Path


def run_id_of(specs: dict, column: str, label: str, seed: int) -> str | None:
    """The run id of ``label`` on ``column`` at ``seed`` among ``{run_id: RunSpec}`` (a label may hold '/', which
    its run id spells '-'), or None unless exactly one run matches."""
    matches = [i for i, s in specs.items() if (s.column, s.method.label, s.seed) == (column, label, seed)]
    return matches[0] if len(matches) == 1 else None


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record of a benchmark's JSONL file, in order; none when it does not exist yet."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
