"""``data.annotations``: how a multi-annotator file reads, how ratings bin, which annotator groups are scored."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..utils.config_base import ConfigBase
from ..utils.config_base import option as _f


@dataclass
class AnnotationConfig(ConfigBase):
    """Options of multi-annotator data (registered tasks such as md-agreement, or your own files)."""

    SECTION = "data.annotations"
    format: str | None = _f(
        None,
        "layout of data.train/validation/test: 'long' (one row per item, annotator, label "
        "as crowd-kit takes it), 'lists' (one row per item, a list of labels in label_column) "
        "or 'counts' (one column of annotator counts per class); registered tasks set their own",
        choices=("long", "lists", "counts"),
    )
    item_column: str = _f("task", "long format: column with the item id")
    annotator_column: str = _f(
        "worker",
        "long format: column with the annotator id; lists format: optional column with the list of annotator ids",
    )
    count_columns: list[str] | None = _f(None, "counts format: one column per class, in class order")
    rating_bins: list[float] | None = _f(
        None,
        "ascending edges that bin numeric ratings into classes: rating r is "
        "class k when bins[k-1] <= r < bins[k]; POPQUORN's default [3] makes "
        "1-2 'not offensive' and 3-5 'offensive'",
    )
    group_columns: list[str] | None = _f(
        None,
        "annotator attribute columns (long format) whose values define the "
        "groups scored one by one (POPQUORN default: gender, race, age)",
    )
    min_group_annotators: int = _f(5, "a group is scored only if at least this many annotators belong to it")
    weights: str | None = _f(
        None,
        "weight training examples: 'crowdlab' samples each in proportion to cleanlab's "
        "CROWDLAB consensus quality score (needs annotator ids and prefalign[crowd])",
        choices=("crowdlab",),
    )

    def validate(self) -> None:
        self.check_range("min_group_annotators", 1, None)
        if self.format == "counts" and not self.count_columns:
            raise ConfigError("data.annotations.format counts needs count_columns, one column per class")
        if self.rating_bins is not None:
            bins = self.rating_bins
            if not bins or any(lo >= hi for lo, hi in zip(bins, bins[1:])):
                raise ConfigError(f"data.annotations.rating_bins {bins} must be ascending edges, e.g. [3]")
