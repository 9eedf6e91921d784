"""`prefalign train`: train a method from a YAML config."""

from __future__ import annotations

from .common import add_config_args

COMMAND = "train"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a method from a YAML config; saves <output_dir>/adapter",
        description="Train a method from a YAML config. `prefalign config show -c FILE` prints every key the "
        "config may hold, with its default and help; `prefalign methods NAME` lists a method's options.",
    )
    add_config_args(p)
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last complete checkpoint (same config)",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in training.output_dir (its adapter, checkpoints, logs and report)",
    )


def run(args) -> int:
    from ..training.config import load_config
    from .common import bars_allowed

    cfg = load_config(args.config, args.overrides)  # before torch loads: a config error answers at once
    from ..training.run import train

    bars_allowed()  # redirected output: no loading bars either
    args.output_dir, args.eval_steps = cfg.training.output_dir, cfg.training.eval_steps  # for interrupted_hint
    result = train(cfg, resume=args.resume, overwrite=args.overwrite)
    print(summary(cfg.method_name, cfg.model.name, result.seconds, result.metrics, result.output_dir))
    return 0


def summary(method: str, model: str, seconds: float, metrics: dict, output_dir) -> str:
    """The lines `prefalign train` ends with: every metric of the run, grouped by split, then the adapter."""
    lines = [f"trained {method} on {model} in {seconds:.0f} s, {metrics.get('train_steps', 0)} steps"]
    groups = {"train": [], "validation": [], "test": [], "": []}
    for key, value in metrics.items():
        if key in ("train_steps", "seconds") or not isinstance(value, (int, float)):
            continue
        split = next((g for g in ("train", "validation", "test") if key.startswith(g + "_")), "")
        groups[split].append((key[len(split) + 1 :] if split else key, value))
    for split, items in groups.items():
        if items:
            cells = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in items)
            lines.append(f"  {split or 'other'}: {cells}")
    lines.append(f"  adapter: {output_dir}/adapter")
    return "\n".join(lines)


def interrupted_hint(args) -> str:
    """What an interrupted `prefalign train` prints after 'interrupted'."""
    if getattr(args, "output_dir", None) is None:  # stopped before the config was read
        return ""
    return (
        f"run the same command with --resume to continue from the last checkpoint in {args.output_dir}/checkpoints "
        f"(one is written every {args.eval_steps} steps)"
    )
