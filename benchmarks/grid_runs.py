"""What the benchmarks that train a compare grid's run again share: finding the runs, changing one setting, and
reading their own JSONL. Scripts in this folder import it as ``from grid_runs import ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def run_id_of(specs: dict, column: str, label: str, seed: int) -> str | None:
    """The run id of ``label`` on ``column`` at ``seed`` among ``{run_id: RunSpec}`` (a label may hold '/', which
    its run id spells '-'), or None unless exactly one run matches."""
    matches = [i for i, s in specs.items() if (s.column, s.method.label, s.seed) == (column, label, seed)]
    return matches[0] if len(matches) == 1 else None


def row_run_ids(specs: dict, column: str, labels: list[str], seed: int, config: str) -> list[str] | None:
    """The run id of each row label on ``column`` at ``seed``, or None after a one-line error naming the first
    label that does not match exactly one run of ``config``."""
    ids = [run_id_of(specs, column, label, seed) for label in labels]
    for label, run_id in zip(labels, ids):
        if run_id is None:
            print(f"error: no single run for {column} / {label} / seed {seed} in {config}", file=sys.stderr)
            return None
    return ids


def add_row_arguments(parser, rows_help: str) -> None:
    """--config, --column, --rows and --seed: the grid rows a benchmark trains or builds again."""
    parser.add_argument("--config", required=True, help="compare YAML holding the rows")
    parser.add_argument("--column", required=True, help="the column, e.g. SST-2")
    parser.add_argument("--rows", nargs="+", required=True, help=rows_help)
    parser.add_argument("--seed", type=int, default=0)


def grid_rows(args) -> tuple | None:
    """(compare config, ``{run_id: RunSpec}``, the run ids of ``args.rows``) for the arguments
    ``add_row_arguments`` adds, or None after the one-line error of ``row_run_ids``."""
    from prefalign.compare import load_compare_config
    from prefalign.compare.grid import plan

    cfg = load_compare_config(args.config)
    specs = {spec.run_id: spec for spec in plan(cfg)}
    ids = row_run_ids(specs, args.column, args.rows, args.seed, args.config)
    return None if ids is None else (cfg, specs, ids)


def with_setting(exp, setting: str):
    """``exp`` (an ExperimentConfig) with one dotted ``KEY=VALUE`` set, as ``--set`` would."""
    from prefalign.training.config import ExperimentConfig
    from prefalign.utils.config_base import deep_merge, parse_overrides

    return ExperimentConfig.from_dict(deep_merge(exp.to_dict(), parse_overrides([setting])))


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record of a benchmark's JSONL file, in order; none when it does not exist yet."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
