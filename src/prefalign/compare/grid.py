"""Run a comparison grid, resumably: each finished run leaves result.json and is skipped next time."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import platform
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..annotations.config import AnnotationConfig
from ..errors import TrainingError, UserError
from ..methods import method_class
from ..models.loading import load_backbone
from ..training.config import DataConfig, ExperimentConfig, ModelConfig, TrainingConfig
from ..training.run import checkpoint_metric, train
from ..training.splits import load_splits
from ..utils.atomic_files import write_text_atomically
from ..utils.config_base import ConfigBase, deep_merge
from ..utils.environment import hardware, versions
from .config import CompareConfig, DatasetEntry, MethodEntry, ModelEntry, refusal
from .curves import logged_means, validation_curve
from .records import upsert_record

if TYPE_CHECKING:
    from .queue import RunQueue

RESULT_FILE = "result.json"


@dataclass
class RunSpec:
    """One cell-and-seed of the grid."""

    model: ModelEntry
    dataset: DatasetEntry
    variant: str  # "original" or "shifted"
    method: MethodEntry
    seed: int

    @property
    def column(self) -> str:
        return self.dataset.name if self.variant == "original" else self.dataset.shifted_name

    @property
    def run_id(self) -> str:
        """``model/column/method/seedN``: the run's folder under ``runs/`` (a '/' inside a label becomes '-')."""
        parts = (self.model.label, self.column, self.method.label)
        return "/".join(p.replace("/", "-").replace("\\", "-") for p in parts) + f"/seed{self.seed}"

    def experiment(self, cfg: CompareConfig, output_dir: Path) -> ExperimentConfig:
        """The full train config of this run: base, then model, dataset, method and seed entries."""
        data = dict(self.dataset.data)
        if self.variant == "shifted":
            data["shift"] = dict(self.dataset.shifted)
        merged = deep_merge(cfg.base, {"model": {"name": self.model.name}, "data": data})
        merged = deep_merge(merged, {"training": self.model.training})
        merged = deep_merge(
            merged,
            {
                "method": {"name": self.method.name, **self.method.method},
                "training": self.method.training,
                "data": self.method.data,
            },
        )
        merged = deep_merge(merged, {"training": {"seed": self.seed, "output_dir": str(output_dir)}})
        return ExperimentConfig.from_dict(merged)


def plan(cfg: CompareConfig) -> list[RunSpec]:
    """Every run of the grid, in the order they execute (seeds innermost, so medians fill in early); a method that
    cannot train a dataset's task (``refusal``) has no runs there."""
    runs = []
    for model in cfg.models:
        for dataset in cfg.datasets:
            variants = ["original"] + (["shifted"] if dataset.shifted else [])
            for variant in variants:
                for method in cfg.methods:
                    if refusal(method, dataset):  # the table shows it as n/a
                        continue
                    for seed in method.seeds or cfg.seeds:
                        runs.append(RunSpec(model, dataset, variant, method, seed))
    return runs


def config_digest(experiment: ExperimentConfig | dict) -> str:
    """A short hash of a run's settings: a changed setting reruns the run, nothing else does.

    Fields at their default value are left out (the method's at its variant's defaults), so a newer
    prefalign that adds an option (with a default that keeps the old behaviour) still recognises results
    written before it existed; output_dir and progress never count. A field whose default has changed
    names the old one as ``digest_default`` (option metadata) and is compared with that instead: a run
    at the new default then counts as a new setting, and a record made at the old one still matches a
    config that sets the old value. A field with ``digest_when`` (the name of a boolean switch) counts only
    while that switch is on, so a change of its default leaves the runs that do not use it (P-Tuning v2 is
    DCPC with every switch off) matching.
    """
    data = experiment.to_dict() if isinstance(experiment, ExperimentConfig) else json.loads(json.dumps(experiment))
    data.get("training", {}).pop("output_dir", None)
    data.get("training", {}).pop("progress", None)
    for section, cls in (("model", ModelConfig), ("data", DataConfig), ("training", TrainingConfig)):
        data[section] = _without_defaults(data.get(section, {}), cls)
    if isinstance(data["data"].get("annotations"), dict):
        data["data"]["annotations"] = _without_defaults(data["data"]["annotations"], AnnotationConfig)
    method = data.get("method", {})
    if method.get("name"):
        config = method_class(method["name"]).make_config()
        fields = {f.name: f for f in dataclasses.fields(config)}
        defaults = {name: _digest_default(f, getattr(config, name)) for name, f in fields.items()}
        switches = {name: f.metadata["digest_when"] for name, f in fields.items() if "digest_when" in f.metadata}
        # a field whose switch is off cannot change the run (eq. 4's weight without eq. 4)
        switched_off = {name for name, switch in switches.items() if not method.get(switch, getattr(config, switch))}
        data["method"] = {
            k: v
            for k, v in method.items()
            if k == "name" or (k not in switched_off and (k not in defaults or v != defaults[k]))
        }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _without_defaults(section: dict, cls: type[ConfigBase]) -> dict:
    defaults = {f.name: _digest_default(f, _default(f)) for f in dataclasses.fields(cls)}
    return {k: v for k, v in section.items() if k not in defaults or v != defaults[k]}


