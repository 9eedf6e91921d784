"""Preference-shift builders: turn a dataset into a shifted variant plus a card describing the change."""

from .cards import write_card, write_dataset_jsonl
from .sst2_p import polarity_shift

__all__ = ["polarity_shift", "write_card", "write_dataset_jsonl"]
