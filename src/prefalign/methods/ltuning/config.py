"""L-Tuning's configuration (Kowsher et al., L-Tuning paper): every option with the section it comes from.

``ltuning-prefix`` and ``ltuning-prompt`` share the NLI framing (appendix A.3-A.4) and the label
inputs (section 2); each adds the options of its own transformation (appendix A.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError
from ...utils.config_base import option as _f
from ..options import HeadConfig


@dataclass
class LTuningConfig(HeadConfig):
    """Options both L-Tuning variants share: label inputs, NLI pairs, the score head (head_dropout and
    head_pooling: encoders only; decoders always read the last token)."""

    # The label input y (section 2, appendix A.2)
    label_texts: dict[str, str] | list[str] | None = _f(
        None,
        "the text each class is read as (section 2's label input y): None = the task's label names; "
        "a mapping {label name: text} (names it leaves out keep their name) or a list in class order",
    )
    label_special_tokens: bool = _f(
        True,
        "frame each label text with the tokenizer's special tokens ([CLS] ... "
        "[SEP] for BERT, BOS where the tokenizer adds one), as the authors' collator does",
    )
    label_length: int | None = _f(
        None,
        "l, tokens per label after padding with label_pad_text (appendix A.5's "
        "'sequence length of prefix'); None = the longest label's length",
    )
    label_pad_text: str = _f(
        ".",
        "filler that pads shorter labels to l tokens (the authors' collator pads with "
        "'.'); every padded position is a real token of the frozen pass",
    )
    # NLI framing (appendix A.3-A.4)
    pairing: str = _f(
        "both",
        "training pairs per batch of B examples (appendix A.3): 'both' = every example once "
        "with its label (target 1) and once with a drawn wrong label (target 0), 2B pairs; 'split' = "
        "eq. 3 literally: the first ceil(B/2) examples with their label, the rest with a wrong one",
        choices=("both", "split"),
    )
    negative_seed: int = _f(
        0,
        "seed of the generator that draws each negative pair's wrong label (uniform over "
        "the other classes, appendix A.3)",
    )
    # The classification head C_zeta (section 2, appendix A.5)
    score_head: str = _f(
        "linear",
        "'linear': a bias-free d -> 2 layer (A.5: 2 x d parameters), score = "
        "true logit - false logit, on the encoder's pooled output or the decoder's last token; "
        "'lm' (decoders): the LM head's log-odds of lm_verbalizers, no head parameters",
        choices=("linear", "lm"),
    )
    lm_verbalizers: list[str] = field(
        default_factory=lambda: [" yes", " no"],
        metadata={
            "help": "score_head=lm: the words for 'this label fits' and 'it does not'; end data.template with a yes/no "
            "question so that they follow it"
        },
    )

    def validate(self) -> None:
        super().validate()
        self.check_range("label_length", 1, 512)
        if len(self.lm_verbalizers) != 2:
            raise ConfigError(f"method.lm_verbalizers needs two words (fits, does not fit), got {self.lm_verbalizers}")
        if isinstance(self.label_texts, dict):
            bad = [k for k, v in self.label_texts.items() if not isinstance(v, str) or not v.strip()]
            if bad:
                raise ConfigError(f"method.label_texts: give a non-empty text for {', '.join(map(str, bad))}")


@dataclass
class LTuningPrefixConfig(LTuningConfig):
    """L-Tuning for prefix: label tokens -> self-attention pooling -> per-layer key/value prefixes (eq. 1)."""

    pooling: str = _f(
        "attention",
        "F_Phi and Z_Psi (appendix A.5): 'attention' = section 2's self-attention "
        "pooling (scores w.h_t, softmax over label tokens, weighted sum -> R^d) and a bias-free "
        "Z: R^d -> R^{L x 2 x l x kv}; 'scores' = the authors' code and A.5's count: the l raw "
        "scores w.h_t go through Z: R^l -> R^{L x 2 x l x kv}",
        choices=("attention", "scores"),
    )
    position_offset: bool = _f(True, "real tokens' positions continue after the prefix (as DCPC's prefixes)")


@dataclass
class LTuningPromptConfig(LTuningConfig):
    """L-Tuning for prompt: a d x d map of the label's hidden states, placed before the text embeddings (eq. 2)."""

    prompt_init: str = _f(
        "scaled_identity",
        "G_gamma's start: 'scaled_identity' = c I with c = mean word-embedding "
        "norm / mean label-state norm (the label's states enter at word-embedding scale); "
        "'random': PyTorch's default Linear init",
        choices=("scaled_identity", "random"),
    )
