"""SST-2-PolarityShift (SST-2-P): soften the sentiment labels of a subset of a binary dataset.

DCPC paper, appendix A.1.1, eq. 16-18. Each selected review keeps its hard label (the original
annotation) and gets a soft label whose P(positive) is the shifted label y' of eq. 16.
"""

from __future__ import annotations

import copy
import random

from ..data.examples import TaskDataset
from ..errors import ConfigError
from .cards import check_unit_interval, shift_card

PAPER = "DCPC appendix A.1.1 eq. 16-18"


def polarity_shift(
    dataset: TaskDataset,
    *,
    fraction: float = 0.5,
    delta_positive: float = 0.3,
    delta_negative: float = 0.4,
    positive_label: int = 1,
    seed: int = 0,
) -> tuple[TaskDataset, dict]:
    """Apply the SST-2-P polarity shift to a binary sentiment dataset; return it and its card.

    For a selected example with label y (1 = positive), eq. 16 gives
    y' = (1 - delta) * y + delta * (1 - y), with delta = ``delta_positive`` for positive
    reviews (eq. 17: 0.3 gives P(positive) = 0.7) and ``delta_negative`` for negative ones
    (eq. 18: 0.4 gives P(positive) = 0.4). The paper shifts "some" reviews without saying how
    many; ``fraction`` is our choice: ``round(fraction * n_class)`` examples of each class are
    drawn with ``random.Random(seed)`` (Python's round, half to even). Selected examples get
    ``soft_label`` and ``meta["shifted"] = True``; their hard ``label`` is unchanged. The input
    dataset is not modified. The card's ``hard_label_flips`` counts the examples whose soft
    label makes the opposite class strictly more likely (only when a delta exceeds 0.5).
    """
    _validate(dataset, fraction, delta_positive, delta_negative, positive_label)
    negative_label = 1 - positive_label
    rng = random.Random(seed)
    examples = [copy.deepcopy(ex) for ex in dataset.examples]

    n_changed_by_class, flips = {}, 0
    for cls, delta in ((negative_label, delta_negative), (positive_label, delta_positive)):
        members = [i for i, ex in enumerate(examples) if ex.label == cls]
        chosen = rng.sample(members, round(fraction * len(members)))
        y = 1.0 if cls == positive_label else 0.0
        y_shifted = (1.0 - delta) * y + delta * (1.0 - y)  # eq. 16, with y-hat = 1 - y
        soft = [0.0, 0.0]
        soft[positive_label], soft[negative_label] = y_shifted, 1.0 - y_shifted
        for i in chosen:
            examples[i].soft_label = list(soft)
            examples[i].meta["shifted"] = True
        n_changed_by_class[dataset.label_names[cls]] = len(chosen)
        flips += len(chosen) if delta > 0.5 else 0

    shifted = TaskDataset(examples, list(dataset.label_names), f"{dataset.name}-P")
    parameters = {
        "fraction": fraction,
        "delta_positive": delta_positive,
        "delta_negative": delta_negative,
        "positive_label": positive_label,
        "seed": seed,
    }
    card = shift_card(
        "sst2-p",
        PAPER,
        dataset,
        shifted,
        parameters,
        n_changed=sum(n_changed_by_class.values()),
        n_changed_by_class=n_changed_by_class,
        hard_label_flips=flips,
    )
    return shifted, card


def _validate(dataset: TaskDataset, fraction: float, delta_pos: float, delta_neg: float, positive_label: int) -> None:
    """Raise ConfigError unless the dataset and parameters fit the SST-2-P shift."""
    if dataset.num_classes != 2 or dataset.is_multiple_choice:
        raise ConfigError(
            f"the SST-2-P shift needs a binary sentiment dataset; {dataset.name} has classes "
            f"{dataset.label_names}{' and is multiple choice' if dataset.is_multiple_choice else ''}"
        )
    for option, value in (("fraction", fraction), ("delta_positive", delta_pos), ("delta_negative", delta_neg)):
        check_unit_interval(option, value)
    if positive_label not in (0, 1) or isinstance(positive_label, bool):
        raise ConfigError(f"positive_label must be 0 or 1 (the index of the positive class), got {positive_label!r}")
    for i, ex in enumerate(dataset.examples):
        if ex.soft_label is not None or ex.label is None:
            raise ConfigError(
                f"{dataset.name}: example {i} already has a soft label; the SST-2-P shift starts from hard labels"
            )
