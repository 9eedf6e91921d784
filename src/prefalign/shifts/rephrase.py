"""Rephrasers for the answer-style shifts (BoolQ-PS, ReCoRD-R, Alpaca-IS of DCPC appendix A.1.1).

A rephraser turns one answer into three rewrites, one per style of its task (``STYLES``):

* ``ChatRephraser`` asks an OpenAI-compatible chat endpoint with the paper's prompts, copied
  verbatim from appendix A.1.1 (the paper used GPT-3.5), and parses the numbered answers.
* ``RuleBasedRephraser`` works offline and deterministically (given its seed): yes/no templates
  per style for BoolQ, answer-preserving frames for ReCoRD (the entity string is kept verbatim so
  F1/EM against the gold entity still credit it), and light meaning-preserving rewrites for
  Alpaca (filler removal for terse, a framing sentence and summary for elaborate, contractions
  and a friendly opener for conversational). It is a stand-in for GPT-3.5, not a reproduction.
"""

from __future__ import annotations

import random
import re
from typing import Protocol, runtime_checkable

from ..errors import ConfigError, DataError
from ..utils.endpoints import ChatEndpoint

STYLES: dict[str, tuple[str, ...]] = {
    "boolq": ("casual", "formal", "expressive"),
    "record": ("rephrasing-1", "rephrasing-2", "rephrasing-3"),
    "alpaca": ("terse", "elaborate", "conversational"),
}

# -- the paper's prompts (appendix A.1.1), verbatim; the item to rewrite is appended below them -----------
BOOLQ_PROMPT = (
    "You are given a question and a yes/no answer. Please rewrite the answer in three different styles: "
    "1) Casual, 2) Formal, 3) Expressive. Keep the meaning of the answer the same.\n\n"
    "Example:\n"
    'Question: "Is the sky blue?"\n'
    'Answer: "Yes."\n'
    "Rephrased Answers:\n"
    '1) Casual: "Yeah, for sure."\n'
    '2) Formal: "Indeed, it is."\n'
    '3) Expressive: "Absolutely, without a doubt!"'
)
RECORD_PROMPT = (
    "You are given a passage and a correct answer. Please rewrite the answer in three different ways while "
    "keeping the meaning the same. Try to express the same information using different words and sentence "
    "structures.\n\n"
    "Example:\n"
    'Passage: "John went to the store to buy milk, but he forgot to bring his wallet."\n'
    'Answer: "John forgot his wallet when he went to buy milk."\n'
    "Rephrased Answers:\n"
    '1) "John went to the store for milk but didn\'t have his wallet with him."\n'
    '2) "When John went to purchase some milk, he realized he had left his wallet behind."\n'
    '3) "John didn\'t remember his wallet when he went to buy milk."'
)
ALPACA_PROMPT = (
    "You are given an instruction and a response. Please rewrite the response in three different styles: "
    "1) Terse, 2) Elaborate, and 3) Conversational. Keep the meaning and the task the same, but vary the tone "
    "and style of the response.\n\n"
    "Example:\n"
    "Instruction: \"Write a summary of the novel '1984' by George Orwell.\"\n"
    'Response: "1984 is a dystopian novel about totalitarianism."\n'
    "Rephrased Responses:\n"
    '1) Terse: "1984 is a dystopian story on totalitarian rule."\n'
    "2) Elaborate: \"George Orwell's novel '1984' explores a dystopian world under totalitarian rule, focusing "
    'on themes of surveillance, freedom, and oppression."\n'
    '3) Conversational: "So, 1984 is basically a story where a totalitarian government controls everything, '
    "and it's really all about how this impacts people's lives.\""
)
_QUERY = {  # (prompt, context label, answer label, list header)
    "boolq": (BOOLQ_PROMPT, "Question", "Answer", "Rephrased Answers"),
    "record": (RECORD_PROMPT, "Passage", "Answer", "Rephrased Answers"),
    "alpaca": (ALPACA_PROMPT, "Instruction", "Response", "Rephrased Responses"),
}
_LABELS = {
    "boolq": ("Casual", "Formal", "Expressive"),
    "record": None,
    "alpaca": ("Terse", "Elaborate", "Conversational"),
}