def _digest_default(f: dataclasses.Field, default):
    """The value a digest leaves out: the field's ``digest_default`` (its default before a change) where it
    has one and ``default`` is the field's own default (a method variant that sets the field keeps its own)."""
    if "digest_default" in f.metadata and default == _default(f):
        return f.metadata["digest_default"]
    return default


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def grid_status(cfg: CompareConfig) -> list[tuple[RunSpec, ExperimentConfig, Path, dict | None]]:
    """Every run of the grid with its config, folder and finished record (None when it must run)."""
    out = []
    for spec in plan(cfg):
        run_dir = Path(cfg.output_dir) / "runs" / spec.run_id
        exp = spec.experiment(cfg, run_dir)
        out.append((spec, exp, run_dir, _finished(run_dir, config_digest(exp))))
    return out


def restore_from_records(cfg: CompareConfig, records: list[dict]) -> list[str]:
    """Put each unfinished run that ``records`` holds back under runs/ as a finished result; return their ids.

    A record stands in for a run when its run id matches and its settings digest equals the run's config's
    (a record converted from a CSV has no digest and is never restored): its result.json is the record with
    the planned config, which that digest shows it was run with. So a grid that gains a row (or a seed) on a
    fresh clone trains only what the committed records do not hold.
    """
    restored = []
    for spec, exp, run_dir, done in grid_status(cfg):
        record = next((r for r in records if r["run_id"] == spec.run_id), None)
        if done is not None or record is None or record.get("status") != "ok":
            continue
        if record.get("config_digest") != config_digest(exp):
            continue
        result = {**record, "config": exp.to_dict(), "restored_from_records": True}
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(run_dir / RESULT_FILE, json.dumps(result, indent=2))
        restored.append(spec.run_id)
    return restored


