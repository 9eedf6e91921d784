"""How an example is written out for the model: the prompt template and the label words (no torch here, so a
config that names them is read without loading a model library)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .examples import Example


@dataclass
class PromptFormat:
    """How an example is written out for the model.

    ``template`` uses ``{text}`` and ``{text_pair}``; decoders read the class from the next token
    after it, so it should end where the label word would follow (``"Review: {text}\\nSentiment:"``).
    ``verbalizers`` are the label words (one per class), by default the label names with a leading
    space. For multiple choice, each option is appended to the prompt after ``choice_prefix``.
    Encoders use the raw text (and pair) unless a template is given.
    """

    template: str | None = None
    verbalizers: list[str] | None = None
    choice_prefix: str = " "

    def render(self, ex: Example, decoder: bool) -> str:
        if self.template is None:
            if not decoder:
                return ex.text
            base = ex.text if ex.text_pair is None else f"{ex.text}\n{ex.text_pair}"
            return base if ex.choices is not None else f"{base}\nAnswer:"
        try:
            return self.template.format(text=ex.text, text_pair=ex.text_pair or "")
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"data.template uses an unknown field {exc}; use {{text}} and {{text_pair}}") from None
