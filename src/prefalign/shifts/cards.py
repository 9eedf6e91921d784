"""Write a shifted dataset and its card (JSON plus a short Markdown summary), each atomically."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.examples import TaskDataset
from ..errors import ConfigError
from ..utils.atomic_files import write_text_atomically


def write_card(directory: str | Path, card: dict, filename: str = "DATASET_CARD") -> tuple[Path, Path]:
    """Write ``card`` as ``<filename>.json`` and a human-readable ``<filename>.md``; return both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{filename}.json", directory / f"{filename}.md"
    write_text_atomically(json_path, json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    write_text_atomically(md_path, _card_markdown(card))
    return json_path, md_path


def write_dataset_jsonl(path: str | Path, dataset: TaskDataset) -> Path:
    """Write a dataset as JSON lines, one object per example, that ``read_table`` reads back.

    Read it with ``read_table(path, soft_label_column="soft_label", label_names=...)``, adding
    ``text_pair_column="text_pair"`` or ``choice_columns`` as needed. Each object has ``text``
    and ``label`` (a class index, or null); ``text_pair``, ``choices`` and ``soft_label`` appear
    when any example has one (null on the others).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = ("text_pair", "choices", "soft_label")
    optional = [key for key in keys if any(getattr(ex, key) is not None for ex in dataset)]
    lines = []
    for ex in dataset:
        record = {"text": ex.text, "label": ex.label}
        record.update({key: getattr(ex, key) for key in optional})
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    write_text_atomically(path, "".join(lines))
    return path


def _card_markdown(card: dict) -> str:
    """Render a card as Markdown: title, parameters, counts and a before/after label table."""
    title = card.get("dataset") or card.get("shift", "dataset")
    lines = [f"# Dataset card: {title}", ""]
    if "shift" in card:
        source = f" of `{card['source_dataset']}`" if "source_dataset" in card else ""
        paper = f" ({card['paper']})" if "paper" in card else ""
        lines += [f"Shift `{card['shift']}`{source}{paper}.", ""]
    if card.get("parameters"):
        lines += ["## Parameters", ""] + [f"- {k}: {v}" for k, v in card["parameters"].items()] + [""]
    counts = [(k, v) for k, v in card.items() if k.startswith("n_") or k == "hard_label_flips"]
    if counts:
        lines += ["## Counts", ""]
        for key, value in counts:
            shown = ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else value
            lines.append(f"- {key}: {shown}")
        lines.append("")
    before, after = card.get("label_distribution_before"), card.get("label_distribution_after")
    if before is not None and after is not None:
        lines += ["## Label distribution", "", "| label | before | after |", "|---|---:|---:|"]
        for name in {**before, **after}:
            lines.append(f"| {name} | {_number(before.get(name, 0))} | {_number(after.get(name, 0))} |")
        lines.append("")
    return "\n".join(lines)


def _number(value: float) -> str:
    """A mass without float noise or trailing zeros: 214.4, 428."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def shift_card(
    shift: str, paper: str, source: TaskDataset, shifted: TaskDataset, parameters: dict, **counts: object
) -> dict:
    """A shift's card: what was shifted, with which parameters, and the label mass before and after."""
    return {
        "shift": shift,
        "paper": paper,
        "source_dataset": source.name,
        "dataset": shifted.name,
        "label_names": list(source.label_names),
        "parameters": parameters,
        "n_examples": len(shifted),
        **counts,
        "label_distribution_before": _rounded(source.label_counts()),
        "label_distribution_after": _rounded(shifted.label_counts()),
    }


def check_unit_interval(option: str, value: object) -> None:
    """Raise ConfigError unless ``value`` is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{option} must be a number in [0, 1], got {value!r}")


def _rounded(counts: dict[str, float]) -> dict[str, float]:
    """Class masses rounded to 6 decimals, so the card shows 214.4, not 214.39999999999998."""
    return {name: round(mass, 6) for name, mass in counts.items()}
