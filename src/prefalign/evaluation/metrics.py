"""Answer metrics for generation tasks: SQuAD-style F1 / exact match (ReCoRD), accuracy, yes/no polarity.

``normalize_answer``, ``exact_match`` and ``token_f1`` follow the official SQuAD v1.1 evaluation
script (also used by SuperGLUE's ReCoRD scorer): lower-case, drop punctuation, drop the articles
a/an/the, collapse whitespace; a prediction scores the maximum over its references. Scores are
fractions in [0, 1] (the paper's tables print them as percentages).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1: lower-case, remove punctuation, articles (a, an, the) and extra whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _references(references: str | Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("an example needs at least one reference answer")
    return refs


def _f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in _references(references)))


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """Bag-of-tokens F1 between the normalised prediction and reference, maximised over references."""
    return max(_f1(prediction, r) for r in _references(references))


def f1_em(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Mean F1, mean exact match, and their mean ``f1_em`` (ReCoRD's metric in the DCPC paper)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference sets")
    if not predictions:
        raise ValueError("no predictions to score")
    f1 = sum(token_f1(p, r) for p, r in zip(predictions, references)) / len(predictions)
    em = sum(exact_match(p, r) for p, r in zip(predictions, references)) / len(predictions)
    return {"f1": f1, "em": em, "f1_em": (f1 + em) / 2}


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    """Share of predictions equal to their label (a prediction of None is wrong)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not predictions:
        raise ValueError("no predictions to score")
    return sum(p is not None and p == y for p, y in zip(predictions, labels)) / len(predictions)


# -- yes/no polarity of a styled answer (BoolQ-PS) ---------------------------------------------------
# The lexicon rule: scan the normalised words left to right; the first word (or two-word phrase)
# found in either list decides. An affirmative intensifier directly followed by "not" reads as no
# ("absolutely not", "certainly not", "of course not"). No decisive word: None (scored wrong).
YES_WORDS = frozenset(
    {
        "yes",
        "yeah",
        "yep",
        "yup",
        "indeed",
        "absolutely",
        "certainly",
        "definitely",
        "correct",
        "true",
        "sure",
        "affirmative",
    }
)
NO_WORDS = frozenset({"no", "nope", "nah", "not", "never", "false", "incorrect", "negative"})
YES_PHRASES = frozenset({("of", "course")})


def answer_polarity(text: str) -> str | None:
    """``"yes"``, ``"no"`` or None for a free-form answer, by the lexicon rule above.

    Negated auxiliaries count as "not" ("isn't", "doesn't", "can't" -> no; normalisation has already
    dropped their apostrophe).
    """
    words = [_expand_negation(w) for w in normalize_answer(text).split()]
    for i, word in enumerate(words):
        pair = tuple(words[i : i + 2])
        if pair in YES_PHRASES:
            return "no" if words[i + 2 : i + 3] == ["not"] else "yes"
        if word in YES_WORDS:
            return "no" if words[i + 1 : i + 2] == ["not"] else "yes"
        if word in NO_WORDS:
            return "no"
    return None


_NEGATED_AUX = {
    "isnt",
    "arent",
    "wasnt",
    "werent",
    "dont",
    "doesnt",
    "didnt",
    "cant",
    "cannot",
    "couldnt",
    "wont",
    "wouldnt",
    "shouldnt",
    "hasnt",
    "havent",
    "hadnt",
    "aint",
    "mustnt",
    "neednt",
}


def _expand_negation(word: str) -> str:
    return "not" if word in _NEGATED_AUX else word
