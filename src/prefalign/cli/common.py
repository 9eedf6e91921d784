"""Argument helpers and small pieces shared by several commands.

Only light imports at the top: every command module imports this one while the parser is built.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import CheckpointError, ConfigError

CONFIG_HELP = "YAML experiment config (model/data/method/training sections)"
SET_HELP = "override one config value, e.g. --set training.learning_rate=1e-3 (repeatable)"


def add_config_args(
    p: argparse.ArgumentParser, *, config_help: str = CONFIG_HELP, set_help: str = SET_HELP, required: bool = False
) -> None:
    """``--config/-c`` and the repeatable ``--set KEY=VALUE`` (collected in ``args.overrides``)."""
    p.add_argument("--config", "-c", required=required, help=config_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)


def add_inference_args(p: argparse.ArgumentParser) -> None:
    """``--adapter``, ``--device``, ``--dtype``, ``--batch-size`` and the data section's ``--config``/``--set`` of
    the commands that run a saved adapter."""
    p.add_argument("--adapter", required=True, help="the adapter folder a run wrote: <training.output_dir>/adapter")
    p.add_argument(
        "--device", default="auto", help="where the model runs: auto (a GPU when present), cpu, cuda, cuda:1"
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="cast the model to this dtype (default: as saved, float32)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass (default: 64)")
    p.add_argument(
        "--kv",
        metavar="DIR",
        help="a `prefalign compress-kv` folder made from the adapter's base model: run with its LoRC-compressed "
        "KV cache (methods that change the key/value projections or feed a prefix cache are refused)",
    )
    add_config_args(
        p,
        config_help="a config whose data section names the columns (e.g. the run's config.yaml)",
        set_help="override a data.* key, e.g. --set data.text_column=review (repeatable)",
    )


def bars_allowed() -> bool:
    """Progress bars only when both output streams are terminals; otherwise transformers' loading bars are
    switched off too, so redirected logs hold no carriage returns or cursor codes."""
    from ..training.trainer import output_is_terminal

    if output_is_terminal():
        return True
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return False


def check_data_overrides(args) -> None:
    """`eval` and `predict` read only the config's data section (columns, annotations): a ``--set`` of any
    other key would be ignored, so it is refused."""
    for pair in args.overrides:
        key = pair.split("=", 1)[0].strip()
        if not key.startswith("data."):
            where = " (use --device / --dtype)" if key in ("training.device", "model.dtype", "training.bf16") else ""
            raise ConfigError(
                f"--set {key}: `prefalign {args.command}` reads only the data section of a config (its columns); "
                f"drop it{where}"
            )


def data_section(args):
    """The data section of ``--config`` with the ``--set`` overrides applied."""
    from ..training.config import load_config

    check_data_overrides(args)
    return load_config(args.config, args.overrides).data


CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")


def check_adapter_folder(path: str) -> None:
    """A helpful error for the folders people pass as ``--adapter`` by mistake: a missing one, a run folder
    (the adapter is inside it) or a training checkpoint (trainer state, not an adapter)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"--adapter {path} does not exist; pass the adapter folder a run wrote (RUN/adapter)")
    if not p.is_dir():
        raise CheckpointError(f"--adapter {path} is a file; pass the adapter folder a run wrote (RUN/adapter)")
    if (p / "adapter").is_dir():
        raise CheckpointError(f"{path} is a run folder; pass its adapter: --adapter {p / 'adapter'}")
    if CHECKPOINT_DIR.match(p.name) or (p / "trainer_state.json").is_file():
        run = p.parent.parent if p.parent.name == "checkpoints" else p.parent
        raise CheckpointError(
            f"{path} is a training checkpoint, not an adapter; pass --adapter {run / 'adapter'} (written when "
            "training ends; `prefalign train --resume` finishes an interrupted run)"
        )
    if p.name == "checkpoints":
        raise CheckpointError(f"{path} holds training checkpoints; pass --adapter {p.parent / 'adapter'}")


def load_adapter(args):
    """(model, backbone, collator, meta) of ``--adapter`` on ``--device`` in ``--dtype``; bad flags fail first."""
    check_adapter_folder(args.adapter)
    check_data_overrides(args)
    device = inference_device(args.device)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {args.batch_size}")
    import torch

    from ..inference import load_for_inference

    args.bars = bars_allowed()
    model, backbone, collator, meta = load_for_inference(args.adapter)
    if getattr(args, "kv", None):
        from ..kv import apply_compressed

        if getattr(model, "feeds_prefix", False):
            raise ConfigError(
                f"--kv cannot serve {meta.get('method', 'this method')}: its prefixes ride in the attention cache as "
                "full keys and values; use an adapter of a method without prefixes"
            )
        apply_compressed(model.classifier.model, args.kv)  # the method's own backbone (some methods copy it)
    model.to(device=device, dtype=getattr(torch, args.dtype) if args.dtype else None)
    return model, backbone, collator, meta


def inference_device(name: str):
    """``--device``: auto (cuda when present), cpu, cuda or cuda:N; a ConfigError for one this machine lacks."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: this machine has no CUDA GPU; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def load_rows(args, label_names, need_labels: bool):
    """The inputs of `eval` and `predict`: the --text values, else --data read as --config's data section says."""
    from ..data.examples import Example, TaskDataset
    from ..data.readers import read_inputs
    from ..errors import DataError
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
        try:
            return read_split(args.data, cfg, label_names, None, "data")
        except DataError as exc:  # the adapter fixes the classes: "pass label_names" cannot help here
            message = str(exc)
            if "pass label_names" not in message:
                raise
            raise DataError(
                message.replace("fix the row or pass label_names", "fix the row")
                + f" (the adapter was trained on exactly these classes: {', '.join(label_names)})"
            ) from None
    return read_inputs(args.data, label_names, **cfg.input_columns(), name="data")
