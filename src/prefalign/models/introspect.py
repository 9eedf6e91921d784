"""Read a model's geometry (layers, key/value heads, head size) from its config."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelLoadError

# Decoder-only families whose past_key_values are transformers Cache objects (checked in tests).
DECODER_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gpt2", "gemma", "gemma2", "phi3", "smollm3", "olmo2"}
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "electra"}


@dataclass(frozen=True)
class ModelGeometry:
    """What a prefix must match: per layer ``num_key_value_heads`` x ``m`` x ``head_dim``."""

    model_type: str
    is_decoder: bool
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int

    @property
    def kv_dim(self) -> int:
        """Width of one layer's key (or value) prefix row: kv heads x head size."""
        return self.num_key_value_heads * self.head_dim


def _first(config, *names):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def geometry(config) -> ModelGeometry:
    """Geometry of a transformers config; sizes prefixes by ``num_key_value_heads`` and ``head_dim``."""
    config = getattr(config, "text_config", None) or config
    model_type = getattr(config, "model_type", "")
    layers = _first(config, "num_hidden_layers", "n_layer")
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    heads = _first(config, "num_attention_heads", "n_head")
    if layers is None or hidden is None or heads is None:
        raise ModelLoadError(
            f"cannot read layers/hidden size/heads from a '{model_type}' config; "
            "prefalign supports BERT/RoBERTa-style encoders and LLaMA/Mistral/Qwen2/GPT-2-style decoders"
        )
    kv_heads = _first(config, "num_key_value_heads") or heads
    head_dim = _first(config, "head_dim") or hidden // heads
    archs = getattr(config, "architectures", None) or []
    is_decoder = (
        model_type in DECODER_TYPES or any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs)
    ) and model_type not in ENCODER_TYPES
    return ModelGeometry(
        model_type, bool(is_decoder), int(layers), int(hidden), int(heads), int(kv_heads), int(head_dim)
    )
