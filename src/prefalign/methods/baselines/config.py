"""Configs of the baselines of DCPC Tables 1-2 (appendix A.1.2); the paper's settings are the defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError
from ...utils.config_base import option as _f
from ..options import HeadConfig


@dataclass
class BaselineConfig(HeadConfig):
    """Options every baseline shares: how an encoder's head reads the backbone."""


@dataclass
class FullFineTuningConfig(BaselineConfig):
    """Full-FT: every backbone weight trains (training.learning_rate applies to them)."""


@dataclass
class LoraBaselineConfig(BaselineConfig):
    """LoRA through PEFT (appendix A.1.2: rank 4)."""

    r: int = _f(4, "rank of the low-rank update (appendix A.1.2: 4)")
    lora_alpha: float = _f(8.0, "scaling numerator: the update is scaled by lora_alpha / r (PEFT default 8)")
    lora_dropout: float = _f(0.0, "dropout on the LoRA branch")
    target_modules: list[str] | None = _f(
        None,
        "module names to adapt; default PEFT's per-architecture choice "
        "(query/value projections); [all-linear]: every linear layer except the "
        "LM head (the bias-aware paper's LoRA, appendix D, with r: 8)",
    )

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
    prompt_init: str = _f(
        "text",
        "'text': embeddings of prompt_init_text's tokens (PEFT's TEXT init); 'random': PEFT's RANDOM init",
        choices=("text", "random"),
    )
    prompt_init_text: str = _f(
        "Read the following text carefully and decide which of the possible labels describes it best.",
        "text whose token embeddings initialise the soft prompt",
    )

    def validate(self) -> None:
        super().validate()
        self.check_range("num_virtual_tokens", 1, 4096)


@dataclass
class BitFitConfig(BaselineConfig):
    """BitFit (Zaken et al., 2021): bias terms only; hooked zero biases where a linear layer has none."""

    rank: int | None = _f(
        None,
        "None: plain trainable bias vectors (BitFit). r: each added bias is P z with z in "
        "R^r and a learnable d x r matrix P, the backbone's own biases frozen (appendix A.1.2's "
        "reading, r' = 8; see docs/methods/baselines.md)",
    )

    def validate(self) -> None:
        super().validate()
        self.check_range("rank", 1, None)


@dataclass
class HoulsbyAdapterConfig(BaselineConfig):
    """Houlsby adapters (Houlsby et al., 2019): a bottleneck after each block's attention and FFN outputs."""

    bottleneck: int = _f(18, "adapter bottleneck width (appendix A.1.2: 18)")
    activation: str = _f("gelu", "the adapter's nonlinearity", choices=("gelu", "relu", "tanh"))
    attention_module: str | None = _f(
        None,
        "the attention output projection, relative to one layer; default: found "
        "by name (attention.output.dense, self_attn.o_proj, attn.c_proj, ...)",
    )
    ffn_module: str | None = _f(
        None,
        "the FFN output projection, relative to one layer; default: found by name "
        "(output.dense, mlp.down_proj, mlp.c_proj, ...)",
    )

    def validate(self) -> None:
        super().validate()
        self.check_range("bottleneck", 1, None)


# Learned-Adapter's search space as we read it (docs/methods/baselines.md): where the one adapter of a block
# acts, and its activation.
LEARNED_ADAPTER_PLACEMENTS = ("attention", "ffn")
LEARNED_ADAPTER_ACTIVATIONS = ("relu", "gelu", "tanh", "swish", "identity")


@dataclass
class LearnedAdapterConfig(BaselineConfig):
    """Learned-Adapter (Zhang et al., 2023b): one adapter per block, its place and activation searched."""

    bottleneck: int = _f(
        36,
        "adapter bottleneck width (appendix A.1.2: 36); one adapter per block, the Houlsby adapter's budget "
        "of two of 18 (Tables 1-2: 9.5M both)",
    )
    placement: str = _f(
        "search",
        "where each block's adapter acts: 'search' (softmax weights over both places, trained with the "
        "adapter; our reading of Learned-Adapter's per-layer search), 'attention' (after the attention "
        "output projection) or 'ffn' (after the FFN output projection)",
        choices=("search", *LEARNED_ADAPTER_PLACEMENTS),
    )
    activation: str = _f(
        "search",
        "the adapter's activation: 'search' (softmax weights over relu, gelu, tanh, swish and identity, "
        "trained with the adapter) or one of them, fixed",
        choices=("search", *LEARNED_ADAPTER_ACTIVATIONS),
    )
    attention_module: str | None = _f(
        None, "the attention output projection, relative to one layer; default: found by name, as houlsby's"
    )
    ffn_module: str | None = _f(None, "the FFN output projection, relative to one layer; default: found by name")

    def validate(self) -> None:
        super().validate()
        self.check_range("bottleneck", 1, None)


