"""The annotator-group shift (issue 15's controlled preference shift): the subset rule, the flipped
share, determinism by seed, the card and its errors."""

from __future__ import annotations

import pytest

from prefalign.data.examples import Example, TaskDataset
from prefalign.errors import ConfigError
from prefalign.shifts import annotator_group_shift, apply_shift, write_card
from prefalign.shifts.annotator_group import in_subset
from prefalign.shifts.registry import ShiftConfig, shift_parameters

NAMES = ["negative", "positive"]
SHORT_POS = "a fine film"  # 3 words
LONG_POS = "a fine film with a story that holds together from the first scene to the very last one"  # 18 words
ACTING_POS = "the acting is a marvel of restraint and wit throughout the whole film"  # 13 words, mentions acting


def reviews(texts_labels) -> TaskDataset:
    return TaskDataset([Example(text=t, label=y) for t, y in texts_labels], list(NAMES), name="reviews")


def test_subset_rules():
    assert in_subset(SHORT_POS, "short", 12) and not in_subset(LONG_POS, "short", 12)
    assert in_subset("one two three", "short", 3) and not in_subset("one two three four", "short", 3)
    assert in_subset(ACTING_POS, "acting", 12) and in_subset("Great CAST, weak script", "acting", 12)
    assert in_subset("she plays a nurse", "acting", 12) and in_subset("two fine performances", "acting", 12)
    assert not in_subset("an exacting, castle-bound drama", "acting", 12)  # whole words only
    assert not in_subset(LONG_POS, "acting", 12)


def test_flips_exactly_the_stated_share_of_the_eligible_subset_and_nothing_else():
    # 20 short positives, 10 short negatives, 10 long positives: eligible = the 20 short positives
    data = reviews([(SHORT_POS, 1)] * 20 + [(SHORT_POS, 0)] * 10 + [(LONG_POS, 1)] * 10)
    shifted, card = annotator_group_shift(data, subset="short", max_words=12, toward="negative", rate=0.25)
    labels = [ex.label for ex in shifted.examples]
    flipped = [i for i, (a, b) in enumerate(zip(data.examples, shifted.examples)) if a.label != b.label]
    assert len(flipped) == 5 and all(i < 20 for i in flipped)  # round(0.25 * 20), short positives only
    assert labels[20:] == [0] * 10 + [1] * 10  # negatives and long reviews untouched
    assert all(shifted.examples[i].meta == {"shifted": True, "original_label": "positive"} for i in flipped)
    assert card["n_subset"] == 30 and card["n_eligible"] == 20 and card["hard_label_flips"] == 5
    assert card["flipped_share_of_eligible"] == 0.25
    assert card["label_distribution_before"] == {"negative": 10.0, "positive": 30.0}
    assert card["label_distribution_after"] == {"negative": 15.0, "positive": 25.0}
    assert [ex.label for ex in data.examples] == [1] * 20 + [0] * 10 + [1] * 10  # input untouched


def test_toward_positive_and_acting_subset():
    data = reviews([(ACTING_POS, 0)] * 4 + [(ACTING_POS, 1)] * 4 + [(LONG_POS, 0)] * 4)
    shifted, card = annotator_group_shift(data, subset="acting", toward=1, rate=1.0)
    assert [ex.label for ex in shifted.examples] == [1] * 8 + [0] * 4
    assert card["parameters"]["toward"] == "positive" and card["hard_label_flips"] == 4


def test_soft_labels_of_flipped_examples_become_hard():
    data = TaskDataset([Example(text=SHORT_POS, label=1, soft_label=[0.3, 0.7])], list(NAMES), name="r")
    shifted, _ = annotator_group_shift(data, rate=1.0)
    assert shifted.examples[0].label == 0 and shifted.examples[0].soft_label is None


def test_deterministic_by_seed():
    data = reviews([(SHORT_POS, 1)] * 40)
    a, _ = annotator_group_shift(data, rate=0.5, seed=3)
    b, _ = annotator_group_shift(data, rate=0.5, seed=3)
    c, _ = annotator_group_shift(data, rate=0.5, seed=4)
    pick = lambda d: [i for i, ex in enumerate(d.examples) if ex.label == 0]  # noqa: E731
    assert pick(a) == pick(b) and len(pick(a)) == 20
    assert pick(a) != pick(c)


def test_registered_with_its_parameters_and_config():
    assert shift_parameters("annotator-group") == {
        "subset": "short",
        "max_words": 12,
        "toward": 0,
        "rate": 0.5,
        "seed": 0,
    }
    data = reviews([(SHORT_POS, 1)] * 10)
    shifted, card = ShiftConfig.from_dict({"name": "annotator-group", "rate": 0.3}).apply(data, seed=1)
    assert card["shift"] == "annotator-group" and card["hard_label_flips"] == 3
    assert shifted.name == "reviews-A"
    assert apply_shift("annotator-group", data, {"rate": 0.3}, seed=1)[1] == card


def test_card_is_written_as_json_and_markdown(tmp_path):
    _, card = annotator_group_shift(reviews([(SHORT_POS, 1)] * 10), rate=0.5)
    json_path, md_path = write_card(tmp_path, card)
    text = md_path.read_text()
    assert "Shift `annotator-group`" in text and "- hard_label_flips: 5" in text and "- n_eligible: 10" in text
    assert "| positive | 10 | 5 |" in text
    assert '"flipped_share_of_eligible": 0.5' in json_path.read_text()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"subset": "long"}, "subset must be one of short, acting"),
        ({"rate": 1.5}, "rate must be a number in [0, 1]"),
        ({"toward": "neutral"}, "toward 'neutral' is not one of the labels"),
        ({"toward": 2}, "toward must be a label name or an index below 2"),
        ({"max_words": 0}, "max_words must be a positive whole number"),
    ],
)
def test_bad_parameters_say_how_to_fix_them(params, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        annotator_group_shift(reviews([(SHORT_POS, 1)]), **params)
