"""`prefalign methods`: the registered methods, with --model their tunable parameters."""

from __future__ import annotations

COMMAND = "methods"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("methods", help="list the registered methods (with --model: their tunable parameters)")
    p.add_argument("--model", help="count each method's tunable parameters on this backbone for a 2-class task")


def run(args) -> int:
    from ..methods import METHODS

    counts = _tunable_counts(args.model) if args.model else {}
    for name, cls in METHODS.items():
        # A named variant (DCPC's ablations, P-Tuning v2) says what it switches off; others, what they configure.
        about = ((cls.__doc__ if cls.config_defaults else cls.config_class.__doc__) or "").strip().splitlines()[0]
        count = "" if not counts else f"{counts[name]:>12,d}  " if counts.get(name) is not None else f"{'-':>12}  "
        print(f"{name:20s} {count}{about}")
    return 0


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
