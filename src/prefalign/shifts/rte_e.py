"""RTE-EntailmentShift (RTE-E): bias a subset of entailment labels towards contradiction.

DCPC paper, appendix A.1.1, eq. 19-21. For a selected premise-hypothesis pair with label
distribution P (one-hot for a hard label, the given distribution for a soft one),
P_biased(0) = (P(0) + beta * I[y = 1]) / (P(0) + P(1) + beta) and
P_biased(1) = P(1) / (P(0) + P(1) + beta), with 1 = entailment; the new hard label is 0 when
P_biased(0) > P_biased(1) (eq. 21). With a one-hot P an entailment pair flips exactly when
beta > 1, and a non-entailment pair never does.
"""

from __future__ import annotations

import copy
import random

from ..data.examples import TaskDataset
from ..errors import ConfigError
from .cards import check_unit_interval, shift_card

PAPER = "DCPC appendix A.1.1 eq. 19-21"


def biased_distribution(p_not: float, p_ent: float, is_entailment: bool, beta: float) -> tuple[float, float]:
    """Eq. 19-20: (P_biased(not entailment), P_biased(entailment))."""
    z = p_not + p_ent + beta
    return (p_not + beta * float(is_entailment)) / z, p_ent / z


def entailment_shift(
    dataset: TaskDataset,
    *,
    beta: float = 1.5,
    fraction: float = 0.3,
    entailment_label: str = "entailment",
    seed: int = 0,
) -> tuple[TaskDataset, dict]:
    """Apply the RTE-E shift to a two-class entailment dataset; return it and its card.

    The paper shifts "a subset" with an unstated beta: ``fraction`` of all examples (drawn with
    ``random.Random(seed)``) go through eq. 19-21, and ``beta`` defaults to 1.5 (> 1, so every
    selected entailment pair with a hard label becomes non-entailment). A pair's "original label"
    y is its hard label. Shifted examples get the new hard label, no soft label, and
    ``meta["p_biased"]``; the input dataset is not modified.
    """
    if dataset.num_classes != 2 or dataset.is_multiple_choice:
        raise ConfigError(
            f"the RTE-E shift needs a two-class entailment dataset; {dataset.name} has classes {dataset.label_names}"
        )
    if entailment_label not in dataset.label_names:
        raise ConfigError(f"entailment_label {entailment_label!r} is not one of {dataset.label_names}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ConfigError(f"beta must be a non-negative number, got {beta!r}")
    check_unit_interval("fraction", fraction)
    ent = dataset.label_names.index(entailment_label)
    other = 1 - ent
    examples = [copy.deepcopy(ex) for ex in dataset.examples]
    chosen = sorted(random.Random(seed).sample(range(len(examples)), round(fraction * len(examples))))
    flips = 0
    for i in chosen:
        ex = examples[i]
        dist = ex.target(2)
        y = ex.hard_label()
        p_not, p_ent = biased_distribution(dist[other], dist[ent], y == ent, beta)
        new = other if p_not > p_ent else ent  # eq. 21
        flips += int(new != y)
        ex.label, ex.soft_label = new, None
        ex.meta.update({"shifted": True, "p_biased": {dataset.label_names[other]: p_not, entailment_label: p_ent}})
    shifted = TaskDataset(examples, list(dataset.label_names), f"{dataset.name}-E")
    parameters = {"beta": beta, "fraction": fraction, "entailment_label": entailment_label, "seed": seed}
    card = shift_card("rte-e", PAPER, dataset, shifted, parameters, n_changed=len(chosen), hard_label_flips=flips)
    return shifted, card