@runtime_checkable
class Rephraser(Protocol):
    """Anything with a ``name`` and ``rephrase(task, context, answer) -> {style: text}``.

    ``task`` is a key of ``STYLES``; ``context`` is the question (BoolQ), passage (ReCoRD) or
    instruction (Alpaca); the result has one rewrite per style in ``STYLES[task]``.
    """

    name: str

    def rephrase(self, task: str, context: str, answer: str) -> dict[str, str]: ...


def build_prompt(task: str, context: str, answer: str) -> str:
    """The paper's prompt for ``task`` followed by the item to rewrite, in the example's format."""
    prompt, context_label, answer_label, header = _QUERY[_check_task(task)]
    return f'{prompt}\n\nNow rewrite this one.\n\n{context_label}: "{context}"\n{answer_label}: "{answer}"\n{header}:'


def parse_numbered(text: str, n: int = 3, labels: tuple[str, ...] | None = None) -> list[str]:
    """The ``n`` numbered answers of a reply (``1) Casual: "..."``, ``1. ...``, ``**1)** ...``).

    With ``labels``, items introduced by their style name (with or without a number) are found
    first, which keeps numbered lists inside a long answer from being mistaken for items; else
    markers ``1)`` .. ``n)`` (then ``1.`` .. ``n.``) are searched in order at line starts. Each
    item runs to the next marker; surrounding quotes and a leading style label are removed.
    Raises DataError when fewer than ``n`` non-empty items are found.
    """
    text = text.replace("**", "").replace("__", "")
    spans = None
    if labels:
        spans = _find_markers(
            text, [rf"(?:\(?{k}\s*[).:]\s*)?{re.escape(label)}\s*[:\-]" for k, label in enumerate(labels, 1)]
        )
    for sep in (r"\)", r"[.:]"):
        if spans is None:
            spans = _find_markers(text, [rf"\(?{k}\s*{sep}" for k in range(1, n + 1)])
    if spans is not None:
        items = [_clean_item(text[start:end], labels) for start, end in spans]
        if all(items):
            return items
    preview = " ".join(text.split())[:160]
    raise DataError(f"could not find {n} numbered rephrasings in the endpoint's reply: {preview!r}")


def _find_markers(text: str, patterns: list[str]) -> list[tuple[int, int]] | None:
    """Item spans for markers found in order at line starts, or None if one is missing."""
    starts, pos = [], 0
    for pattern in patterns:
        m = re.compile(rf"^[ \t>*\-]*{pattern}[ \t]*", re.IGNORECASE | re.MULTILINE).search(text, pos)
        if m is None:
            return None
        starts.append((m.start(), m.end()))
        pos = m.end()
    return [(body, starts[i + 1][0] if i + 1 < len(starts) else len(text)) for i, (_, body) in enumerate(starts)]


def _clean_item(item: str, labels: tuple[str, ...] | None) -> str:
    item = item.strip()
    if labels:
        item = re.sub(rf"^(?:{'|'.join(map(re.escape, labels))})\s*:\s*", "", item, flags=re.IGNORECASE)
    pairs = {'"': '"', "\u201c": "\u201d", "'": "'"}
    if len(item) >= 2 and item[0] in pairs and item.endswith(pairs[item[0]]):
        item = item[1:-1].strip()
    return item


class ChatRephraser:
    """Rephrase with an OpenAI-compatible chat model and the paper's prompts (one request per answer).

    The endpoint comes from the arguments or from PREFALIGN_API_BASE / PREFALIGN_API_MODEL /
    PREFALIGN_API_KEY. Replies are cached per (task, context, answer) within one instance.
    """

    def __init__(self, endpoint: ChatEndpoint | None = None, *, temperature: float = 0.0, **endpoint_options):
        """``endpoint``, or one from ``ChatEndpoint.from_env(**endpoint_options)`` (base_url, model, api_key, ...)."""
        self.endpoint = endpoint or ChatEndpoint.from_env(**endpoint_options)
        self.temperature = temperature
        self.name = f"chat ({self.endpoint.describe()}, paper prompts)"
        self._cache: dict[tuple[str, str, str], dict[str, str]] = {}

    def rephrase(self, task: str, context: str, answer: str) -> dict[str, str]:
        key = (_check_task(task), context, answer)
        if key not in self._cache:
            reply = self.endpoint.chat(
                [{"role": "user", "content": build_prompt(task, context, answer)}], temperature=self.temperature
            )
            items = parse_numbered(reply, len(STYLES[task]), _LABELS[task])
            self._cache[key] = dict(zip(STYLES[task], items))
        return dict(self._cache[key])


