"""Alpaca-InstructionShift (Alpaca-IS): responses rewritten as terse, elaborate or conversational.

DCPC paper, appendix A.1.1: GPT-3.5 rewrites each response in three styles, keeping the task
and meaning. Each selected example's ``answer`` becomes the rewrite in one style (drawn
uniformly, seeded); ``references`` keep the original response for the judge.
"""

from __future__ import annotations

from ..data.examples import TaskDataset
from ..errors import ConfigError
from .styles import answer_item, styled_shift

PAPER = "DCPC appendix A.1.1 (Alpaca-IS)"


def instruction_shift(
    dataset: TaskDataset,
    *,
    fraction: float = 1.0,
    styles: list[str] | str | None = None,
    rephraser="rule",
    seed: int = 0,
) -> tuple[TaskDataset, dict]:
    """Apply Alpaca-IS to an instruction dataset (instruction in ``text``, input in ``text_pair``).

    ``fraction`` (default all) of the responses are rewritten in a style drawn from ``styles``
    (default terse, elaborate, conversational) by ``rephraser`` ("rule", "chat" or a
    Rephraser). The input is not modified.
    """
    if not dataset.is_generation:
        raise ConfigError(f"the Alpaca-IS shift needs a generation dataset with responses; {dataset.name} has none")

    return styled_shift(
        dataset,
        shift="alpaca-is",
        paper=PAPER,
        task="alpaca",
        suffix="IS",
        item=answer_item(lambda ex: ex.text if not ex.text_pair else f"{ex.text}\n\n{ex.text_pair}"),
        styles=styles,
        fraction=fraction,
        rephraser=rephraser,
        seed=seed,
    )
