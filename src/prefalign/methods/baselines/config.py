"""Configs of the baselines of DCPC Tables 1-2 (appendix A.1.2); the paper's settings are the defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...configuration import ConfigBase


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class BaselineConfig(ConfigBase):
    """Options every baseline shares: how an encoder's head reads the backbone."""

    SECTION = "method"
    head_dropout: float = _f(0.1, "dropout before the encoder classification head")
    head_pooling: str = _f("mean", "encoder head input: 'mean' of real tokens, 'first' token or the BERT 'pooler'",
                           choices=("mean", "first", "pooler"))

    def validate(self) -> None:
        self.check_range("head_dropout", 0.0, 0.99)


@dataclass
class FullFineTuningConfig(BaselineConfig):
    """Full-FT: every backbone weight trains (training.learning_rate applies to them)."""


@dataclass
class LoraBaselineConfig(BaselineConfig):
    """LoRA through PEFT (appendix A.1.2: rank 4)."""

    r: int = _f(4, "rank of the low-rank update (appendix A.1.2: 4)")
    lora_alpha: float = _f(8.0, "scaling numerator: the update is scaled by lora_alpha / r (PEFT default 8)")
    lora_dropout: float = _f(0.0, "dropout on the LoRA branch")
    target_modules: list[str] | None = _f(None, "module names to adapt; default PEFT's per-architecture choice "
                                          "(query/value projections)")

    def validate(self) -> None:
        super().validate()
        self.check_range("r", 1, None)
        self.check_range("lora_alpha", 0.0, None)
        self.check_range("lora_dropout", 0.0, 0.99)


@dataclass
class AdaLoraBaselineConfig(BaselineConfig):
    """AdaLoRA through PEFT (appendix A.1.2: initial rank 8, half the rank budget pruned)."""

    init_r: int = _f(8, "initial rank per module (appendix A.1.2: 8)")
    target_r: int = _f(4, "average rank left after pruning (half of init_r: 'half of the rank budget is pruned')")
    lora_alpha: float = _f(8.0, "scaling numerator, as LoRA's")
    tinit_ratio: float = _f(0.1, "share of the steps trained before pruning starts (AdaLoRA's t_i)")
    tfinal_ratio: float = _f(0.2, "share of the steps trained after the budget is final (AdaLoRA's t_f)")
    delta_t: int = _f(1, "steps between two budget re-allocations (AdaLoRA's Delta T)")
    orth_reg_weight: float = _f(0.5, "weight of AdaLoRA's orthogonality regulariser on P and Q (PEFT default 0.5)")
    target_modules: list[str] | None = _f(None, "module names to adapt; default PEFT's per-architecture choice")

    def validate(self) -> None:
        super().validate()
        self.check_range("init_r", 1, None)
        self.check_range("target_r", 1, self.init_r)
        self.check_range("tinit_ratio", 0.0, 0.9)
        self.check_range("tfinal_ratio", 0.0, 0.9)
        self.check_range("delta_t", 1, None)
        self.check_range("orth_reg_weight", 0.0, None)


@dataclass
class IA3BaselineConfig(BaselineConfig):
    """(IA)^3 through PEFT: learned scaling vectors on keys, values and the feed-forward layer."""

    target_modules: list[str] | None = _f(None, "module names to scale; default PEFT's (keys, values, FFN output)")
    feedforward_modules: list[str] | None = _f(None, "which of target_modules are feed-forward (scaled on input)")


@dataclass
class PromptTuningConfig(BaselineConfig):
    """Prompt tuning (Lester et al.) with PEFT's PromptEmbedding: soft tokens before the input only."""

    num_virtual_tokens: int = _f(16, "soft prompt tokens (the same m as DCPC's prefix, section 4.1)")
    prompt_init: str = _f("text", "'text': embeddings of prompt_init_text's tokens (PEFT's TEXT init); "
                          "'random': PEFT's RANDOM init", choices=("text", "random"))
    prompt_init_text: str = _f("Read the following text carefully and decide which of the possible labels "
                               "describes it best.", "text whose token embeddings initialise the soft prompt")

    def validate(self) -> None:
        super().validate()
        self.check_range("num_virtual_tokens", 1, 4096)