class RuleBasedRephraser:
    """Offline, deterministic (given ``seed``) rephrasings that keep the meaning; a stand-in for GPT-3.5."""

    name = "rule-based (offline stand-in for the paper's GPT-3.5 rephrasings)"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def rephrase(self, task: str, context: str, answer: str) -> dict[str, str]:
        rng = random.Random(f"{self.seed}\x00{_check_task(task)}\x00{context}\x00{answer}")
        if task == "boolq":
            yes = yes_no(answer)
            return {style: rng.choice(_BOOLQ_TEMPLATES[style][yes]) for style in STYLES["boolq"]}
        if task == "record":
            core = answer.strip().rstrip(".")
            frames = rng.sample(_RECORD_FRAMES, 3)
            return {style: frame.format(a=core) for style, frame in zip(STYLES["record"], frames)}
        return {
            "terse": terse(answer),
            "elaborate": elaborate(context, answer, rng),
            "conversational": conversational(answer, rng),
        }


def make_rephraser(spec, seed: int = 0) -> Rephraser:
    """``"rule"`` -> RuleBasedRephraser(seed), ``"chat"`` -> ChatRephraser from the environment, or a Rephraser."""
    if isinstance(spec, str):
        if spec == "rule":
            return RuleBasedRephraser(seed)
        if spec == "chat":
            return ChatRephraser()
        raise ConfigError(f"rephraser must be 'rule' (offline) or 'chat' (an OpenAI-compatible endpoint), got {spec!r}")
    if isinstance(spec, Rephraser):
        return spec
    raise ConfigError(f"rephraser must be 'rule', 'chat' or an object with rephrase(), got {type(spec).__name__}")


def _check_task(task: str) -> str:
    if task not in STYLES:
        raise ConfigError(f"no rephrasing styles for task {task!r}; choose one of {', '.join(STYLES)}")
    return task


# -- rule-based rewrites ------------------------------------------------------------------------------------
_BOOLQ_TEMPLATES = {  # style -> {is_yes: variants}; each variant states the same yes/no unambiguously
    "casual": {
        True: ["Yeah, for sure.", "Yep, it is.", "Yup, pretty much."],
        False: ["Nah, not really.", "Nope, it isn't.", "Nope, not at all."],
    },
    "formal": {
        True: ["Indeed, it is.", "Yes, that is correct.", "Yes, that is indeed the case."],
        False: ["No, that is not the case.", "That is not so.", "No, that is incorrect."],
    },
    "expressive": {
        True: ["Absolutely, without a doubt!", "Oh yes, definitely!", "Yes, absolutely!"],
        False: ["Absolutely not!", "No way, not at all!", "Definitely not, no!"],
    },
}
_RECORD_FRAMES = [
    "It is {a}.",
    "The answer is {a}.",
    "That would be {a}.",
    "The passage points to {a}.",
    "{a}, according to the passage.",
    "It refers to {a}.",
]
_NEGATIVE = {"no", "not", "nope", "nah", "never", "false", "incorrect", "isn", "aren", "doesn", "don", "wasn", "n"}
_POSITIVE = {"yes", "yeah", "yep", "yup", "true", "y", "indeed", "absolutely", "correct", "definitely", "sure"}


def yes_no(answer: str) -> bool:
    """True for a yes answer, False for a no: any negation word makes it a no ("Absolutely not!"),
    else a yes word makes it a yes ("Indeed, it is."); DataError when neither appears."""
    words = re.findall(r"[a-z]+", answer.lower())
    if any(w in _NEGATIVE for w in words):
        return False
    if any(w in _POSITIVE for w in words):
        return True
    raise DataError(f"cannot tell whether {answer!r} means yes or no")


