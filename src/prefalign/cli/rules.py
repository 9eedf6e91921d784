"""`prefalign rules`: PRBoost's rule discovery (discover), reviewing candidates (review, export, import) and
labelling texts with an accepted rule set (apply)."""

from __future__ import annotations

from .common import add_config_args

COMMAND = "rules"
ACTIONS = ("discover", "review", "export", "import", "apply")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "rules",
        help="PRBoost: discover labelling rules by prompting, review them, label texts with them",
        description=(
            "discover -c CONFIG: run (or continue) the rounds; review --rules FILE: one keystroke a candidate "
            "(a accept, r reject, s skip, q quit); export/import --rules FILE --file F: candidates to a CSV/JSONL "
            "and decisions back; apply --rules FILE --input TEXTS -o OUT: label texts. Without an action, "
            "discover."
        ),
    )
    p.add_argument("action", nargs="?", default="discover", choices=ACTIONS, help="what to do (default: discover)")
    add_config_args(p, config_help="discover: YAML rules config (labels/unlabelled/clean/dev/seed_rules/...)")
    p.add_argument("--rules", help="review/export/import/apply: a rules JSON file (<output_dir>/rules.json)")
    p.add_argument("--file", help="export: where candidates go; import: the file of decisions (CSV or JSONL)")
    p.add_argument("--all", action="store_true", help="export: every candidate, decided ones too")
    p.add_argument("--input", help="apply: texts to label (CSV, TSV or JSONL)")
    p.add_argument("--text-column", default="text", help="apply: the text's column (default: text)")
    p.add_argument("--output", "-o", help="apply: where labelled rows go (JSONL, or CSV by suffix)")


def interrupted_hint(args) -> str:
    if args.action in ("discover", "review"):
        return "run the same command again to continue where it stopped"
    return ""


def run(args) -> int:
    from ..errors import ConfigError

    if args.action == "discover":
        if not args.config:
            raise ConfigError("prefalign rules discover needs -c CONFIG (a YAML rules config)")
        return _discover(args)
    if not args.rules:
        raise ConfigError(
            f"prefalign rules {args.action} needs --rules FILE (a rules JSON, e.g. runs/rules/rules.json)"
        )
    if args.action == "review":
        from ..rules import terminal_review

        terminal_review(args.rules)
        return 0
    if args.action in ("export", "import"):
        if not args.file:
            raise ConfigError(f"prefalign rules {args.action} needs --file F (CSV or JSONL)")
        from ..rules import export_candidates, import_decisions, load_rules, save_rules

        doc = load_rules(args.rules)
        if args.action == "export":
            n = export_candidates(doc, args.file, only_undecided=not args.all)
            print(f"exported {n} candidates to {args.file}; fill in 'decision' (accept/reject), then import it")
            return 0
        n = import_decisions(doc, args.file)
        save_rules(args.rules, doc)
        print(f"imported {n} changed decisions into {args.rules}")
        return 0
    return _apply(args)


def _discover(args) -> int:
    import torch

    from ..rules import discover, load_rules_config

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    cfg = load_rules_config(args.config, args.overrides)
    result = discover(cfg)
    if result.waiting_for_review:
        return 0
    print(f"{result.rounds_done} rounds done; rules: {result.output_dir / 'rules.json'}")
    last = result.record["rounds"][-1] if result.record.get("rounds") else {}
    for key in ("test_accuracy_ensemble", "test_accuracy_model", "pool_coverage", "dev_accuracy_ensemble"):
        if last.get(key) is not None:
            print(f"  {key}: {last[key]:.4f}")
    for name, b in result.record.get("baselines", {}).items():
        if "accuracy" in b:
            print(f"  baseline {name}: {b['accuracy']:.4f}")
    print(f"  record: {result.output_dir / 'record.json'}")
    return 0


def _apply(args) -> int:
    from ..errors import ConfigError
    from ..rules import apply_rules, load_rules
    from ..rules.data import read_texts, write_rows

    if not args.input or not args.output:
        raise ConfigError("prefalign rules apply needs --input TEXTS and -o OUT")
    doc = load_rules(args.rules)
    texts, _ = read_texts(args.input, args.text_column, None, doc["labels"], False)
    rows = apply_rules(doc, texts)
    write_rows(args.output, rows)
    labelled = sum(r["label"] is not None for r in rows)
    print(f"labelled {labelled} of {len(rows)} texts ({len(rows) - labelled} matched no rule): {args.output}")
    return 0
