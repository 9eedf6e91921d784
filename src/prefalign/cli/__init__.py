"""The `prefalign` command: one module per sub-command, put together here.

Each command module exposes ``COMMAND`` (its name), ``add_parser(subparsers)`` and ``run(args)``.
Their top-level imports are light (argparse, prefalign.errors); torch, transformers, the runner
and the methods are imported inside ``run``, so ``prefalign --help`` and argument errors stay fast.
User errors (prefalign.errors.UserError) are caught once, in :func:`main`.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UserError
from . import (
    compare,
    compress_kv,
    config,
    demo,
    distill,
    evaluate,
    export,
    methods,
    predict,
    probe,
    report,
    reward,
    rules,
    shift,
    tasks,
    train,
)

# In the order `prefalign --help` lists them.
COMMAND_MODULES = (
    train,
    distill,
    reward,
    rules,
    compress_kv,
    evaluate,
    predict,
    export,
    demo,
    compare,
    config,
    methods,
    shift,
    tasks,
    probe,
    report,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefalign",
        description=("Fine-tune language models on labels people disagree about (DCPC, P-Tuning v2 and friends)."),
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for module in COMMAND_MODULES:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line on stderr and a non-zero exit for every user error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    module = next(m for m in COMMAND_MODULES if m.COMMAND == args.command)
    try:
        return module.run(args)
    except UserError as exc:
        print(f"prefalign: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the reader went away (`prefalign config schema | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        # A command that can pick up where it stopped says how (`train`: --resume).
        hint = getattr(module, "interrupted_hint", lambda _: "")(args)
        print(f"prefalign: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
