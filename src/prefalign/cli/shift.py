"""`prefalign shift`: build a preference-shifted twin of a task split.

    prefalign shift NAME --task TASK --path FOLDER [--split train] --output DIR [--seed N]
                   [--set param=value ...] [--rephraser rule|chat]
    prefalign shift --list

`shift` writes DIR/<split>.jsonl and its card DIR/<split>.card.json and .card.md, all or
nothing: the files are written into a staging folder inside DIR and moved in only once every
one of them is complete.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from ..errors import ConfigError, DataError

COMMAND = "shift"
SPLITS = ("train", "validation", "test")


def add_parser(subparsers) -> None:
    """Add the `shift` sub-command to the main parser's subparsers."""
    p = subparsers.add_parser(
        "shift",
        help="build a preference-shifted dataset (DCPC appendix A.1.1) and its card",
        description="Build a preference-shifted twin of one split of a registered task.",
    )
    p.add_argument("name", nargs="?", help="the shift, e.g. sst2-p, rte-e, copa-bs, boolq-ps, record-r, alpaca-is")
    p.add_argument("--list", action="store_true", help="list the shifts and their parameters, then exit")
    p.add_argument("--task", help="registered task to read (see `prefalign tasks`)")
    p.add_argument("--path", help="folder holding the task's original files")
    p.add_argument("--split", default="train", choices=SPLITS, help="which split to shift (default: train)")
    p.add_argument("--output", "-o", help="folder for <split>.jsonl and its card")
    p.add_argument("--seed", type=int, default=0, help="seed of the shift's random choices (default: 0)")
    p.add_argument(
        "--set",
        dest="params",
        action="append",
        default=[],
        metavar="PARAM=VALUE",
        help="a shift parameter, e.g. --set fraction=0.5 (repeatable; see --list)",
    )
    p.add_argument(
        "--rephraser",
        choices=("rule", "chat"),
        help="for boolq-ps, record-r, alpaca-is: 'rule' (offline, default) or 'chat' (an OpenAI-"
        "compatible endpoint from PREFALIGN_API_BASE, PREFALIGN_API_MODEL, PREFALIGN_API_KEY)",
    )


def _list_shifts() -> int:
    from ..shifts.registry import SHIFTS, shift_parameters

    for name, shift in SHIFTS.items():
        params = ", ".join(f"{k}={v!r}" for k, v in shift_parameters(name).items())
        print(f"{name:10s} {shift.description}")
        print(f"{'':10s} parameters: {params}")
    return 0


def run(args) -> int:
    """Run `shift`; user errors propagate as UserError for prefalign.cli.main to report."""
    if args.list:
        return _list_shifts()
    from ..shifts.registry import apply_shift, shift_parameters
    from ..tasks import load_task
    from ..utils.config_base import parse_overrides

    if not args.name:
        raise ConfigError("prefalign shift needs a shift name (or --list to see them)")
    missing = [flag for flag, value in (("--task", args.task), ("--output", args.output)) if not value]
    if missing:
        raise ConfigError(f"prefalign shift {args.name} needs {' and '.join(missing)}")
    known = shift_parameters(args.name)  # ConfigError for an unknown shift, before any data is read
    params = parse_overrides(args.params)
    nested = [k for k, v in params.items() if isinstance(v, dict)]
    if nested:
        raise ConfigError(f"--set takes shift parameters such as fraction=0.5, not dotted keys ({nested[0]}...)")
    if args.rephraser:
        if "rephraser" not in known:
            raise ConfigError(f"shift '{args.name}' takes no rephraser; only the answer-rewriting shifts do")
        params["rephraser"] = args.rephraser
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} exists and is not a folder")

    splits = dict(zip(SPLITS, load_task(args.task, args.path, args.seed)))
    data = splits[args.split]
    if data is None:
        raise DataError(
            f"task '{args.task}' has no separate {args.split} split in {args.path} (it is carved out "
            "of train at training time); shift --split train instead"
        )
    shifted, card = apply_shift(args.name, data, params, seed=args.seed)
    card = {**card, "task": args.task, "split": args.split, "source_path": str(args.path) if args.path else None}
    files = _write(output, args.split, shifted, card)
    counts = ", ".join(f"{k} {card[k]}" for k in ("n_examples", "n_changed") if k in card)
    print(f"{args.name}: wrote {files[0]} ({counts}) and its card {files[1]}")
    return 0


def _write(output: Path, split: str, shifted, card: dict) -> list[Path]:
    """Write <split>.jsonl and <split>.card.{json,md} into ``output``, all or nothing."""
    from ..shifts.cards import write_card, write_dataset_jsonl
    from ..shifts.styles import write_generation_jsonl

    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    staging = output / f".shift-staging-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        staging.mkdir()
        writer = write_generation_jsonl if shifted.is_generation else write_dataset_jsonl
        names = [
            writer(staging / f"{split}.jsonl", shifted).name,
            *(p.name for p in write_card(staging, card, filename=f"{split}.card")),
        ]
        for name in names:
            os.replace(staging / name, output / name)
        return [output / name for name in names[:2]]
    except OSError as e:
        raise DataError(f"cannot write the shifted dataset to {output}: {e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()
