"""`prefalign distill`: distil a teacher's class distributions into a student with PTLoss or a baseline loss."""

from __future__ import annotations

from .common import add_config_args

COMMAND = "distill"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "distill",
        help="distil a teacher (prefalign adapter or HF classifier) into a student with PTLoss (method ptloss)",
    )
    p.add_argument("--teacher", required=True, help="prefalign adapter folder or Hugging Face classifier (folder/id)")
    p.add_argument("--student", required=True, help="the student model: an alias, a folder or a hub id")
    add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in training.output_dir (its adapter, checkpoints, logs and report)",
    )


def run(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..training.config import load_config
    from ..utils.config_base import deep_merge, parse_overrides, read_yaml_mapping
    from .common import bars_allowed

    raw = read_yaml_mapping(args.config, "config file", "model/data/method/training sections") if args.config else {}
    raw = deep_merge(raw, parse_overrides(args.overrides))
    section = raw.get("method") or {}
    named = section if isinstance(section, str) else section.get("name", "ptloss")
    if named != "ptloss":
        raise ConfigError(
            f"prefalign distill trains method ptloss; the config names method '{named}' "
            "(remove method.name or use prefalign train)"
        )
    overrides = [f"model.name={args.student}", f"method.teacher={args.teacher}", *args.overrides]
    cfg = load_config(args.config, overrides, base={"method": {"name": "ptloss"}})
    if not cfg.method.search_dir:
        cfg.method.search_dir = str(Path(cfg.training.output_dir) / "search")
    bars_allowed()  # redirected output: no loading bars either
    args.output_dir, args.eval_steps = cfg.training.output_dir, cfg.training.eval_steps  # for interrupted_hint
    args.search_dir, args.searches = cfg.method.search_dir, cfg.method.loss == "ptloss" and cfg.method.eps is None
    from ..training.run import train  # after the config is checked: a config error answers before torch loads

    result = train(cfg, resume=args.resume, overwrite=args.overwrite)
    m = result.metrics
    print(
        f"distilled {args.teacher} into {cfg.model.name} with loss {cfg.method.loss} in {result.seconds:.0f} s, "
        f"{m['train_steps']} steps"
    )
    if "search_best_q" in m:
        print(
            f"  coefficients (Q {m['search_best_q']:.4f}, teacher's Q {m['search_q_kl']:.4f}): "
            f"{result.model.config.eps}  [{cfg.method.search_dir}/search.json, search.png]"
        )
    for key in ("teacher_train_accuracy", "validation_accuracy", "test_accuracy"):
        if key in m:
            print(f"  {key}: {m[key]:.4f}")
    print(f"  adapter: {result.output_dir / 'adapter'}")
    return 0


def interrupted_hint(args) -> str:
    """What an interrupted `prefalign distill` prints after 'interrupted': how to continue the search or the run."""
    from pathlib import Path

    if getattr(args, "output_dir", None) is None:  # stopped before the config was read
        return ""
    checkpoints = Path(args.output_dir) / "checkpoints"
    if any(checkpoints.glob("checkpoint-*")):
        return (
            f"run the same command with --resume to continue from the last checkpoint in {checkpoints} "
            f"(one is written every {args.eval_steps} steps)"
        )
    if args.searches:
        return (
            f"every coefficient set tried so far is in {args.search_dir}/search.json; run the same command again "
            "to continue the search where it stopped"
        )
    return "no checkpoint was written yet; run the same command again to start over"
