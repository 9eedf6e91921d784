"""`prefalign probe drift`, `prefalign probe bias` and `prefalign probe target-layer`.

    prefalign probe drift [--model BASE] [--adapter [NAME=]DIR ...] (--pairs FILE | DATA) --output DIR
                          [--num-pairs 32] [--pool 512] [--top-k 10]
    prefalign probe bias  [--model BASE] [--adapter [NAME=]DIR ...] DATA --output DIR [--max-examples 256]
    prefalign probe target-layer --model BASE DATA --output DIR [--examples 20] [--component o_proj]

DATA is one of ``--data FILE`` (CSV/TSV/JSON/JSONL; the label cell may hold a list of labels),
``--task NAME --path FOLDER`` or ``--config CONFIG.yaml`` (its data section), with ``--split``.
Every model named is probed on the same inputs, so a base model, a P-Tuning v2 checkpoint and a
DCPC checkpoint land in one table and one figure. See docs/probes.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError
from .common import add_config_args

COMMAND = "probe"


def _add_models(p) -> None:
    p.add_argument(
        "--model",
        help="a base model to probe (alias such as smollm2-135m, local folder or hub id); "
        "NAME=MODEL names it in tables and plots",
    )
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="a checkpoint written by `prefalign train` (…/adapter), probed with its trained parts in "
        "place (repeatable; NAME defaults to its method)",
    )
    p.add_argument(
        "--template",
        help="prompt of the base model, with {text}; \\n is a line break (default: the "
        "task's or the first checkpoint's)",
    )
    p.add_argument(
        "--verbalizers",
        help="label words of the base model, comma-separated in label order "
        "(default: the task's, the first checkpoint's, or ' ' + label name)",
    )
    p.add_argument("--max-length", type=int, default=128, help="tokens per input for the base model (default 128)")


def _add_data(p) -> None:
    p.add_argument("--data", help="CSV, TSV, JSON or JSONL file with a text column and a label column")
    p.add_argument("--text-column", default="text")
    p.add_argument("--text-pair-column", default=None)
    p.add_argument("--label-column", default="label", help="one label, or a list of labels, per row")
    p.add_argument("--label-names", help="class names in index order, comma-separated (default: inferred)")
    p.add_argument("--task", help="a registered task (see `prefalign tasks`), read from --path")
    p.add_argument("--path", help="folder holding the task's files")
    add_config_args(
        p,
        config_help="a training config: its data section names the data",
        set_help="override a config value (with --config)",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=("train", "validation", "test"),
        help="split of --task / --config to read (default: test, SST-2's dev.tsv)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every sample the probe draws (default 0)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--output", "-o", required=True, help="folder for the CSV, PNG and summary files")
    p.add_argument("--title", default="", help="title of the figures")


def add_parser(subparsers) -> None:
    """Add `probe` (with `drift`, `bias` and `target-layer`) to the main parser's subparsers."""
    probe = subparsers.add_parser(
        "probe",
        help="layer-wise probes: preference drift (DCPC) and label bias "
        "(bias-aware PEFT) of base models and checkpoints",
    )
    kinds = probe.add_subparsers(dest="probe_command")
    d = kinds.add_parser(
        "drift",
        help="per layer: cosine, top-k edit distance, KL of label distributions and "
        "label difference between similar inputs (DCPC Table 5, Figure 2)",
    )
    _add_models(d)
    d.add_argument(
        "--pairs",
        help="file of pairs (columns text_a, text_b, optional label_a, label_b) instead of mining them from the data",
    )
    d.add_argument("--num-pairs", type=int, default=32, help="pairs to mine (default 32)")
    d.add_argument(
        "--pool",
        type=int,
        default=512,
        help="inputs the pairs are mined from, drawn class-balanced with --seed (default 512; 0 = all)",
    )
    d.add_argument("--top-k", type=int, default=10, help="tokens compared by the edit distance (default 10)")
    _add_data(d)
    b = kinds.add_parser(
        "bias",
        help="per layer and label: mean logit on samples that contain the label and on "
        "those that do not, by early exit through the LM head (decoders)",
    )
    _add_models(b)
    b.add_argument(
        "--max-examples",
        type=int,
        default=256,
        help="class-balanced sample of this many inputs, drawn with --seed (default 256; 0 = all)",
    )
    _add_data(b)
    t = kinds.add_parser(
        "target-layer",
        help="interchange ablation (bias-aware PEFT, appendix A): per layer, the "
        "KL of the output after swapping a component's activation between "
        "gold and biased samples; the argmax layer is bias-aware's target",
    )
    _add_models(t)
    t.add_argument(
        "--examples",
        type=int,
        default=20,
        help="examples the gold/biased pairs come from, drawn with --seed (default 20, section 5.1)",
    )
    t.add_argument(
        "--component",
        default="o_proj",
        help="module of each layer whose output is swapped, by name or suffix (default o_proj, appendix A)",
    )
    _add_data(t)


def run(args) -> int:
    if args.probe_command is None:
        raise ConfigError("prefalign probe needs a probe: drift or bias, or target-layer (see prefalign probe --help)")
    _check_numbers(args)
    if args.probe_command == "target-layer":
        return _target_layer(args)
    return _drift(args) if args.probe_command == "drift" else _bias(args)