_FILLER = [  # (pattern, replacement), applied in order, case-insensitive
    (r"\bit is important to note that\s+", ""),
    (r"\bit is worth noting that\s+", ""),
    (r"\bin order to\b", "to"),
    (r"\bdue to the fact that\b", "because"),
    (r"\ba lot of\b", "many"),
    (r"\ba number of\b", "several"),
    (r"\bat this point in time\b", "now"),
    (r"\bin the event that\b", "if"),
    (r"\b(?:basically|actually|really|very|quite|simply|just|certainly|definitely),?\s+", ""),
]
_OPENERS = re.compile(r"^(?:sure|certainly|of course|absolutely|great question)[!,.]\s*", re.IGNORECASE)
_CLOSERS = re.compile(r"\s*(?:I hope (?:this|that) helps[.!]?|Hope (?:this|that) helps[.!]?)\s*$", re.IGNORECASE)


_RECAP = re.compile(r"\n\n(?:In conclusion|In summary|Overall|To summarize|To sum up)\b[^\n]*$", re.IGNORECASE)


def terse(text: str) -> str:
    """Drop pleasantries, filler words, wordy phrases, a closing recap paragraph that restates the
    answer (when there are three or more paragraphs) and blank lines between list items."""
    out = _CLOSERS.sub("", _OPENERS.sub("", text.strip()))
    if out.count("\n\n") >= 2:
        out = _RECAP.sub("", out)
    out = re.sub(r"\n\n(?=\s*(?:\d+[.)]|[-*\u2022])\s)", "\n", out)
    for pattern, repl in _FILLER:
        out = re.sub(pattern, repl, out, flags=re.IGNORECASE)
    out = re.sub(r"[ \t]{2,}", " ", out)
    out = re.sub(r"\n{3,}", "\n\n", out).strip()
    out = re.sub(r"(^|[.!?]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), out)  # re-capitalise
    return out or text.strip()


def elaborate(instruction: str, text: str, rng: random.Random) -> str:
    """The answer framed by a sentence naming the request and closed by a one-line recap."""
    request = " ".join(instruction.split())
    if len(request) > 120:
        request = request[:117].rstrip() + "..."
    intro = rng.choice(
        [
            f'Here is a complete answer to the request "{request}".',
            f'To address the request "{request}", here is a detailed response.',
            f'The request was: "{request}". A full response follows.',
        ]
    )
    first = _first_sentence(text)
    recap = rng.choice([f"In short: {first}", f"To summarise: {first}", f"The key point: {first}"])
    return f"{intro}\n\n{text.strip()}\n\n{recap}"


_CONTRACTIONS = [
    ("it is", "it's"),
    ("that is", "that's"),
    ("there is", "there's"),
    ("do not", "don't"),
    ("does not", "doesn't"),
    ("is not", "isn't"),
    ("are not", "aren't"),
    ("cannot", "can't"),
    ("will not", "won't"),
    ("you are", "you're"),
    ("we are", "we're"),
    ("they are", "they're"),
    ("I am", "I'm"),
    ("you will", "you'll"),
    ("let us", "let's"),
]


def conversational(text: str, rng: random.Random) -> str:
    """A friendly opener, contractions and a closing line around the same content."""
    out = text.strip()
    for full, short in _CONTRACTIONS:
        out = re.sub(
            rf"\b{full}\b",
            lambda m, s=short: s[0].upper() + s[1:] if m.group(0)[0].isupper() else s,
            out,
            flags=re.IGNORECASE,
        )
    opener = rng.choice(["Sure thing!", "Happy to help!", "Okay, so here's the deal."])
    closer = rng.choice(["Hope that helps!", "Let me know if you'd like more detail.", "That's about it!"])
    return f"{opener} {out}\n\n{closer}"


def _first_sentence(text: str) -> str:
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), text.strip())
    m = re.match(r"(.+?[.!?])(\s|$)", line)
    return m.group(1) if m else line
