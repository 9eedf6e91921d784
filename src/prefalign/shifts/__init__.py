"""Preference-shift builders: turn a dataset into a shifted variant plus a card describing the change."""

from .cards import write_card, write_dataset_jsonl
from .rte_e import entailment_shift
from .sst2_p import polarity_shift

__all__ = ["entailment_shift", "polarity_shift", "write_card", "write_dataset_jsonl"]