def _check_numbers(args) -> None:
    checks = [("--batch-size", args.batch_size, 1), ("--max-length", args.max_length, 8)]
    if args.probe_command == "drift":
        checks += [("--num-pairs", args.num_pairs, 1), ("--top-k", args.top_k, 1), ("--pool", args.pool, 0)]
    elif args.probe_command == "target-layer":
        checks += [("--examples", args.examples, 1)]
        if not args.model or args.adapter:
            raise ConfigError("prefalign probe target-layer probes a base model: give --model (and no --adapter)")
    else:
        checks += [("--max-examples", args.max_examples, 0)]
    for flag, value, low in checks:
        if value < low:
            raise ConfigError(f"{flag} must be at least {low}, got {value}")
    if not args.model and not args.adapter:
        raise ConfigError(f"prefalign probe {args.probe_command} needs a model to probe: --model and/or --adapter")


def _named(value: str) -> tuple[str | None, str]:
    """'NAME=VALUE' -> (NAME, VALUE); a value without '=' (or with '/' before it) has no name."""
    if "=" in value:
        name, rest = value.split("=", 1)
        if name and "/" not in name and rest:
            return name, rest
    return None, value


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _subjects(args, data_names: list[str]):
    """Every model to probe, in order: the base model (if --model), then each --adapter."""
    from ..analysis.layers import base_subject, checkpoint_subject
    from ..methods.checkpoint import read_checkpoint
    from ..models.loading import load_backbone

    backbones = {}
    metas = []
    for spec in args.adapter:
        name, path = _named(spec)
        _, meta = read_checkpoint(path)  # CheckpointError for a missing or unsafe folder, before any model load
        metas.append((name, path, meta))
    subjects = []
    if args.model:
        name, model = _named(args.model)
        _progress(f"loading {model}")
        backbone = load_backbone(model)
        backbones[backbone.name] = backbone
        prompt = _base_prompt(args, [m for _, _, m in metas], backbone.geometry.is_decoder)
        if len(data_names) < 2:  # unlabelled pairs: the checkpoint's classes, else --label-names
            data_names = _split_names(args.label_names) or (metas[0][2].get("label_names") if metas else None)
            if not data_names:
                raise ConfigError("the pairs carry no labels: give the base model's classes with --label-names")
        subjects.append(
            base_subject(
                backbone, data_names, prompt, max_length=args.max_length, name=name or f"base ({Path(str(model)).name})"
            )
        )
    counts: dict[str, int] = {}
    for name, path, meta in metas:
        base = meta.get("base_model")
        if base not in backbones:
            _progress(f"loading {base}")
            backbones[base] = load_backbone(base)
        label = name or meta.get("method", "checkpoint")
        counts[label] = counts.get(label, 0) + 1
        if counts[label] > 1:
            label = f"{label} ({Path(path).resolve().parent.name})"
        subjects.append(checkpoint_subject(path, backbones[base], name=label))
    names = [s.name for s in subjects]
    if len(set(names)) != len(names):
        raise ConfigError(f"two probed models share a name ({', '.join(names)}); name them with NAME=DIR")
    return subjects


def _base_prompt(args, adapter_metas: list[dict], decoder: bool):
    """The base model's prompt: --template/--verbalizers, else the task's or config's, else the first checkpoint's."""
    from ..data.collator import PromptFormat

    template = args.template.replace("\\n", "\n") if args.template else None  # a typed \n is a line break
    words = args.verbalizers.split(",") if args.verbalizers else None  # keep leading spaces: ' negative'
    if decoder and (template is None or words is None):
        source = None
        if args.task:
            from ..tasks import get_task

            task = get_task(args.task)
            source = (task.decoder_template, task.verbalizers)
        elif args.config:
            from ..training.config import load_config

            p = load_config(args.config, args.overrides).data.prompt(decoder=True)
            source = (p.template, p.verbalizers)
        elif adapter_metas:
            p = adapter_metas[0].get("prompt") or {}
            source = (p.get("template"), p.get("verbalizers"))
        if source:
            template = template if template is not None else source[0]
            words = words if words is not None else source[1]
    return PromptFormat(template=template, verbalizers=words)


def _data(args):
    from ..analysis.probe_data import load_probe_data

    return load_probe_data(args)


def _describe(subjects) -> str:
    return "\n".join(f"  {s.name}: {s.description}" for s in subjects)


