"""Compact run records: one JSON line per run of a grid, committed beside the CSV under benchmarks/results/.

A run's result.json (under the grid's ``runs/``, never committed) holds its whole config. Its record keeps
what the tables, charts and pair counts need, and what a reader needs to judge them: every metric the run
logged (validation and test, the means of DCPC's gate rates and of every loss term), its validation curve,
its seconds, tunable parameters, the settings digest (config_digest), versions and hardware. About 1.5 KB
a run (a DCPC run with two validation points; each further point adds about 80 bytes), so a 54-run grid's
file stays near 100 KB and goes into git with its curves inline.

``prefalign compare --records FILE`` writes (replaces) a finished run's record in FILE, and with
``--report-only`` takes each run that runs/ does not hold from FILE, so the tables rebuild on a fresh clone.

Records converted from a CSV of an older grid (records_from_csv) hold only what the CSV held (the test
score of the dataset's metric, validation accuracy, steps, seconds, tunable parameters); their
``config_digest`` is None and their ``source`` names the CSV, so a report can say what was not kept.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import UserError
from ..utils.atomic_files import write_text_atomically

# A result.json's fields that a record keeps ("config" is replaced by its digest).
RECORD_FIELDS = (
    "run_id",
    "model",
    "model_name",
    "dataset",
    "variant",
    "column",
    "method",
    "method_name",
    "seed",
    "metric",
    "status",
    "error",
    "metrics",
    "tunable_params",
    "seconds",
    "config_digest",
    "hardware",
    "machine",
    "versions",
    "curve",
    "source",
)


class RecordsError(UserError):
    """A records file that cannot be read."""


def compact(result: dict) -> dict:
    """The record of one finished run: result.json's fields without the full config (its digest stays).
    A result without a run id (made by hand) gets the grid's id of its model, column, method and seed."""
    record = {k: result[k] for k in RECORD_FIELDS if k in result}
    if "run_id" not in record:
        record["run_id"] = run_id(result["model"], result["column"], result["method"], result["seed"])
    return record


def run_id(model: str, column: str, method: str, seed: int) -> str:
    """The grid's run id (prefalign.compare.grid.RunSpec.run_id) from its parts."""
    parts = (model, column, method)
    return "/".join(p.replace("/", "-").replace("\\", "-") for p in parts) + f"/seed{seed}"


def read_records(path: str | Path) -> list[dict]:
    """Every record of a JSONL file, in file order; a line that is not a JSON object is an error."""
    path = Path(path)
    if not path.is_file():
        raise RecordsError(f"records file {path} not found: give the JSONL that `prefalign compare --records` wrote")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or "run_id" not in record:
            raise RecordsError(f"{path} line {n} is not a run record (a JSON object with a run_id): fix or delete it")
        out.append(record)
    return out


def dumps(records: list[dict]) -> str:
    """JSONL text, one record a line, sorted by run id (keys in the record's order, which the reports keep,
    e.g. the versions line of table.md): a rewritten file diffs cleanly."""
    rows = sorted(records, key=lambda r: r["run_id"])
    return "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in rows)


def write_records(path: str | Path, records: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, dumps(records))
    return path


def rewrite_grid_records(path: str | Path, status: list[tuple], records: list[dict]) -> Path:
    """Write a grid's finished runs to ``path``, keeping the records it holds of runs outside this grid (another
    seed, row or column run with a narrower config, e.g. ``--set seeds=[1]``), so a records file only grows.
    ``status`` is prefalign.compare.grid.grid_status's list: the grid's runs."""
    path = Path(path)
    grid_run_ids = {spec.run_id for spec, *_ in status}
    others = [r for r in read_records(path) if r["run_id"] not in grid_run_ids] if path.is_file() else []
    return write_records(path, others + records)


def upsert_record(path: str | Path, result: dict) -> Path:
    """Put one run's record into the file, replacing an older record of the same run id."""
    path = Path(path)
    records = read_records(path) if path.is_file() else []
    record = compact(result)
    return write_records(path, [r for r in records if r["run_id"] != record["run_id"]] + [record])


def fill_from_records(status: list[tuple], records: list[dict], digest) -> list[dict | None]:
    """The grid's results, each run from runs/ when finished there, else from ``records``.

    ``status`` is prefalign.compare.grid.grid_status's list and ``digest`` its config_digest. A record
    stands in for a run when its run id matches and its settings digest equals the run's config's
    (a changed setting leaves the run unfinished, as in the grid); a record converted from a CSV has no
    digest and matches on its run id alone.
    """
    by_id = {r["run_id"]: r for r in records}
    out = []
    for spec, exp, _, done in status:
        if done is None:
            record = by_id.get(spec.run_id)
            if record is not None and record.get("config_digest") not in (None, digest(exp)):
                record = None
            done = record
        out.append(done)
    return out


CSV_INTS = ("seed", "tunable_params", "train_steps")


def records_from_csv(path: str | Path) -> list[dict]:
    """Records from a results.csv of `prefalign compare` (what an older grid committed instead of records).

    The CSV kept one test metric per run, so each record's metrics are ``test_<metric>``,
    ``validation_accuracy`` and ``train_steps``, and nothing else.
    """
    path = Path(path)
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            metrics = {}
            if row.get("test_score"):
                metrics[f"test_{row['metric']}"] = float(row["test_score"])
            if row.get("validation_accuracy"):
                metrics["validation_accuracy"] = float(row["validation_accuracy"])
            if row.get("train_steps"):
                metrics["train_steps"] = int(float(row["train_steps"]))
            seed = int(row["seed"])
            out.append(
                {
                    "run_id": run_id(row["model"], row["column"], row["method"], seed),
                    "model": row["model"],
                    "dataset": row["dataset"],
                    "variant": row["variant"],
                    "column": row["column"],
                    "method": row["method"],
                    "method_name": row["method_name"],
                    "seed": seed,
                    "metric": row["metric"],
                    "status": row["status"],
                    "error": row.get("error") or None,
                    "metrics": metrics,
                    "tunable_params": int(row["tunable_params"]) if row.get("tunable_params") else None,
                    "seconds": float(row["seconds"]) if row.get("seconds") else 0.0,
                    "config_digest": None,
                    "source": f"converted from {path.name} (the CSV kept one test metric per run)",
                }
            )
    return out
