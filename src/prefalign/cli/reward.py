"""`prefalign reward`: train a reward model with DORM's data weights, or score pairs with a trained one."""

from __future__ import annotations

from .common import add_config_args

COMMAND = "reward"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "reward",
        help="train a reward model on preference sources with DORM's learned weights (-c), or score pairs (--score)",
    )
    add_config_args(p, config_help="YAML reward config (sources/validation/test/model/dorm/training sections)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--score", action="store_true", help="score the pairs of --data with the reward adapter --adapter")
    p.add_argument("--adapter", help="--score: a trained reward adapter folder (<output_dir>/adapter)")
    p.add_argument("--data", help="--score: a file of chosen/rejected pairs (CSV, TSV, JSON, JSONL, .jsonl.gz)")
    p.add_argument("--chosen-column", default="chosen", help="--score: the preferred text's column")
    p.add_argument("--rejected-column", default="rejected", help="--score: the other text's column")
    p.add_argument("--prompt-column", default="", help="--score: an optional prompt column put before both")
    p.add_argument("--output", "-o", help="--score: write each pair's rewards and margin here (JSONL)")


def run(args) -> int:
    from ..errors import ConfigError

    if args.score:
        if not args.adapter or not args.data:
            raise ConfigError("prefalign reward --score needs --adapter DIR and --data FILE")
        return _score(args)
    if not args.config:
        raise ConfigError("prefalign reward needs -c CONFIG to train (or --score --adapter DIR --data FILE)")
    from ..reward import load_reward_config, train_reward

    cfg = load_reward_config(args.config, args.overrides)
    result = train_reward(cfg, resume=args.resume)
    m = result.metrics
    print(
        f"trained a reward model ({cfg.dorm.variant}) on {cfg.model.name} in {m['seconds']:.0f} s, {m['steps']} steps"
    )
    for key in ("validation_pairwise_accuracy", "test_pairwise_accuracy", "test_rating_mse"):
        if key in m:
            print(f"  {key}: {m[key]:.4f}")
    for name, value in m["final_mean_weight"].items():
        print(f"  mean weight of {name}: {value:.4f} (prior {m['prior_mean_weight'][name]:.4f})")
    print(f"  adapter: {result.output_dir / 'adapter'}; weights and curves: {result.output_dir}/weight_curves.*")
    return 0


def _score(args) -> int:
    import json

    from ..reward import SourceConfig, load_reward_model, read_source, score_pairs
    from ..utils.atomic_files import write_text_atomically

    model = load_reward_model(args.adapter)
    src = SourceConfig(
        name="data",
        path=args.data,
        chosen_column=args.chosen_column,
        rejected_column=args.rejected_column,
        prompt_column=args.prompt_column,
    )
    scores = score_pairs(model, read_source(src, 0, model.cfg.head_attributes))
    accuracy = sum(s["margin"] > 0 for s in scores) / len(scores)
    print(f"scored {len(scores)} pairs: pairwise accuracy {accuracy:.4f} (share with r(chosen) > r(rejected))")
    if args.output:
        write_text_atomically(args.output, "".join(json.dumps(s) + "\n" for s in scores))
        print(f"  scores: {args.output}")
    return 0
