"""What the answer-style shifts (BoolQ-PS, ReCoRD-R, Alpaca-IS) share: pick, rephrase, count and
describe (``styled_shift``).

``fraction`` of the examples (drawn with ``random.Random(seed)``) each get one style, drawn
uniformly from ``styles`` with the same generator; their answer becomes the rephraser's rewrite
in that style. The others keep their plain answer. Every example's ``meta`` records
``style`` ("original" when untouched) and ``original_answer``.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path

from ..data.examples import Example, TaskDataset
from ..errors import ConfigError
from ..utils.atomic_files import write_text_atomically
from .cards import check_unit_interval
from .rephrase import STYLES, make_rephraser

# example -> (context for the prompt, answer shown to the rephraser, plain answer kept when unselected)
Item = Callable[[Example], tuple[str, str, str]]


def parse_styles(task: str, styles) -> list[str]:
    """``styles`` as a list (a comma-separated string is accepted), each one of ``STYLES[task]``."""
    known = STYLES[task]
    if styles is None:
        return list(known)
    if isinstance(styles, str):
        styles = [s.strip() for s in styles.split(",") if s.strip()]
    if not isinstance(styles, (list, tuple)) or not styles or not all(isinstance(s, str) for s in styles):
        raise ConfigError(f"styles must be a non-empty list drawn from {', '.join(known)}, got {styles!r}")
    unknown = [s for s in styles if s not in known]
    if unknown:
        raise ConfigError(f"unknown style {', '.join(unknown)}; choose from {', '.join(known)}")
    return list(dict.fromkeys(styles))


def restyle(
    dataset: TaskDataset,
    *,
    task: str,
    item: Item,
    styles,
    fraction: float,
    rephraser,
    seed: int,
    label_names: list[str],
    name: str,
) -> tuple[TaskDataset, dict, str]:
    """Rewrite the answers of a random ``fraction`` into styles; return the dataset, its counts and the
    rephraser's name."""
    styles = parse_styles(task, styles)
    check_unit_interval("fraction", fraction)
    rephraser = make_rephraser(rephraser, seed)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(dataset)), round(fraction * len(dataset))))
    style_of = {i: rng.choice(styles) for i in chosen}
    examples, changed = [], {s: 0 for s in styles}
    for i, source in enumerate(dataset.examples):
        ex = copy.deepcopy(source)
        context, shown, plain = item(ex)
        answer, style = plain, "original"
        if i in style_of:
            style = style_of[i]
            answer = rephraser.rephrase(task, context, shown)[style].strip() or plain
            changed[style] += int(answer != plain)
        ex.answer = answer
        ex.meta.update({"style": style, "original_answer": plain})
        examples.append(ex)
    shifted = TaskDataset(examples, list(label_names), name)
    counts = {
        "n_selected": len(chosen),
        "n_changed": sum(changed.values()),
        "n_changed_by_style": changed,
        "styles_used": sorted({style_of[i] for i in chosen}),
    }
    return shifted, counts, rephraser.name


def style_distribution(dataset: TaskDataset) -> dict[str, float]:
    """How many examples carry each answer style ("original" for untouched answers)."""
    out: dict[str, float] = {}
    for ex in dataset.examples:
        style = ex.meta.get("style", "original")
        out[style] = out.get(style, 0.0) + 1.0
    return out


def generation_card(
    shift: str, paper: str, source: TaskDataset, shifted: TaskDataset, parameters: dict, **counts: object
) -> dict:
    """A card like ``shift_card``'s for a generation dataset without class labels.

    Its "label" distribution is the distribution of answer styles, before ("original" for all)
    and after the shift, as ``label_distribution_note`` says.
    """
    return {
        "shift": shift,
        "paper": paper,
        "source_dataset": source.name,
        "dataset": shifted.name,
        "label_names": [],
        "parameters": parameters,
        "n_examples": len(shifted),
        **counts,
        "label_distribution_note": "generation task: the distributions count answer styles",
        "label_distribution_before": {"original": float(len(source))},
        "label_distribution_after": style_distribution(shifted),
    }


def styled_shift(
    dataset: TaskDataset,
    *,
    shift: str,
    paper: str,
    task: str,
    suffix: str,
    item: Item,
    styles,
    fraction: float,
    rephraser,
    seed: int,
    parameters: dict | None = None,
    extra_counts: Callable[[TaskDataset], dict] | None = None,
    card: Callable[..., dict] = generation_card,
) -> tuple[TaskDataset, dict]:
    """An answer-style shift from start to card: ``restyle`` the dataset into ``<name>-<suffix>`` and
    describe it with ``card`` (default ``generation_card``) under ``shift`` and ``paper``.

    The card's parameters are fraction, styles (default: the task's three), the rephraser used,
    the shift's own ``parameters`` and the seed; its counts are ``restyle``'s plus
    ``extra_counts(shifted)``.
    """
    shifted, counts, used = restyle(
        dataset,
        task=task,
        item=item,
        styles=styles,
        fraction=fraction,
        rephraser=rephraser,
        seed=seed,
        label_names=list(dataset.label_names),
        name=f"{dataset.name}-{suffix}",
    )
    described = {
        "fraction": fraction,
        "styles": styles or ", ".join(STYLES[task]),
        "rephraser": used,
        **(parameters or {}),
        "seed": seed,
    }
    extra = extra_counts(shifted) if extra_counts is not None else {}
    return shifted, card(shift, paper, dataset, shifted, described, **counts, **extra)


def answer_item(context: Callable[[Example], str]) -> Item:
    """The ``Item`` of a generation example whose answer is rewritten as it is: ``context(ex)`` for the
    prompt, the answer both shown and kept; ``references`` default to the gold answer."""

    def item(ex: Example) -> tuple[str, str, str]:
        if ex.references is None:
            ex.references = [ex.answer]
        return context(ex), ex.answer, ex.answer

    return item


def write_generation_jsonl(path: str | Path, dataset: TaskDataset) -> Path:
    """Write a generation dataset as JSON lines (atomically): one object per example with ``text``,
    ``text_pair``, ``label`` (a class index or null), ``answer``, ``references`` and ``meta``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {
                "text": ex.text,
                "text_pair": ex.text_pair,
                "label": ex.label,
                "answer": ex.answer,
                "references": ex.references if ex.references is not None else [ex.answer],
                "meta": ex.meta,
            },
            ensure_ascii=False,
        )
        + "\n"
        for ex in dataset
    ]
    write_text_atomically(path, "".join(lines))
    return path
