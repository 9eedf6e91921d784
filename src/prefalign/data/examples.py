"""The in-memory form of a labelled dataset, shared by every loader, method and metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import DataError


@dataclass
class Example:
    """One labelled input.

    ``text`` is always set; ``text_pair`` holds the second segment of a pair task (RTE's
    hypothesis); ``choices`` holds the candidate continuations of a multiple-choice task
    (COPA), in which case the label indexes ``choices``. ``label`` is the hard label (an index
    into the dataset's label names), ``soft_label`` an optional distribution over the classes.
    A loader sets at least one of them; ``target()`` turns either into a distribution.

    Generation tasks (ReCoRD, Alpaca, BoolQ-PS answers) set ``answer`` instead: the text a
    decoder is trained to produce after the prompt; ``references`` holds every acceptable
    answer for the metric (ReCoRD lists several), defaulting to ``[answer]``.
    """

    text: str
    label: int | None = None
    text_pair: str | None = None
    choices: list[str] | None = None
    soft_label: list[float] | None = None
    meta: dict = field(default_factory=dict)
    answer: str | None = None
    references: list[str] | None = None

    def target(self, num_classes: int) -> list[float]:
        """The training target as a probability distribution over ``num_classes`` classes."""
        if self.soft_label is not None:
            return list(self.soft_label)
        dist = [0.0] * num_classes
        dist[self.label] = 1.0
        return dist

    def hard_label(self) -> int:
        """The hard label: ``label`` if set, else the argmax of ``soft_label``."""
        if self.label is not None:
            return self.label
        return max(range(len(self.soft_label)), key=self.soft_label.__getitem__)


@dataclass
class TaskDataset:
    """A list of examples plus the names of their classes (or choices, for multiple choice)."""

    examples: list[Example]
    label_names: list[str]
    name: str = "dataset"

    def __post_init__(self) -> None:
        validate_examples(self.examples, self.label_names, self.name)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.examples) and self.examples[0].choices is not None

    @property
    def is_generation(self) -> bool:
        """True when examples carry answer texts to generate rather than class labels."""
        return bool(self.examples) and self.examples[0].answer is not None

    def label_counts(self) -> dict[str, float]:
        """Mass per class: hard labels count 1, soft labels add their distribution."""
        counts = {name: 0.0 for name in self.label_names}
        for ex in self.examples:
            for name, p in zip(self.label_names, ex.target(self.num_classes)):
                counts[name] += p
        return counts


def example_text(ex: Example) -> str:
    """The text a shift or rephraser reads: the input and, for pair tasks, its second segment."""
    return ex.text if ex.text_pair is None else f"{ex.text}\n{ex.text_pair}"


def validate_examples(examples: Sequence[Example], label_names: Sequence[str], name: str) -> None:
    """Raise DataError on the first example a method could not train or evaluate on."""
    if not examples:
        raise DataError(f"{name}: the dataset is empty; check the path and any filters")
    if examples[0].answer is not None:
        _validate_generation(examples, name)
        return
    if len(label_names) < 2:
        raise DataError(f"{name}: need at least two classes, got {list(label_names)}")
    c = len(label_names)
    for i, ex in enumerate(examples):
        if not isinstance(ex.text, str) or not ex.text.strip():
            raise DataError(f"{name}: example {i} has an empty text")
        if ex.choices is not None and len(ex.choices) != c:
            raise DataError(f"{name}: example {i} has {len(ex.choices)} choices, expected {c}")
        if ex.label is None and ex.soft_label is None:
            raise DataError(f"{name}: example {i} has no label")
        if ex.label is not None and not (isinstance(ex.label, int) and 0 <= ex.label < c):
            raise DataError(f"{name}: example {i} has label {ex.label!r} outside the label set {list(label_names)}")
        if ex.soft_label is not None:
            s = ex.soft_label
            if len(s) != c or any((not p == p) or p < 0 for p in s) or abs(sum(s) - 1.0) > 1e-4:
                raise DataError(
                    f"{name}: example {i} has soft label {s!r}; it must be {c} non-negative numbers summing to 1"
                )


def _validate_generation(examples: Sequence[Example], name: str) -> None:
    """Every example of a generation task needs a non-empty prompt text and answer."""
    for i, ex in enumerate(examples):
        if not isinstance(ex.text, str) or not ex.text.strip():
            raise DataError(f"{name}: example {i} has an empty text")
        if not isinstance(ex.answer, str) or not ex.answer.strip():
            raise DataError(f"{name}: example {i} has no answer text; a generation task needs one per example")
        if ex.references is not None and (not ex.references or not all(isinstance(r, str) for r in ex.references)):
            raise DataError(f"{name}: example {i} has references {ex.references!r}; give a non-empty list of strings")
