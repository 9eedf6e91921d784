"""The `prefalign` command: train, eval, predict, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import probe as cli_probe
from . import shift as cli_shift
from ..errors import UserError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML experiment config (model/data/method/training sections)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set training.learning_rate=1e-3 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefalign", description=(
        "Fine-tune language models on labels people disagree about (DCPC, P-Tuning v2 and friends)."))
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("train", help="train a method from a YAML config; saves <output_dir>/adapter")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last complete checkpoint (same config)")

    p = sub.add_parser("eval", help="accuracy of a saved adapter on a labelled file")
    p.add_argument("--adapter", required=True, help="folder written by `prefalign train` (…/adapter)")
    p.add_argument("--data", required=True, help="CSV, TSV, JSONL, JSON or saved datasets folder")
    _add_config_args(p)
    p.add_argument("--batch-size", type=int, default=64)

    p = sub.add_parser("predict", help="class probabilities of a saved adapter for a file or texts")
    p.add_argument("--adapter", required=True, help="folder written by `prefalign train` (…/adapter)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="file with a text column (labels not needed)")
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    p.add_argument("--output", "-o", help="write JSON lines here instead of standard output")
    _add_config_args(p)
    p.add_argument("--batch-size", type=int, default=64)

    p = sub.add_parser("demo", help="the main job: P-Tuning v2 vs DCPC on clean and polarity-shifted Rotten Tomatoes")
    p.add_argument("--output-dir", default="runs/demo", help="where runs and the summary go")
    p.add_argument("--model", default="minilm", help="backbone (default: the embedded MiniLM)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a one-minute smoke run with tiny budgets")
    _add_config_args(p)

    p = sub.add_parser("compare", help="methods x datasets (and their shifted twins) x seeds into the paper's tables")
    p.add_argument("--config", "-c", required=True, help="compare YAML (see configs/compare/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a compare config value, e.g. --set base.training.max_steps=20 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which are finished, train nothing")
    p.add_argument("--shard", metavar="I/N", type=_shard, default=(1, 1),
                   help="run only the runs whose id hashes to shard I of N, so N processes can share a grid "
                        "(then --report-only)")
    p.add_argument("--report-only", action="store_true",
                   help="write the tables, CSV and charts from the runs finished so far, train nothing")
    p.add_argument("--progress", action="store_true", help="show each run's progress bar")

    p = sub.add_parser("methods", help="list the registered methods (with --model: their tunable parameters)")
    p.add_argument("--model", help="count each method's tunable parameters on this backbone for a 2-class task")
    cli_shift.add_parsers(sub)  # shift, tasks
    cli_probe.add_parsers(sub)  # probe drift, probe bias, report
    return parser


def _data_section(args):
    from ..config import load_config

    return load_config(args.config, args.overrides).data


def cmd_train(args) -> int:
    from ..config import load_config
    from ..runner import train

    cfg = load_config(args.config, args.overrides)
    result = train(cfg, resume=args.resume)
    m = result.metrics
    print(f"trained {cfg.method_name} on {cfg.model.name} in {result.seconds:.0f} s, {m['train_steps']} steps")
    for key in ("validation_accuracy", "test_accuracy"):
        if key in m:
            print(f"  {key}: {m[key]:.4f}")
    print(f"  adapter: {result.output_dir / 'adapter'}")
    return 0


def _load_rows(args, label_names, need_labels: bool):
    from ..data.examples import Example, TaskDataset
    from ..data.readers import read_inputs
    from ..runner import read_split

    if getattr(args, "text", None):
        return TaskDataset([Example(text=t, label=0) for t in args.text], label_names, name="texts")
    cfg = _data_section(args)
    if need_labels and (cfg.annotations or {}).get("format"):  # multi-annotator file: disagreement metrics too
        from ..annotations.files import read_annotated_split

        return read_annotated_split(args.data, cfg, label_names)
    if need_labels:
        return read_split(args.data, cfg, label_names, None, "data")
    return read_inputs(args.data, label_names, text_column=cfg.text_column, text_pair_column=cfg.text_pair_column,
                       choice_columns=cfg.choice_columns, name="data")


def cmd_eval(args) -> int:
    from ..runner import evaluate, load_for_inference

    model, backbone, collator, meta = load_for_inference(args.adapter)
    if getattr(model.task, "generation", False):
        from ..errors import ConfigError

        raise ConfigError(f"{args.adapter} answers a generation task; `prefalign eval` scores class labels. Use "
                          "`prefalign predict` for its answers, or train/compare, which score the test split "
                          "with the task's metric")
    data = _load_rows(args, meta["label_names"], need_labels=True)
    metrics = evaluate(model, collator, data, batch_size=args.batch_size, progress=True)
    print(json.dumps(metrics))
    return 0


def cmd_predict(args) -> int:
    from ..runner import load_for_inference, predict_proba

    model, backbone, collator, meta = load_for_inference(args.adapter)
    names = meta["label_names"]
    if getattr(model.task, "generation", False):
        return _predict_answers(args, model, backbone, collator)
    data = _load_rows(args, names, need_labels=False)
    probs = predict_proba(model, collator, data, batch_size=args.batch_size, progress=args.output is not None)
    lines = [json.dumps({"text": ex.text, "label": names[int(p.argmax())],
                         "probabilities": {n: round(float(v), 6) for n, v in zip(names, p)}})
             for ex, p in zip(data.examples, probs)]
    _write_lines(args, lines)
    return 0


def _predict_answers(args, model, backbone, collator) -> int:
    """`prefalign predict` for a generation adapter: generated answers (beam search of 3)."""
    from ..data.examples import Example
    from ..generation import generate_from_ids

    if args.text:
        texts, pairs = list(args.text), [None] * len(args.text)
    else:
        from ..data.readers import read_inputs

        cfg = _data_section(args)
        rows = read_inputs(args.data, ["0", "1"], text_column=cfg.text_column, text_pair_column=cfg.text_pair_column,
                           name="data")
        texts, pairs = [ex.text for ex in rows.examples], [ex.text_pair for ex in rows.examples]
    examples = [Example(text=t, text_pair=p, answer="-") for t, p in zip(texts, pairs)]
    answers = generate_from_ids(model, backbone.tokenizer, collator.prompt_ids(examples), num_beams=3,
                                batch_size=args.batch_size)
    lines = [json.dumps({"text": t, "answer": a}) for t, a in zip(texts, answers)]
    _write_lines(args, lines)
    return 0


def _write_lines(args, lines: list[str]) -> None:
    if args.output:
        from ..files import write_text_atomically

        write_text_atomically(args.output, "\n".join(lines) + "\n")
        print(f"wrote {len(lines)} predictions to {args.output}")
    else:
        print("\n".join(lines))


def cmd_demo(args) -> int:
    from ..demo import run_demo

    run_demo(output_dir=args.output_dir, model=args.model, seed=args.seed, quick=args.quick,
             config_path=args.config, overrides=args.overrides)
    return 0


def _shard(text: str) -> tuple[int, int]:
    """``--shard 2/3`` -> (2, 3)."""
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 1/2, got {text!r}") from None
    if not 1 <= part <= parts:
        raise argparse.ArgumentTypeError(f"I must be between 1 and N in I/N, got {text!r}")
    return part, parts


def cmd_compare(args) -> int:
    import shlex

    from ..compare import load_compare_config, run_grid, write_reports
    from ..compare.grid import grid_status

    cfg = load_compare_config(args.config, args.overrides)
    command = "prefalign compare " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["compare"] \
        else f"prefalign compare --config {args.config}"
    if args.dry_run:
        for spec, _, _, done in grid_status(cfg):
            print(f"{'done' if done else 'todo'}  {spec.run_id}")
        return 0
    if args.report_only:  # a grid cut short (or still running elsewhere) is tabulated as it stands
        results = [done for _, _, _, done in grid_status(cfg)]
    else:
        results = run_grid(cfg, progress=args.progress, shard=args.shard)
    paths = write_reports(cfg, results, command)
    print()
    print(paths["table"].read_text())
    print(f"results: {paths['csv']}, {paths['json']}, chart: {paths['chart']}"
          + (f", validation curves: {paths['curves']}" if "curves" in paths else ""))
    return 0


def cmd_methods(args) -> int:
    from ..methods.dcpc import ABLATIONS
    from ..methods.registry import METHODS

    counts = _tunable_counts(args.model) if args.model else {}
    for name, (config_cls, _) in METHODS.items():
        about = (config_cls.__doc__ or "").strip().splitlines()[0]
        if name in ABLATIONS and name != "dcpc":
            off = ", ".join(f"{k}={v}" for k, v in ABLATIONS[name].items())
            about = "P-Tuning v2: DCPC with every part off" if name == "ptuning-v2" else f"DCPC ablation: {off}"
        count = "" if not counts else f"{counts[name]:>12,d}  " if counts.get(name) is not None else f"{'-':>12}  "
        print(f"{name:20s} {count}{about}")
    return 0


def _tunable_counts(model_name: str) -> dict[str, int]:
    """Tunable parameters of every method on ``model_name`` for a two-class task (head included)."""
    from ..data import Example, PromptFormat, TaskDataset, build_task_spec
    from ..methods import build_method
    from ..methods.registry import METHODS
    from ..models.loading import load_backbone

    backbone = load_backbone(model_name)
    data = TaskDataset([Example(text="a", label=0), Example(text="b", label=1)], ["negative", "positive"])
    spec = build_task_spec(data, backbone.geometry, backbone.tokenizer, PromptFormat(template="{text}\nAnswer:"))
    from ..errors import ConfigError

    out: dict[str, int | None] = {}
    for name in METHODS:
        try:
            model = build_method(name, {}, backbone, spec)
        except ConfigError:  # a method this backbone cannot run (CC, DC, bias-aware need a decoder): '-'
            out[name] = None
            continue
        out[name] = sum(p.numel() for p in model.trainable_parameters().values())
        del model
    return out


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
    handlers = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "demo": cmd_demo,
                "compare": cmd_compare, "methods": cmd_methods}
    handlers.update(dict.fromkeys(cli_shift.COMMANDS, cli_shift.run))
    handlers.update(dict.fromkeys(cli_probe.COMMANDS, cli_probe.run))
    try:
        return handlers[args.command](args)
    except UserError as exc:
        print(f"prefalign: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("prefalign: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
