"""`prefalign config show|schema`: the resolved experiment config with every default and its help, or its
JSON schema."""

from __future__ import annotations

from .common import add_config_args

COMMAND = "config"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "config", help="print the resolved config with every default and its help (show), or its JSON schema"
    )
    actions = p.add_subparsers(dest="action", required=True)
    show = actions.add_parser(
        "show",
        help="the config -c and --set resolve to: every key, its value (defaults included) and its help",
        description="Print the config that -c FILE and --set KEY=VALUE resolve to, as YAML that `prefalign train "
        "-c` reads back: every key with its value, defaults included, and its help as a comment.",
    )
    add_config_args(show)
    actions.add_parser("schema", help="the JSON schema of an experiment config (one method section per method)")


def run(args) -> int:
    if args.action == "schema":
        import json

        from ..training.config import config_schema

        print(json.dumps(config_schema(), indent=2))
        return 0
    from ..training.config import describe_config, load_config

    print(describe_config(load_config(args.config, args.overrides)), end="")
    return 0
