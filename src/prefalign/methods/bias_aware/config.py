"""Bias-aware PEFT's options (the bias-aware PEFT paper, sections 4-5, appendices A, B, F); its values are the
defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError
from ...utils.config_base import option as _f
from ..baselines.config import BaselineConfig


@dataclass
class BiasAwareConfig(BaselineConfig):
    """Train a few modules of one intermediate layer plus a refine vector, with the balance losses (eq. 1-4)."""

    layers: list[int] | None = _f(
        None,
        "0-based layers to train; None: the one layer interchange ablation picks "
        "(appendix A, eq. 6), written back here so a checkpoint rebuilds the same model",
    )
    modules: list[str] = field(
        default_factory=lambda: ["o_proj", "down_proj"],
        metadata={
            "help": "linear modules trained in each chosen layer, by name or name suffix (section 4.2.1: o_proj and "
            "down_proj; Table 3 / appendix B try others, e.g. [q_proj, k_proj, v_proj])"
        },
    )
    refine: bool = _f(
        True,
        "a learnable vector added to each chosen layer's input hidden states (section 4.2.1's "
        "'refine'; Table 3 'w/o refine' turns it off)",
    )
    probe_component: str = _f(
        "o_proj", "the component whose activation interchange ablation swaps (appendix A: the attention output o_proj)"
    )
    probe_examples: int = _f(20, "training examples the gold/biased pairs are built from (section 5.1: 20)")
    probe_seed: int = _f(0, "seed of the draw of probe_examples")
    alpha: float = _f(1.0, "weight of the LM loss (eq. 4; section 5.1: 1)")
    beta: float = _f(1.0, "weight of L_bal1, the prediction-propensity term (eq. 2, 4; section 5.1: 1)")
    gamma: float = _f(1.0, "weight of L_bal2, the discriminative-ability term (eq. 3, 4; section 5.1: 1)")
    balance_scores: str = _f(
        "probs",
        "what H^C and H^N average: 'probs' = each label's probability among the "
        "label words (bounded, so -L_bal2 cannot grow without limit); 'logprobs' = the label "
        "token's log-probability over the vocabulary (needs bal2_margin)",
        choices=("probs", "logprobs"),
    )
    bal2_margin: float | None = _f(
        None,
        "cap on ||H^C - H^N||_2 inside L_bal2 (its gradient stops beyond it); "
        "required with balance_scores=logprobs, optional with probs",
    )

    def validate(self) -> None:
        super().validate()
        self.check_range("probe_examples", 1, 10_000)
        for name in ("alpha", "beta", "gamma"):
            self.check_range(name, 0.0, None)
        self.check_range("bal2_margin", 0.0, None)
        if not self.modules and not self.refine:
            raise ConfigError("method.modules is empty and method.refine is off: nothing would train")
        if self.layers is not None:
            if not self.layers:
                raise ConfigError(
                    "method.layers is empty; list layer indices or leave it null for interchange ablation"
                )
            if any(layer < 0 for layer in self.layers):
                raise ConfigError(f"method.layers must be 0-based indices >= 0, got {self.layers}")
            self.layers = sorted(set(self.layers))
        if self.balance_scores == "logprobs" and self.bal2_margin is None:
            raise ConfigError(
                "method.balance_scores=logprobs needs method.bal2_margin: log-probabilities of wrong "
                "labels fall without bound, and so would L_bal2 (try bal2_margin: 5.0)"
            )
