"""BoolQ-PreferenceShift (BoolQ-PS): yes/no answers rewritten as casual, formal or expressive text.

DCPC paper, appendix A.1.1: GPT-3.5 rewrites each yes/no label in three styles with the same
meaning. Our reading: the output is a generation dataset whose ``answer`` is one styled rewrite
per selected example (its style drawn uniformly, seeded) and the plain label word ("yes"/"no")
for the others; ``label`` and ``meta["label"]`` keep the yes/no class, so accuracy can still be
computed. References default to the answer itself.
"""

from __future__ import annotations

from ..data.examples import TaskDataset, example_text
from ..errors import ConfigError
from .cards import shift_card
from .styles import styled_shift

PAPER = "DCPC appendix A.1.1 (BoolQ-PS)"


def preference_shift(
    dataset: TaskDataset,
    *,
    fraction: float = 1.0,
    styles: list[str] | str | None = None,
    rephraser="rule",
    yes_label: str = "yes",
    seed: int = 0,
) -> tuple[TaskDataset, dict]:
    """Apply BoolQ-PS to a two-class yes/no dataset; return the generation dataset and its card.

    ``fraction`` of the examples (default all, as the paper rewrites every label) get a styled
    answer; ``styles`` (default casual, formal, expressive) are the styles drawn from;
    ``rephraser`` is "rule" (offline, seeded), "chat" (the paper's prompt on an
    OpenAI-compatible endpoint, see ``prefalign.utils.endpoints``) or a Rephraser object. The question
    is ``text_pair`` when present (BoolQ's layout), else ``text``. The input is not modified.
    """
    if dataset.is_generation or dataset.is_multiple_choice or dataset.num_classes != 2:
        raise ConfigError(
            f"the BoolQ-PS shift needs a two-class yes/no dataset; {dataset.name} has classes {dataset.label_names}"
        )
    if yes_label not in dataset.label_names:
        raise ConfigError(f"yes_label {yes_label!r} is not one of {dataset.label_names}")
    yes = dataset.label_names.index(yes_label)
    names = list(dataset.label_names)

    def item(ex):
        is_yes = ex.hard_label() == yes
        question = ex.text_pair if ex.text_pair is not None else example_text(ex)
        ex.meta["label"] = names[ex.hard_label()]
        return question, "Yes." if is_yes else "No.", "yes" if is_yes else "no"

    return styled_shift(
        dataset,
        shift="boolq-ps",
        paper=PAPER,
        task="boolq",
        suffix="PS",
        item=item,
        styles=styles,
        fraction=fraction,
        rephraser=rephraser,
        seed=seed,
        parameters={"yes_label": yes_label},
        extra_counts=lambda shifted: {"hard_label_flips": 0},
        card=shift_card,
    )
