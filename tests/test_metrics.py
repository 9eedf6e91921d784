"""SQuAD-style answer metrics (ReCoRD's f1-em), accuracy and the yes/no polarity rule for BoolQ-PS.

The expected values are worked by hand with the official SQuAD v1.1 script's rules: lower-case,
strip punctuation, drop a/an/the, collapse whitespace; bag-of-tokens F1; max over references.
"""

from __future__ import annotations

import pytest

from prefalign.evaluation.metrics import accuracy, answer_polarity, exact_match, f1_em, normalize_answer, token_f1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  A  cat,  an apple... THE end! ", "cat apple end"),
        ("U.S.A.", "usa"),
        ("theatre anthem", "theatre anthem"),  # articles only as whole words
        ("Barack Obama's", "barack obamas"),
        ("", ""),
    ],
)
def test_normalize_answer_follows_squad(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_after_normalisation_and_over_references():
    assert exact_match("the Eiffel Tower.", "Eiffel Tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    assert exact_match("Paris", ["London", "paris!"]) == 1.0


def test_token_f1_hand_worked():
    # "in" is kept (only articles go): pred tokens eiffel tower in paris (4), common 2: P = 1/2, R = 1 -> 2/3.
    assert token_f1("the Eiffel Tower in Paris", "Eiffel Tower") == pytest.approx(2 / 3)
    # pred {eiffel, tower, paris} vs ref {eiffel, tower}: P = 2/3, R = 1, F1 = 0.8.
    assert token_f1("Eiffel Tower Paris", "Eiffel Tower") == pytest.approx(0.8)
    # Repeated tokens count with multiplicity: pred "new new york" vs "new york": common 2, P = 2/3, R = 1.
    assert token_f1("new new york", "new york") == pytest.approx(0.8)
    # Max over references, and no overlap is 0 (an empty prediction too).
    assert token_f1("Obama", ["Barack Obama", "Obama"]) == 1.0
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("", "Paris") == 0.0
    assert token_f1("the", "a") == 0.0  # both normalise to nothing: SQuAD v1.1 scores 0


def test_f1_em_means_and_their_mean():
    preds = ["Eiffel Tower", "the Eiffel Tower in Paris", "London"]
    refs = [["eiffel tower"], ["Eiffel Tower"], ["Paris", "paris france"]]
    out = f1_em(preds, refs)
    f1 = (1.0 + 2 / 3 + 0.0) / 3
    em = (1.0 + 0.0 + 0.0) / 3
    assert out["f1"] == pytest.approx(f1) and out["em"] == pytest.approx(em)
    assert out["f1_em"] == pytest.approx((f1 + em) / 2)
    assert f1_em(["Paris"], ["Paris"]) == {"f1": 1.0, "em": 1.0, "f1_em": 1.0}  # a bare string reference


def test_metric_input_errors():
    with pytest.raises(ValueError):
        f1_em(["a"], [])
    with pytest.raises(ValueError):
        f1_em([], [])
    with pytest.raises(ValueError):
        token_f1("a", [])
    with pytest.raises(ValueError):
        accuracy([1], [1, 0])


def test_accuracy_counts_none_as_wrong():
    assert accuracy(["yes", "no", None, "no"], ["yes", "yes", "no", "no"]) == 0.5


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes.", "yes"),
        ("Yeah, for sure.", "yes"),  # the paper's casual rewrite
        ("Indeed, it is.", "yes"),  # formal
        ("Absolutely, without a doubt!", "yes"),  # expressive
        ("Of course it does", "yes"),
        ("That's correct.", "yes"),
        ("Sure thing", "yes"),
        ("No.", "no"),
        ("Nope, not at all.", "no"),
        ("It is not.", "no"),
        ("That is false", "no"),
        ("Never, I'm afraid.", "no"),
        ("It isn't, unfortunately.", "no"),
        ("Absolutely not!", "no"),  # an intensifier followed by "not"
        ("Of course not.", "no"),
        ("Certainly not", "no"),
        ("Not true at all", "no"),  # first decisive word wins
        ("True, it is not the case that", "yes"),
        ("The sky", None),
        ("", None),
    ],
)
def test_answer_polarity_lexicon_rule(text, expected):
    assert answer_polarity(text) == expected
