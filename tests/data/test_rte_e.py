"""RTE-E (DCPC appendix A.1.1, eq. 19-21) against hand-worked values."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefalign.data.examples import Example, TaskDataset
from prefalign.data.readers import read_table
from prefalign.errors import ConfigError
from prefalign.shifts import entailment_shift
from prefalign.shifts.rte_e import biased_distribution

NAMES = ["entailment", "not_entailment"]  # sorted, as the SuperGLUE files give them: entailment = 0


def rte(labels: list[int]) -> TaskDataset:
    return TaskDataset(
        [Example(text=f"premise {i}", text_pair="hypothesis", label=y) for i, y in enumerate(labels)],
        list(NAMES),
        name="rte",
    )


def test_eq_19_20_by_hand():
    # One-hot entailment, beta 1.5: P_b(not) = 1.5 / 2.5 = 0.6, P_b(ent) = 1 / 2.5 = 0.4.
    assert biased_distribution(0.0, 1.0, True, 1.5) == pytest.approx((0.6, 0.4))
    # One-hot non-entailment: P_b(not) = 1 / 2.5, P_b(ent) = 0.
    assert biased_distribution(1.0, 0.0, False, 1.5) == pytest.approx((0.4, 0.0))
    # Soft entailment (0.3, 0.7), beta 0.5: (0.3 + 0.5) / 1.5 and 0.7 / 1.5.
    assert biased_distribution(0.3, 0.7, True, 0.5) == pytest.approx((0.8 / 1.5, 0.7 / 1.5))


def test_every_selected_entailment_flips_when_beta_exceeds_one():
    data = rte([0, 1] * 10)
    shifted, card = entailment_shift(data, beta=1.5, fraction=1.0)
    assert [ex.label for ex in shifted.examples] == [1] * 20
    assert card["hard_label_flips"] == 10 and card["n_changed"] == 20
    assert card["label_distribution_before"] == {"entailment": 10.0, "not_entailment": 10.0}
    assert card["label_distribution_after"] == {"entailment": 0.0, "not_entailment": 20.0}
    assert [ex.label for ex in data.examples] == [0, 1] * 10  # input untouched


def test_beta_below_one_changes_no_hard_label():
    shifted, card = entailment_shift(rte([0, 1] * 5), beta=0.9, fraction=1.0)
    assert card["hard_label_flips"] == 0
    assert shifted.examples[0].meta["p_biased"]["not_entailment"] == pytest.approx(0.9 / 1.9)


def test_fraction_and_seed_choose_a_deterministic_subset():
    data = rte([0] * 40)
    a, card = entailment_shift(data, fraction=0.25, seed=3)
    b, _ = entailment_shift(data, fraction=0.25, seed=3)
    c, _ = entailment_shift(data, fraction=0.25, seed=4)
    flipped = [i for i, ex in enumerate(a.examples) if ex.label == 1]
    assert len(flipped) == 10 == card["hard_label_flips"]
    assert flipped == [i for i, ex in enumerate(b.examples) if ex.label == 1]
    assert flipped != [i for i, ex in enumerate(c.examples) if ex.label == 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": -1.0}, "beta"),
        ({"fraction": 1.5}, "fraction"),
        ({"entailment_label": "yes"}, "entailment_label"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        entailment_shift(rte([0, 1]), **kwargs)


def test_real_rte_file():
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rte" / "val.jsonl"
    if not path.exists():
        pytest.skip(f"the shared RTE data is not at {path}")
    data = read_table(path, text_column="premise", text_pair_column="hypothesis", label_names=NAMES)
    shifted, card = entailment_shift(data, fraction=0.3, seed=0)
    entailed_chosen = sum(1 for a, b in zip(data.examples, shifted.examples) if b.meta.get("shifted") and a.label == 0)
    assert card["hard_label_flips"] == entailed_chosen > 0
    assert card["label_distribution_after"]["not_entailment"] == (
        card["label_distribution_before"]["not_entailment"] + entailed_chosen
    )
