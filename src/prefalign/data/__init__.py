"""Examples, file readers, the embedded Rotten Tomatoes corpus, prompts and the collator."""

from .collator import Collator, PromptFormat, build_task_spec
from .examples import Example, TaskDataset
from .readers import read_table
from .rotten_tomatoes import load_rotten_tomatoes

__all__ = [
    "Collator",
    "Example",
    "PromptFormat",
    "TaskDataset",
    "build_task_spec",
    "load_rotten_tomatoes",
    "read_table",
]
