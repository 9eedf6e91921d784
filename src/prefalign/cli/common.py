"""Argument helpers and small pieces shared by several commands.

Only light imports at the top: every command module imports this one while the parser is built.
"""

from __future__ import annotations

import argparse

CONFIG_HELP = "YAML experiment config (model/data/method/training sections)"
SET_HELP = "override one config value, e.g. --set training.learning_rate=1e-3 (repeatable)"


def add_config_args(
    p: argparse.ArgumentParser, *, config_help: str = CONFIG_HELP, set_help: str = SET_HELP, required: bool = False
) -> None:
    """``--config/-c`` and the repeatable ``--set KEY=VALUE`` (collected in ``args.overrides``)."""
    p.add_argument("--config", "-c", required=required, help=config_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)


def data_section(args):
    """The data section of ``--config`` with the ``--set`` overrides applied."""
    from ..training.config import load_config

    return load_config(args.config, args.overrides).data


def load_rows(args, label_names, need_labels: bool):
    """The inputs of `eval` and `predict`: the --text values, else --data read as --config's data section says."""
    from ..data.examples import Example, TaskDataset
    from ..data.readers import read_inputs
    from ..training.splits import read_split

    if getattr(args, "text", None):
        return TaskDataset([Example(text=t, label=0) for t in args.text], label_names, name="texts")
    cfg = data_section(args)
    if (
        need_labels and cfg.annotations is not None and cfg.annotations.format
    ):  # multi-annotator file: disagreement metrics too
        from ..annotations.own_files import read_annotated_split

        return read_annotated_split(args.data, cfg, label_names)
    if need_labels:
        return read_split(args.data, cfg, label_names, None, "data")
    return read_inputs(args.data, label_names, **cfg.input_columns(), name="data")
