"""gpt-score: a 1-10 judge of instruction-following responses (DCPC section 4.1 uses GPT-4o).

``ChatJudge`` asks an OpenAI-compatible chat endpoint (PREFALIGN_API_BASE / _MODEL / _KEY, see
``prefalign.utils.endpoints``) to rate a response for coherence, completeness and adherence to the
instruction on the paper's 1-10 scale, and parses the number. ``OfflineJudge`` needs no network:
it maps the token-overlap F1 with the reference to 1-10 and is labelled as a stand-in
(``OFFLINE_JUDGE``), never as GPT-4o; its scores are not comparable to the paper's.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import ConfigError, DataError
from ..utils.endpoints import ChatEndpoint

OFFLINE_JUDGE = "offline stand-in (token-overlap), not GPT-4o"

JUDGE_PROMPT = (
    "You are evaluating the response of an AI assistant to an instruction. Rate the response on a scale "
    "from 1 to 10, considering its coherence, its completeness and its adherence to the task instructions. "
    "A reference answer is given for comparison; the response need not match it word for word.\n\n"
    "Instruction:\n{instruction}\n\n"
    "Reference answer:\n{reference}\n\n"
    "Response to evaluate:\n{response}\n\n"
    'Reply with the score on the first line as "Score: N" (N an integer from 1 to 10), then one sentence '
    "explaining it."
)


@runtime_checkable
class Judge(Protocol):
    """Anything with a ``name`` and ``score(instruction, reference, response) -> float`` in [1, 10]."""

    name: str

    def score(self, instruction: str, reference: str, response: str) -> float: ...


def parse_score(reply: str) -> float:
    """The 1-10 score in a judge's reply ("Score: 8", "8/10", "**8**"); DataError if none is found."""
    text = reply.replace("*", "")
    for pattern in (
        r"score\s*[:=]?\s*(\d+(?:\.\d+)?)",
        r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b",
        r"(?<![\d.])(\d+(?:\.\d+)?)(?![\d.])",
    ):
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            value = float(m.group(1))
            if 1.0 <= value <= 10.0:
                return value
            shown = " ".join(reply.split())[:120]
            raise DataError(f"the judge gave score {value:g}, outside the 1-10 scale: {shown!r}")
    raise DataError(f"the judge's reply holds no 1-10 score: {' '.join(reply.split())[:120]!r}")


class ChatJudge:
    """gpt-score through an OpenAI-compatible chat endpoint (the paper used GPT-4o)."""

    def __init__(self, endpoint: ChatEndpoint | None = None, **endpoint_options):
        """``endpoint``, or one from ``ChatEndpoint.from_env(**endpoint_options)`` (base_url, model, api_key, ...)."""
        self.endpoint = endpoint or ChatEndpoint.from_env(**endpoint_options)
        self.name = f"chat judge ({self.endpoint.describe()})"

    def score(self, instruction: str, reference: str, response: str) -> float:
        prompt = JUDGE_PROMPT.format(instruction=instruction, reference=reference, response=response)
        return parse_score(self.endpoint.chat([{"role": "user", "content": prompt}], temperature=0.0, max_tokens=100))


class OfflineJudge:
    """A network-free stand-in: 1 + 9 x token-overlap F1 with the reference. Not GPT-4o."""

    name = OFFLINE_JUDGE

    def score(self, instruction: str, reference: str, response: str) -> float:
        return 1.0 + 9.0 * token_f1(response, reference)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 (lower-cased, punctuation and articles removed)."""
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _tokens(text: str) -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return [t for t in text.split() if t not in ("a", "an", "the")]


def gpt_score(
    instructions: Sequence[str], references: Sequence[str], responses: Sequence[str], judge: Judge | None = None
) -> dict:
    """The mean judge score over the items: ``{"mean", "n", "judge"}`` (``judge`` names who scored).

    Without ``judge`` the offline stand-in is used, and the result says so.
    """
    judge = judge or OfflineJudge()
    if not isinstance(judge, Judge):
        raise ConfigError(f"judge must have a name and score(); got {type(judge).__name__}")
    n = len(instructions)
    if len(references) != n or len(responses) != n:
        raise DataError(
            f"gpt_score needs as many references and responses as instructions; got {n} instructions, "
            f"{len(references)} references, {len(responses)} responses"
        )
    if n == 0:
        raise DataError("gpt_score got no items to score")
    scores = [float(judge.score(i, r, s)) for i, r, s in zip(instructions, references, responses)]
    return {"mean": sum(scores) / n, "n": n, "judge": judge.name}
