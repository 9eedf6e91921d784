"""`prefalign methods [NAME]`: the registered methods (with --model their tunable parameters), or one
method's options with their defaults and help."""

from __future__ import annotations

COMMAND = "methods"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "methods",
        help="list the registered methods (with --model: their tunable parameters); with NAME, that method's "
        "options, defaults and paper sections",
    )
    p.add_argument("name", nargs="?", help="a method: print its options (method.<option>), defaults and help")
    p.add_argument("--model", help="count each method's tunable parameters on this backbone for a 2-class task")


def run(args) -> int:
    from ..methods import METHODS

    if args.name:
        print(method_options(args.name))
        return 0
    counts = _tunable_counts(args.model) if args.model else {}
    for name, cls in METHODS.items():
        # A named variant (DCPC's ablations, P-Tuning v2) says what it switches off; others, what they configure.
        about = ((cls.__doc__ if cls.config_defaults else cls.config_class.__doc__) or "").strip().splitlines()[0]
        count = "" if not counts else f"{counts[name]:>12,d}  " if counts.get(name) is not None else f"{'-':>12}  "
        print(f"{name:20s} {count}{about}")
    return 0


def method_options(name: str) -> str:
    """One line per option of method ``name``: ``method.<option>``, its default (the variant's), choices and help."""
    import dataclasses

    from ..methods import method_class, method_config

    cls = method_class(name)
    config = method_config(name)
    about = ((cls.__doc__ if cls.config_defaults else cls.config_class.__doc__) or "").strip().splitlines()[0]
    lines = [f"{name}: {about}", "options (set as method.<option> in a config or with --set):"]
    fields = [f for f in dataclasses.fields(config) if f.name != "name"]
    width = max((len(f.name) for f in fields), default=0)
    for f in fields:
        value = getattr(config, f.name)
        choices = f.metadata.get("choices")
        extra = f" [{' | '.join(map(str, choices))}]" if choices else ""
        variant = "  (this variant's)" if f.name in cls.config_defaults else ""
        lines.append(f"  {f.name:{width}s}  {value!r}{variant}{extra}")
        lines.append(f"  {'':{width}s}  {f.metadata.get('help', '')}")
    return "\n".join(lines)


def _tunable_counts(model_name: str) -> dict[str, int]:
    """Tunable parameters of every method on ``model_name`` for a two-class task (head included)."""
    from ..data import Example, PromptFormat, TaskDataset, build_task_spec
    from ..errors import ConfigError
    from ..methods import METHODS, build_method, method_config
    from ..models.loading import load_backbone

    backbone = load_backbone(model_name)
    data = TaskDataset([Example(text="a", label=0), Example(text="b", label=1)], ["negative", "positive"])
    spec = build_task_spec(data, backbone.geometry, backbone.tokenizer, PromptFormat(template="{text}\nAnswer:"))
    out: dict[str, int | None] = {}
    for name in METHODS:
        try:
            model = build_method(method_config(name), backbone, spec)
        except ConfigError:  # a method this backbone cannot run (CC, DC, bias-aware need a decoder): '-'
            out[name] = None
            continue
        out[name] = sum(p.numel() for p in model.trainable_parameters().values())
        del model
    return out
