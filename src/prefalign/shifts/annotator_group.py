"""A controlled preference shift: a simulated annotator group relabels a feature-defined subset.

Not in the DCPC paper (issue 15): SST-2-P never flips a hard label, so it cannot show a correction.
Here a group of annotators with a systematic preference (say, harsh on short reviews, or on reviews
that talk about the acting) labels part of the data: among the examples the ``subset`` rule selects
whose label is not the group's preferred label ``toward``, exactly ``round(rate * eligible)``
(drawn with ``random.Random(seed)``) get the hard label ``toward``. Similar inputs then carry
different labels, which is the case DCPC's losses target. Apply it to train (and validation) only;
test labels stay clean (``data.shift_splits``).
"""

from __future__ import annotations

import copy
import random
import re

from ..data.examples import TaskDataset
from ..errors import ConfigError
from .cards import check_unit_interval, shift_card

SOURCE = "prefalign issue 15 (controlled shift; not in the DCPC paper)"
ACTING = re.compile(r"\b(acting|actors?|actress(es)?|performances?|performers?|cast|roles?|played|plays)\b", re.I)
SUBSETS = ("short", "acting")


def in_subset(text: str, subset: str, max_words: int) -> bool:
    """The feature rule: 'short' = at most ``max_words`` whitespace-separated words; 'acting' = mentions
    acting (acting, actor(s), actress(es), performance(s), performer(s), cast, role(s), played, plays)."""
    if subset == "short":
        return len(text.split()) <= max_words
    if subset == "acting":
        return ACTING.search(text) is not None
    raise ConfigError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")


def annotator_group_shift(
    dataset: TaskDataset,
    *,
    subset: str = "short",
    max_words: int = 12,
    toward: int | str = 0,
    rate: float = 0.5,
    seed: int = 0,
) -> tuple[TaskDataset, dict]:
    """Flip ``rate`` of the subset's examples not labelled ``toward`` to ``toward``; return it and its card.

    ``toward`` is a label index or name (0: SST-2's negative, Rotten Tomatoes' rotten). Soft labels of
    flipped examples are dropped (the group gives a hard label); the input dataset is not modified.
    """
    if dataset.is_multiple_choice:
        raise ConfigError(
            f"the annotator-group shift needs a classification dataset; {dataset.name} is multiple choice"
        )
    if subset not in SUBSETS:
        raise ConfigError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ConfigError(f"max_words must be a positive whole number, got {max_words!r}")
    check_unit_interval("rate", rate)
    names = list(dataset.label_names)
    if isinstance(toward, str) and not isinstance(toward, bool):
        if toward not in names:
            raise ConfigError(f"toward {toward!r} is not one of the labels {names}")
        target = names.index(toward)
    elif isinstance(toward, int) and not isinstance(toward, bool) and 0 <= toward < len(names):
        target = toward
    else:
        raise ConfigError(f"toward must be a label name or an index below {len(names)}, got {toward!r}")
    examples = [copy.deepcopy(ex) for ex in dataset.examples]
    members = [i for i, ex in enumerate(examples) if in_subset(ex.text, subset, max_words)]
    eligible = [i for i in members if examples[i].hard_label() != target]
    chosen = sorted(random.Random(seed).sample(eligible, round(rate * len(eligible))))
    for i in chosen:
        ex = examples[i]
        ex.meta.update({"shifted": True, "original_label": names[ex.hard_label()]})
        ex.label, ex.soft_label = target, None
    shifted = TaskDataset(examples, names, f"{dataset.name}-A")
    parameters = {"subset": subset, "max_words": max_words, "toward": names[target], "rate": rate, "seed": seed}
    card = shift_card(
        "annotator-group",
        SOURCE,
        dataset,
        shifted,
        parameters,
        n_subset=len(members),
        n_eligible=len(eligible),
        hard_label_flips=len(chosen),
    )
    card["flipped_share_of_eligible"] = round(len(chosen) / len(eligible), 6) if eligible else 0.0
    return shifted, card
