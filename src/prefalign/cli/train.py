"""`prefalign train`: train a method from a YAML config."""

from __future__ import annotations

from .common import add_config_args

COMMAND = "train"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a method from a YAML config; saves <output_dir>/adapter")
    add_config_args(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last complete checkpoint (same config)",
    )


def run(args) -> int:
    from ..training.config import load_config
    from ..training.run import train

    cfg = load_config(args.config, args.overrides)
    result = train(cfg, resume=args.resume)
    m = result.metrics
    print(f"trained {cfg.method_name} on {cfg.model.name} in {result.seconds:.0f} s, {m['train_steps']} steps")
    for key in ("validation_accuracy", "test_accuracy"):
        if key in m:
            print(f"  {key}: {m[key]:.4f}")
    print(f"  adapter: {result.output_dir / 'adapter'}")
    return 0