@dataclass
class LatePromptTuningConfig(BaselineConfig):
    """LPT (Liu et al., 2022b): a generated, instance-dependent prompt inserted at an intermediate layer."""

    prompt_length: int = _f(64, "prompt tokens inserted at insert_layer (appendix A.1.2: 64)")
    bottleneck: int = _f(1024, "the prompt generator's bottleneck width (appendix A.1.2: 1024)")
    insert_layer: int | None = _f(None, "the layer whose input gets the prompt, 0-based; default num_layers // 2")
    placeholder_init: str = _f(
        "zeros",
        "what the layers below insert_layer see at the prompt's positions (LPT has none there): 'zeros' (zero "
        "embeddings) or 'text' (the embeddings of placeholder_init_text's tokens, fixed, as prompt tuning's text init)",
        choices=("zeros", "text"),
    )
    placeholder_init_text: str = _f(
        "Read the following text carefully and decide which of the possible labels describes it best.",
        "placeholder_init=text: the text whose token embeddings fill the placeholders",
    )

    def validate(self) -> None:
        super().validate()
        self.check_range("prompt_length", 1, 4096)
        self.check_range("bottleneck", 1, None)
        self.check_range("insert_layer", 0, None)


@dataclass
class PedroConfig(BaselineConfig):
    """PEDRO (Xie et al., 2024): per-layer generators of input-dependent key/value/FFN scaling vectors."""

    r: int = _f(
        16,
        "bottleneck of each layer's vector generator, d -> r -> (k + v + ffn) (appendix A.1.2 gives "
        "no size: 'a lightweight vector generator')",
    )

    def validate(self) -> None:
        super().validate()
        self.check_range("r", 1, None)


# Training-free baselines (bias-aware PEFT paper, appendix D): calibration.py and crispr.py
@dataclass
class ZeroShotConfig(BaselineConfig):
    """The untuned model: label words read off the LM head, nothing trained or calibrated."""


@dataclass
class ContextualCalibrationConfig(BaselineConfig):
    """CC (Zhao et al., 2021): the prior is the mean prediction on content-free inputs."""

    content_free: list[str] = field(
        default_factory=lambda: ["N/A", "", "[MASK]"],
        metadata={
            "help": "content-free inputs put in the prompt's {text} (Zhao et al.: 'N/A', '' and '[MASK]', averaged)"
        },
    )

    def validate(self) -> None:
        super().validate()
        if not self.content_free:
            raise ConfigError("method.content_free needs at least one content-free input")


@dataclass
class DomainCalibrationConfig(BaselineConfig):
    """DC (Fei et al., 2023): the prior is the mean prediction on random in-domain word strings."""

    num_samples: int = _f(20, "random in-domain texts averaged (Fei et al.: 20)")
    sample_seed: int = _f(0, "seed of the random word draw")

    def validate(self) -> None:
        super().validate()
        self.check_range("num_samples", 1, 10_000)


@dataclass
class CrisprConfig(BaselineConfig):
    """Bias-neuron pruning; ``neurons`` is filled by attribution and saved, so a checkpoint re-prunes the same ones."""

    num_neurons: int = _f(
        20,
        "bias neurons pruned (Yang et al. prune the top-k attributed neurons; k is not given in the bias-aware paper)",
    )
    probe_examples: int = _f(20, "training examples attributed (appendix D: 20)")
    probe_seed: int = _f(0, "seed of the draw of probe_examples")
    ffn_module: str = _f("down_proj", "the feed-forward output projection whose input units are the neurons")
    neurons: list[list[int]] | None = _f(None, "[layer, unit] pairs to prune; None: found by attribution")

    def validate(self) -> None:
        super().validate()
        self.check_range("num_neurons", 1, None)
        self.check_range("probe_examples", 1, 10_000)