def _drift(args) -> int:
    from ..analysis import drift as drift_mod
    from ..analysis.layers import embed_texts
    from ..analysis.probe_data import mine_pairs, pool_sample, read_pairs

    if args.pairs:
        pairs, data_names = read_pairs(args.pairs, _split_names(args.label_names))
        source = f"pairs from {args.pairs}"
    else:
        data = _data(args)
        data_names = data.label_names
        source = data.source
    subjects = _subjects(args, data_names)
    if not args.pairs:
        rows = pool_sample(data, args.pool, args.seed)
        first = subjects[0]
        _progress(f"mining {args.num_pairs} pairs among {len(rows)} inputs of {source} with {first.name}'s embeddings")
        from ..models.loading import LoadedModel

        clf = first.classifier
        backbone = LoadedModel(model=clf.model, tokenizer=first.tokenizer, geometry=clf.geo, name=first.name, path="")
        emb = embed_texts(
            backbone,
            [r.text for r in rows],
            [r.text_pair for r in rows],
            batch_size=args.batch_size,
            max_length=args.max_length,
        )
        pairs = mine_pairs(rows, emb, args.num_pairs)
        source = (
            f"{len(pairs)} pairs mined from {len(rows)} inputs of {source} (nearest by centred cosine of "
            f"{first.name}'s mean-pooled last layer, different labels, seed {args.seed})"
        )
    results = []
    for subject in subjects:
        _progress(f"probing {subject.name} on {len(pairs)} pairs")
        results.append(drift_mod.probe_drift(subject, pairs, top_k=args.top_k, batch_size=args.batch_size))
    class_names = {s.name: s.label_names for s in subjects}
    paths = drift_mod.write_outputs(Path(args.output), results, pairs, data_names, class_names, title=args.title)
    text = drift_mod.summary(results, len(pairs))
    header = f"data: {source}\nmodels:\n{_describe(subjects)}\ntop-k: {args.top_k}\n"
    paths["summary"].write_text(header + text + "\n", encoding="utf-8")
    print(header + text)
    print(f"wrote {paths['csv']}, {paths['pairs_csv']}, {paths['png']}, {paths['summary']}")
    return 0


def _split_names(value):
    if not value:
        return None
    return [n.strip() for n in value.split(",") if n.strip()]


def _bias(args) -> int:
    from ..analysis import bias as bias_mod
    from ..analysis.probe_data import balanced_sample

    data = _data(args)
    rows = (
        data.rows
        if not args.max_examples or args.max_examples >= len(data.rows)
        else balanced_sample(data, args.max_examples, args.seed)
    )
    subjects = _subjects(args, data.label_names)
    results = []
    for subject in subjects:
        _progress(f"probing {subject.name} on {len(rows)} inputs")
        results.append(bias_mod.probe_bias(subject, rows, data.label_names, batch_size=args.batch_size))
    paths = bias_mod.write_outputs(Path(args.output), results, len(rows), title=args.title)
    kind = "multi-label" if data.multi_label else "single-label"
    header = (
        f"data: {len(rows)} inputs of {data.source} ({kind}; class-balanced sample, seed {args.seed})\n"
        f"models:\n{_describe(subjects)}\n"
    )
    for s in subjects:
        words = ", ".join(f"{n}={w!r}" for n, w in zip(s.label_names, s.verbalizer_tokens()))
        header += f"  {s.name} label tokens: {words}\n"
    text = bias_mod.summary(results, len(rows))
    paths["summary"].write_text(header + text + "\n", encoding="utf-8")
    print(header + text)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _target_layer(args) -> int:
    import random

    from ..data import Collator, Example, TaskDataset, build_task_spec
    from ..methods.bias_aware import interchange_ablation, write_curve
    from ..models.loading import load_backbone

    data = _data(args)
    if data.multi_label:
        raise ConfigError("probe target-layer pairs each input with one gold label; the data is multi-label")
    _progress(f"loading {args.model}")
    backbone = load_backbone(_named(args.model)[1])
    if not backbone.geometry.is_decoder:
        raise ConfigError("probe target-layer reads labels through an LM head: --model must be a decoder")
    prompt = _base_prompt(args, [], True)
    names = list(data.label_names)
    spec = build_task_spec(
        TaskDataset([Example(text="x", label=0)], names, name="labels"), backbone.geometry, backbone.tokenizer, prompt
    )
    collator = Collator(backbone.tokenizer, backbone.geometry, len(names), prompt, args.max_length)
    rows = random.Random(args.seed).sample(data.rows, min(args.examples, len(data.rows)))
    _progress(
        f"interchange ablation of {args.component} over {len(rows)} pairs and {backbone.geometry.num_layers} layers"
    )
    curve = interchange_ablation(
        backbone.model,
        backbone.geometry,
        collator.prompt_ids([r.example() for r in rows]),
        [r.labels[0] for r in rows],
        spec.verbalizer_ids,
        args.component,
        pad_id=backbone.tokenizer.pad_token_id or 0,
    )
    paths = write_curve(curve, args.output, title=args.title)
    lines = [
        f"data: {len(rows)} inputs of {data.source} (seed {args.seed})",
        f"model: {backbone.name}",
        f"prompt: {prompt.template!r}",
        f"component: {args.component}",
        "layer  mean KL",
    ]
    lines += [f"{i:5d}  {v:.6f}" + ("  <- chosen" if i == curve.layer else "") for i, v in enumerate(curve.kl)]
    lines.append(f"chosen target layer: {curve.layer} (0-based; of {len(curve.kl)})")
    summary = Path(args.output) / "summary.txt"
    from ..utils.atomic_files import write_text_atomically

    write_text_atomically(summary, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {paths['csv']}, {paths['png']}, {summary}")
    return 0
