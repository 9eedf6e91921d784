"""Examples, file readers, the embedded Rotten Tomatoes corpus, prompts and the collator.

The names below are imported on first use (PEP 562): ``prefalign.data.examples`` and the readers need
no torch, so the task registry and `prefalign tasks` load without it; the collator brings torch along.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "Collator": ".collator",
    "PromptFormat": ".prompts",
    "build_task_spec": ".collator",
    "Example": ".examples",
    "TaskDataset": ".examples",
    "read_table": ".readers",
    "load_rotten_tomatoes": ".rotten_tomatoes",
}
__all__ = [
    "Collator",
    "Example",
    "PromptFormat",
    "TaskDataset",
    "build_task_spec",
    "load_rotten_tomatoes",
    "read_table",
]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from .collator import Collator, build_task_spec
    from .examples import Example, TaskDataset
    from .prompts import PromptFormat
    from .readers import read_table
    from .rotten_tomatoes import load_rotten_tomatoes
