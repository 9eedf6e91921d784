"""`prefalign predict`: class probabilities (or generated answers) of a saved adapter for a file or texts."""

from __future__ import annotations

import json

from .common import add_inference_args, data_section, load_adapter, load_rows

COMMAND = "predict"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="class probabilities of a saved adapter for a file or texts")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="file with a text column (labels not needed)")
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    p.add_argument("--output", "-o", help="write JSON lines here instead of standard output")
    view = p.add_mutually_exclusive_group()
    view.add_argument(
        "--annotator",
        help="annotator-conditioned adapters: predict this annotator's labels (an unseen id: the population)",
    )
    view.add_argument(
        "--panel",
        help="annotator-conditioned adapters: the mean over a panel's annotators, from a file with one id a line "
        "(or a CSV/JSONL with an 'annotator' column, other columns their attributes)",
    )
    add_inference_args(p)


def run(args) -> int:
    from ..inference import predict_proba

    model, backbone, collator, meta = load_adapter(args)
    names = meta["label_names"]
    if getattr(model.task, "generation", False):
        return _predict_answers(args, model, backbone, collator)
    data = load_rows(args, names, need_labels=False)
    probs = predict_proba(
        model,
        collator,
        data,
        batch_size=args.batch_size,
        progress=args.output is not None and args.bars,
        annotator=getattr(args, "annotator", None),
        panel=getattr(args, "panel", None),
    )
    annotator, panel = getattr(args, "annotator", None), getattr(args, "panel", None)
    view = {"annotator": annotator} if annotator else {"panel": panel} if panel else {}
    lines = [
        json.dumps(
            {
                "text": ex.text,
                "label": names[int(p.argmax())],
                "probabilities": {n: round(float(v), 6) for n, v in zip(names, p)},
                **view,
            }
        )
        for ex, p in zip(data.examples, probs)
    ]
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

        cfg = data_section(args)
        rows = read_inputs(args.data, ["0", "1"], **cfg.input_columns(), name="data")
        texts, pairs = [ex.text for ex in rows.examples], [ex.text_pair for ex in rows.examples]
    examples = [Example(text=t, text_pair=p, answer="-") for t, p in zip(texts, pairs)]
    answers = generate_from_ids(
        model, backbone.tokenizer, collator.prompt_ids(examples), num_beams=3, batch_size=args.batch_size
    )
    lines = [json.dumps({"text": t, "answer": a}) for t, a in zip(texts, answers)]
    _write_lines(args, lines)
    return 0


def _write_lines(args, lines: list[str]) -> None:
    if args.output:
        from ..utils.atomic_files import write_text_atomically

        write_text_atomically(args.output, "\n".join(lines) + "\n")
        print(f"wrote {len(lines)} predictions to {args.output}")
    else:
        print("\n".join(lines))
