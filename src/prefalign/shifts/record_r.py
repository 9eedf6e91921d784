"""ReCoRD-Rephrase (ReCoRD-R): the gold answer rewritten in three ways with the same meaning.

DCPC paper, appendix A.1.1: GPT-3.5 rewrites "the answers to the original questions" in three
ways. Each selected example's ``answer`` becomes one of the three rewrites (drawn uniformly,
seeded); ``references`` keep the gold entity texts, so F1/EM still score the entity. The
offline rephraser keeps the entity string verbatim inside its rewrite ("The answer is Obama.");
the card counts how many rewrites still contain a gold entity.
"""

from __future__ import annotations

from ..data.examples import TaskDataset
from ..errors import ConfigError
from .styles import answer_item, styled_shift

PAPER = "DCPC appendix A.1.1 (ReCoRD-R)"


def rephrase_shift(
    dataset: TaskDataset,
    *,
    fraction: float = 1.0,
    styles: list[str] | str | None = None,
    rephraser="rule",
    seed: int = 0,
) -> tuple[TaskDataset, dict]:
    """Apply ReCoRD-R to a generation dataset (passage in ``text``); return it and its card.

    ``fraction`` (default all, as in the paper) of the examples get a rewrite; ``styles`` are
    rephrasing-1..3 (the prompt's three rewrites); ``rephraser`` is "rule", "chat" or a
    Rephraser. The input is not modified.
    """
    if not dataset.is_generation:
        raise ConfigError(f"the ReCoRD-R shift needs a generation dataset with answers; {dataset.name} has none")

    def kept(shifted: TaskDataset) -> dict:
        return {
            "n_rephrased_keeping_gold_entity": sum(
                1
                for ex in shifted.examples
                if ex.meta["style"] != "original" and any(ref in ex.answer for ref in ex.references)
            )
        }

    return styled_shift(
        dataset,
        shift="record-r",
        paper=PAPER,
        task="record",
        suffix="R",
        item=answer_item(lambda ex: ex.text),
        styles=styles,
        fraction=fraction,
        rephraser=rephraser,
        seed=seed,
        extra_counts=kept,
    )
