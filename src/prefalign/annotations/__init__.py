"""Multi-annotator data end to end: formats and loaders, training targets, example weights.

See docs/annotations.md. The disagreement-aware metrics live in prefalign.evaluation.disagreement.
The names below are imported on first use (PEP 562), so reading the task registry stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "AnnotationConfig": ".config",
    **dict.fromkeys(("annotated_splits", "group_distributions", "group_names", "to_task_dataset"), ".dataset"),
    **dict.fromkeys(
        ("AnnotatedItems", "AnnotationWarning", "encode_labels", "from_counts", "from_label_lists", "from_long"),
        ".formats",
    ),
    **dict.fromkeys(("read_annotation_file", "read_davidson", "read_lewidi", "read_popquorn"), ".readers"),
    **dict.fromkeys(("TARGETS", "aggregate", "compute_targets", "label_distribution", "majority_vote"), ".targets"),
}
__all__ = [
    "AnnotatedItems",
    "AnnotationConfig",
    "AnnotationWarning",
    "TARGETS",
    "aggregate",
    "annotated_splits",
    "compute_targets",
    "encode_labels",
    "from_counts",
    "from_label_lists",
    "from_long",
    "group_distributions",
    "group_names",
    "label_distribution",
    "majority_vote",
    "read_annotation_file",
    "read_davidson",
    "read_lewidi",
    "read_popquorn",
    "to_task_dataset",
]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from .config import AnnotationConfig
    from .dataset import annotated_splits, group_distributions, group_names, to_task_dataset
    from .formats import AnnotatedItems, AnnotationWarning, encode_labels, from_counts, from_label_lists, from_long
    from .readers import read_annotation_file, read_davidson, read_lewidi, read_popquorn
    from .targets import TARGETS, aggregate, compute_targets, label_distribution, majority_vote
