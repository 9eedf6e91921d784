"""COPA-BS (eq. 14-15 and the human-related rule), BoolQ-PS, ReCoRD-R and Alpaca-IS: counts, bounds, seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefalign.data.examples import Example, TaskDataset
from prefalign.errors import ConfigError
from prefalign.shifts.copa_bs import bias_shift, biased_distribution, human_related_option, human_score
from prefalign.shifts.registry import SHIFTS, apply_shift
from prefalign.shifts.rephrase import yes_no
from prefalign.tasks import load_task

RECORD_FIXTURE = Path(__file__).resolve().parent / "data" / "record"
SHARED_COPA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "copa"


def copa(items: list[tuple[str, str, int]]) -> TaskDataset:
    return TaskDataset(
        [
            Example(text=f"premise {i} What was the cause?", choices=[a, b], label=y)
            for i, (a, b, y) in enumerate(items)
        ],
        ["choice1", "choice2"],
        name="copa",
    )


def boolq(labels: list[int]) -> TaskDataset:
    return TaskDataset(
        [Example(text=f"passage {i}", text_pair=f"is it {i}", label=y) for i, y in enumerate(labels)],
        ["no", "yes"],
        name="boolq",
    )


def alpaca(n: int = 12) -> TaskDataset:
    return TaskDataset(
        [
            Example(
                text=f"Explain idea {i}.",
                answer=f"Sure! It is very simple: idea {i} is a lot of fun. It is important to note that it works.",
                meta={"row": i},
            )
            for i in range(n)
        ],
        [],
        name="alpaca",
    )


def test_all_six_shifts_are_registered():
    assert {"sst2-p", "rte-e", "copa-bs", "boolq-ps", "record-r", "alpaca-is"} <= set(SHIFTS)


# -- COPA-BS ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "choice1, choice2, expected",
    [
        # hand-picked COPA items (val idx 6, 27, 92, 39, 0) and the paper's own example
        ("The forecast called for storms.", "My friends urged me to go out.", 1),
        ("He heard thunder.", "The sun went down.", 0),
        ("He parallel parked on the street.", "The parking meter expired.", 0),
        ("His hair turned gray.", "He sold his belongings.", 1),
        ("The toilet filled with water.", "Water flowed from the spout.", None),  # tie: neither
        ("The person went to the store.", "The rain caused flooding.", 0),
        ("The rain caused flooding.", "The person went to the store.", 1),
    ],
)
def test_human_related_rule_on_hand_picked_items(choice1, choice2, expected):
    assert human_related_option(choice1, choice2) == expected


def test_human_score_counts_people_pronouns_and_verbs_minus_nature():
    assert human_score("The woman called her friend.") == 4  # woman, called, her, friend
    assert human_score("The storm blew the tree over.") == -2  # storm, tree
    assert human_score("He watched the rain.") == 1  # he + watched - rain


def test_eq_14_15_by_hand():
    # One-hot on the natural option, alpha 1.5: P_b(o1) = 1.5 / 2.5 = 0.6, P_b(o2) = 1 / 2.5 = 0.4.
    assert biased_distribution(0.0, 1.0, True, 1.5) == pytest.approx((0.6, 0.4))
    # One-hot on the human option: P_b(o1) = (1 + 1.5) / 2.5 = 1, P_b(o2) = 0.
    assert biased_distribution(1.0, 0.0, True, 1.5) == pytest.approx((1.0, 0.0))
    # Soft (0.3, 0.7), alpha 0.5: (0.3 + 0.5) / 1.5 and 0.7 / 1.5; no human option: just rescaled.
    assert biased_distribution(0.3, 0.7, True, 0.5) == pytest.approx((0.8 / 1.5, 0.7 / 1.5))
    assert biased_distribution(0.3, 0.7, False, 0.5) == pytest.approx((0.3 / 1.5, 0.7 / 1.5))


HUMAN_NATURE = ("The man went to the store.", "The rain fell.")


def test_copa_bs_moves_answers_to_the_human_option():
    items = [
        (*HUMAN_NATURE, 1),
        (*HUMAN_NATURE, 0),
        (HUMAN_NATURE[1], HUMAN_NATURE[0], 0),
        ("It rained.", "It snowed.", 1),
    ]
    data = copa(items)
    shifted, card = bias_shift(data, alpha=1.5, fraction=1.0)
    assert [ex.label for ex in shifted] == [0, 0, 1, 1]
    assert card["n_changed"] == card["hard_label_flips"] == 2
    assert (card["n_selected"], card["n_with_human_option"], card["n_ties"]) == (4, 3, 1)
    assert (card["n_human_answer_before"], card["n_human_answer_after"]) == (1, 3)
    assert card["label_distribution_before"] == {"choice1": 2.0, "choice2": 2.0}
    assert card["label_distribution_after"] == {"choice1": 2.0, "choice2": 2.0}  # 0,0,1,1
    assert shifted[0].meta["p_biased"] == pytest.approx({"choice1": 0.6, "choice2": 0.4})
    assert shifted[3].meta["human_option"] is None
    assert [ex.label for ex in data] == [1, 0, 0, 1]  # input untouched


def test_copa_bs_alpha_at_most_one_changes_nothing():
    shifted, card = bias_shift(copa([(*HUMAN_NATURE, 1)] * 4), alpha=1.0, fraction=1.0)
    assert card["n_changed"] == 0 and all(ex.label == 1 for ex in shifted)  # 0.5 vs 0.5: not strictly more


def test_copa_bs_seed_picks_a_deterministic_subset():
    data = copa([(*HUMAN_NATURE, 1)] * 40)
    a, card = bias_shift(data, fraction=0.25, seed=1)
    b, _ = bias_shift(data, fraction=0.25, seed=1)
    c, _ = bias_shift(data, fraction=0.25, seed=2)
    changed = [i for i, ex in enumerate(a) if ex.label == 0]
    assert len(changed) == 10 == card["n_changed"]
    assert changed == [i for i, ex in enumerate(b) if ex.label == 0]
    assert changed != [i for i, ex in enumerate(c) if ex.label == 0]


@pytest.mark.parametrize(
    "kwargs, match", [({"alpha": -1}, "alpha"), ({"fraction": 2}, "fraction"), ({"alpha": True}, "alpha")]
)
def test_copa_bs_bad_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        bias_shift(copa([(*HUMAN_NATURE, 1)]), **kwargs)


def test_copa_bs_refuses_a_classification_dataset():
    with pytest.raises(ConfigError, match="two-choice"):
        bias_shift(boolq([0, 1]))


def test_copa_bs_on_the_real_val_set():
    if not (SHARED_COPA / "val.jsonl").exists():
        pytest.skip(f"the shared COPA data is not at {SHARED_COPA}")
    _, _, test = load_task("copa", SHARED_COPA)
    shifted, card = apply_shift("copa-bs", test, {"fraction": 1.0})
    assert card["n_with_human_option"] + card["n_ties"] == 100
    assert card["n_human_answer_after"] == card["n_with_human_option"]
    assert card["n_changed"] == card["n_human_answer_after"] - card["n_human_answer_before"] > 0


# -- BoolQ-PS --------------------------------------------------------------------------------------------
def test_boolq_ps_is_generation_keeping_the_yes_no_label():
    data = boolq([0, 1, 1, 0, 1, 1, 0, 1])
    shifted, card = apply_shift("boolq-ps", data)
    assert shifted.is_generation and shifted.label_names == ["no", "yes"]
    for src, ex in zip(data, shifted):
        assert ex.label == src.label and ex.meta["label"] == ["no", "yes"][src.label]
        assert yes_no(ex.answer) == bool(src.label)  # the styled answer keeps the meaning
        assert ex.meta["style"] in ("casual", "formal", "expressive") and ex.meta["original_answer"] in ("yes", "no")
    assert card["n_selected"] == card["n_changed"] == 8 and sum(card["n_changed_by_style"].values()) == 8
    assert card["label_distribution_before"] == card["label_distribution_after"] == {"no": 3.0, "yes": 5.0}
    assert data[0].answer is None and data[0].meta == {}  # input untouched


def test_boolq_ps_fraction_styles_and_seed():
    data = boolq([i % 2 for i in range(40)])
    a, card = apply_shift("boolq-ps", data, {"fraction": 0.5, "styles": "formal"}, seed=3)
    b, _ = apply_shift("boolq-ps", data, {"fraction": 0.5, "styles": ["formal"]}, seed=3)
    c, _ = apply_shift("boolq-ps", data, {"fraction": 0.5, "styles": ["formal"]}, seed=4)
    assert card["n_changed"] == 20 and card["n_changed_by_style"] == {"formal": 20}
    assert card["styles_used"] == ["formal"]
    assert [ex.answer for ex in a] == [ex.answer for ex in b]
    assert [ex.meta["style"] for ex in a] != [ex.meta["style"] for ex in c]
    plain = [ex for ex in a if ex.meta["style"] == "original"]
    assert len(plain) == 20 and all(ex.answer in ("yes", "no") for ex in plain)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"styles": "rude"}, "unknown style rude"),
        ({"fraction": -0.1}, "fraction"),
        ({"yes_label": "true"}, "yes_label"),
        ({"rephraser": "gpt"}, "rephraser"),
        ({"colour": 1}, "no parameter colour"),
    ],
)
def test_boolq_ps_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        apply_shift("boolq-ps", boolq([0, 1]), params)


# -- ReCoRD-R and Alpaca-IS --------------------------------------------------------------------------------
def test_record_r_keeps_the_entity_and_references():
    train, _, _ = load_task("record", RECORD_FIXTURE)
    shifted, card = apply_shift("record-r", train)
    assert card["n_changed"] == card["n_rephrased_keeping_gold_entity"] == 3
    for src, ex in zip(train, shifted):
        assert ex.references == src.references and src.answer in ex.answer and ex.answer != src.answer
    assert card["label_distribution_before"] == {"original": 3.0}
    assert sum(card["label_distribution_after"].values()) == 3.0
    assert train[0].answer == "Chemistry"  # input untouched


def test_alpaca_is_styles_counts_and_determinism():
    data = alpaca(12)
    a, card = apply_shift("alpaca-is", data, seed=0)
    b, _ = apply_shift("alpaca-is", data, seed=0)
    c, _ = apply_shift("alpaca-is", data, seed=1)
    assert [ex.answer for ex in a] == [ex.answer for ex in b]
    assert [ex.meta["style"] for ex in a] != [ex.meta["style"] for ex in c]
    assert card["n_changed"] == 12 and sum(card["n_changed_by_style"].values()) == 12
    for src, ex in zip(data, a):
        assert ex.references == [src.answer] and ex.meta["original_answer"] == src.answer
        if ex.meta["style"] == "terse":
            assert len(ex.answer) < len(src.answer) and f"idea {src.text.split()[2][:-1]}" in ex.answer
    assert card["label_distribution_after"] == {s: float(n) for s, n in card["n_changed_by_style"].items() if n}


def test_answer_shifts_refuse_classification_data():
    with pytest.raises(ConfigError, match="generation"):
        apply_shift("alpaca-is", boolq([0, 1]))
    with pytest.raises(ConfigError, match="yes/no"):
        apply_shift("boolq-ps", alpaca(2))
