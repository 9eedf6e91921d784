"""`prefalign demo`: the argument glue of prefalign.demo.run_demo (P-Tuning v2 vs DCPC, clean and shifted)."""

from __future__ import annotations

from .common import add_config_args

COMMAND = "demo"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job: P-Tuning v2 vs DCPC on clean and polarity-shifted Rotten Tomatoes"
    )
    p.add_argument("--output-dir", default="runs/demo", help="where runs and the summary go")
    p.add_argument("--model", default="minilm", help="backbone (default: the embedded MiniLM)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: the same four runs, 6 steps each on 64 reviews (a few minutes on 2 CPU cores)",
    )
    add_config_args(p)


def run(args) -> int:
    from ..demo import run_demo
    from .common import bars_allowed

    bars_allowed()  # redirected output: no loading bars

    run_demo(
        output_dir=args.output_dir,
        model=args.model,
        seed=args.seed,
        quick=args.quick,
        config_path=args.config,
        overrides=args.overrides,
    )
    return 0
