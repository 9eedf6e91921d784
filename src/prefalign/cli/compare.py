"""`prefalign compare`: methods x datasets (and their shifted twins) x seeds into the paper's tables."""

from __future__ import annotations

import argparse
import sys

from .common import add_config_args

COMMAND = "compare"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="methods x datasets (and their shifted twins) x seeds into the paper's tables"
    )
    add_config_args(
        p,
        required=True,
        config_help="compare YAML (see configs/compare/)",
        set_help="override a compare config value, e.g. --set base.training.max_steps=20 (repeatable)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs (only --shard's, given one) and which are finished; train nothing",
    )
    p.add_argument(
        "--shard",
        metavar="I/N",
        type=_shard,
        default=(1, 1),
        help="take only the runs whose id hashes to shard I of N (fixed parts; the queue already shares a grid "
        "between workers)",
    )
    p.add_argument(
        "--workers",
        metavar="N",
        type=_positive(int),
        default=1,
        help="run N processes on this machine, each taking the next free run from the grid's queue (default 1); "
        "prefalign compare started on other machines with the same output folder joins the same queue",
    )
    p.add_argument(
        "--stale-after",
        metavar="SECONDS",
        type=_positive(float),
        default=600.0,
        help="take over a run claimed from another machine whose claim has not been refreshed for this long "
        "(default 600; a worker refreshes its claim every 30 s, or every SECONDS/10 when shorter; on this machine "
        "a gone process is noticed at once)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the tables, CSV and charts from the runs finished so far, train nothing",
    )
    p.add_argument(
        "--records",
        metavar="FILE",
        help="JSONL of compact run records (every metric, loss-term means, gate rates, curve, seconds, settings "
        "digest, versions, hardware), e.g. benchmarks/results/compare_NAME.jsonl: a training run puts each finished "
        "run's record there (give it to one process only when sharding); with --report-only, runs that runs/ does "
        "not hold are read from it (same run id and settings), so the tables rebuild on a fresh clone, and FILE is "
        "rewritten with every finished run, keeping its records of runs outside this grid (e.g. other seeds); a "
        "training run first takes every run FILE holds with the same id and settings as finished, so a grid that "
        "gains a row or seed trains only the new runs. The output folder always gets records.jsonl",
    )
    p.add_argument("--progress", action="store_true", help="show each run's progress bar")


def _shard(text: str) -> tuple[int, int]:
    """``--shard 2/3`` -> (2, 3)."""
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 1/2, got {text!r}") from None
    if not 1 <= part <= parts:
        raise argparse.ArgumentTypeError(f"I must be between 1 and N in I/N, got {text!r}")
    return part, parts


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def run(args) -> int:
    import shlex
    from pathlib import Path

    from ..compare import load_compare_config, write_reports
    from ..compare.grid import config_digest, grid_status, restore_from_records, shard_of
    from ..compare.queue import run_workers
    from ..compare.records import compact, fill_from_records, read_records, rewrite_grid_records

    cfg = load_compare_config(args.config, args.overrides)
    command = (
        "prefalign compare " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["compare"]
        else f"prefalign compare --config {args.config}"
    )
    if args.dry_run:  # with --shard, only the runs that shard takes
        status = grid_status(cfg)
        held = fill_from_records(status, read_records(args.records), config_digest) if args.records else []
        part, parts = args.shard
        for i, (spec, _, _, done) in enumerate(status):
            if shard_of(spec.run_id, parts) != part:
                continue
            state = "done" if done else "done (records)" if held and held[i] else "todo"
            print(f"{state}  {spec.run_id}")
        return 0
    if args.report_only:  # a grid cut short (or still running elsewhere) is tabulated as it stands
        status = grid_status(cfg)
        if args.records:
            results = fill_from_records(status, read_records(args.records), config_digest)
            rewrite_grid_records(args.records, status, [compact(r) for r in results if r is not None])
        else:
            results = [done for _, _, _, done in status]
        paths = write_reports(cfg, results, command)
    else:  # every worker ends by writing the reports from the records on disk: the last has them all
        if args.records and Path(args.records).is_file():  # a grown grid trains only what FILE lacks
            restored = restore_from_records(cfg, read_records(args.records))
            if restored:
                print(f"compare: {len(restored)} runs taken from {args.records} (same run id and settings)")
        queue = run_workers(cfg, args.workers, progress=args.progress, shard=args.shard, stale_after=args.stale_after)
        paths = queue.write_reports(cfg, command)
        if args.records:  # every finished run so far, rewritten atomically: the last worker to finish has them all
            status = grid_status(cfg)
            rewrite_grid_records(args.records, status, [compact(r) for _, _, _, r in status if r is not None])
    print()
    print(paths["table"].read_text())
    print(
        f"results: {paths['csv']}, {paths['json']}, {paths['records']}, chart: {paths['chart']}"
        + (f", validation curves: {paths['curves']}" if "curves" in paths else "")
    )
    return 0