def run_grid(
    cfg: CompareConfig,
    *,
    progress: bool = False,
    log=print,
    shard: tuple[int, int] = (1, 1),
    queue: RunQueue | None = None,
    records: str | Path | None = None,
) -> list[dict]:
    """Run every missing run of ``cfg`` (skipping finished ones); return all results, grid order.

    ``shard=(i, n)`` runs only the runs whose id hashes to shard i of n (1-based), so n processes
    (cores, GPUs, machines sharing the output folder) can split one grid without running a run twice.
    A hash rather than every n-th run keeps the split even when a grid grows (say, by a seed).
    ``queue`` (compare.queue.RunQueue) hands the runs out instead, one at a time to whichever worker
    (process or machine sharing the output folder) is free, so every worker stays busy while runs remain.
    ``records``: a JSONL file that gets each finished run's compact record too (prefalign.compare.records).
    """
    out = Path(cfg.output_dir)
    status = grid_status(cfg)
    results = [done for _, _, _, done in status]
    part, parts = shard
    todo = [
        (i, spec, exp, out / "runs" / spec.run_id)
        for i, (spec, exp, _, done) in enumerate(status)
        if done is None and shard_of(spec.run_id, parts) == part
    ]
    where = f" (shard {part} of {parts})" if parts > 1 else ""
    log(
        f"compare: {len(status)} runs, {len(status) - sum(d is None for *_, d in status)} already finished, "
        f"{len(todo)} to run{where} -> {out}"
    )
    preflight([(spec, exp) for _, spec, exp, _ in todo])
    backbones: dict[str, object] = {}
    for n, (index, spec, exp, run_dir) in enumerate(todo if queue is None else queue.take(todo), 1):
        log(f"[{n}/{len(todo)}] {spec.run_id} ...")
        if spec.model.name not in backbones:
            backbones.clear()  # one backbone in memory at a time
            backbones[spec.model.name] = load_backbone(
                exp.model.name, trust_remote_code=exp.model.trust_remote_code, dtype=exp.model.dtype
            )
        exp.training.progress = progress
        t0 = time.time()
        try:
            # train a copy: a method's prepare may fill in its config (PTLoss's searched eps), and the record
            # must keep the settings as planned, or the finished run would not match its config again
            result = train(copy.deepcopy(exp), backbone=backbones[spec.model.name], overwrite=True)
            metrics = {**result.metrics, **logged_means(result.log_history)}
            record = _record(spec, exp, metrics, _count(result.model), "ok", None, time.time() - t0)
            record["curve"] = validation_curve(result.log_history)
        except TrainingError as exc:  # a diverged run is a result too: the table marks it
            record = _record(spec, exp, {}, None, "failed", str(exc), time.time() - t0)
        except UserError:
            raise
        except Exception as exc:  # keep the grid going; the traceback goes beside the run
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text(traceback.format_exc())
            record = _record(spec, exp, {}, None, "failed", f"{type(exc).__name__}: {exc}", time.time() - t0)
        if queue is not None and not queue.holds(spec.run_id):  # judged gone and taken over meanwhile
            log(f"    {spec.run_id} was taken over by another worker; this result is dropped")
            continue
        write_text_atomically(run_dir / RESULT_FILE, json.dumps(record, indent=2))
        if records is not None:
            upsert_record(records, record)
        _tidy(run_dir, cfg.keep)
        results[index] = record
        metric = record["metrics"].get(f"test_{spec.dataset.metric}")
        shown = f"test {spec.dataset.metric} {metric:.4f}" if metric is not None else record["status"]
        log(f"    {shown} in {record['seconds']:.0f} s")
    return results


def shard_of(run_id: str, parts: int) -> int:
    """The shard (1..parts) a run belongs to: a stable hash of its id, the same in every process."""
    return int(hashlib.sha256(run_id.encode()).hexdigest(), 16) % parts + 1


def preflight(runs: list[tuple[RunSpec, ExperimentConfig]]) -> None:
    """Read every dataset (and shift) the runs need once, so a missing file or a bad shift option
    fails in one line before hours of training rather than in the middle of the grid."""
    seen = set()
    for spec, exp in runs:
        key = (spec.dataset.name, spec.variant, exp.training.best_metric)
        if key in seen:
            continue
        seen.add(key)
        try:
            checkpoint_metric(exp.training.best_metric, *load_splits(exp.data, exp.training.seed))
        except UserError as exc:
            raise type(exc)(f"{spec.column}: {exc}") from None


def _count(model) -> int:
    return int(sum(p.numel() for p in model.trainable_parameters().values()))


def _record(
    spec: RunSpec,
    exp: ExperimentConfig,
    metrics: dict,
    tunable: int | None,
    status: str,
    error: str | None,
    seconds: float,
) -> dict:
    return {
        "run_id": spec.run_id,
        "model": spec.model.label,
        "model_name": spec.model.name,
        "dataset": spec.dataset.name,
        "variant": spec.variant,
        "column": spec.column,
        "method": spec.method.label,
        "method_name": spec.method.name,
        "seed": spec.seed,
        "metric": spec.dataset.metric,
        "status": status,
        "error": error,
        "metrics": metrics,
        "tunable_params": tunable,
        "seconds": round(seconds, 1),
        "config_digest": config_digest(exp),
        "config": exp.to_dict(),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "hardware": hardware(),
        "versions": versions(),
    }


def _finished(run_dir: Path, digest: str) -> dict | None:
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("status") != "ok" or "config" not in record:
        return None
    return record if config_digest(record["config"]) == digest else None


def _tidy(run_dir: Path, keep: str) -> None:
    if keep in ("adapter", "metrics"):
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    if keep == "metrics":
        shutil.rmtree(run_dir / "adapter", ignore_errors=True)
