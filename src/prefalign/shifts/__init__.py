"""Preference-shift builders: turn a dataset into a shifted variant plus a card describing the change."""

from .annotator_group import annotator_group_shift
from .cards import write_card, write_dataset_jsonl
from .registry import SHIFTS, ShiftConfig, apply_shift, get_shift, register_shift, shift_parameters
from .rte_e import entailment_shift
from .sst2_p import polarity_shift

__all__ = [
    "SHIFTS",
    "ShiftConfig",
    "annotator_group_shift",
    "apply_shift",
    "entailment_shift",
    "get_shift",
    "polarity_shift",
    "register_shift",
    "shift_parameters",
    "write_card",
    "write_dataset_jsonl",
]
