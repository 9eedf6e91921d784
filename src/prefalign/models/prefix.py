"""P-Tuning v2 deep prefixes (DCPC eq. 1-2) and their injection through transformers' Cache objects.

A prefix is, per layer, ``m`` key rows and ``m`` value rows of width ``num_key_value_heads x
head_dim`` (so grouped-query models get prefixes sized by their key/value heads, not by
``hidden_size / heads``). We hand them to the frozen model as a pre-filled ``DynamicCache`` and
extend the attention mask by ``m`` ones, so every real token attends to the prefix in every layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer

from ..errors import ModelLoadError
from .introspect import ModelGeometry


class PrefixEncoder(nn.Module):
    """Input-independent deep prefixes for every layer, optionally through P-Tuning v2's MLP.

    Output shape: ``(num_layers, 2, m, kv_dim)`` (2 = key, value). Without reparameterisation the
    prefixes are parameters themselves; with it, an embedding ``E in R^{m x d}`` goes through
    ``Linear(d, h) -> tanh -> Linear(h, L*2*kv_dim)`` and is added to a fixed ``init`` buffer
    (the real-text activations, or zeros for random init), so both variants can start from text.
    """

    def __init__(
        self,
        geo: ModelGeometry,
        length: int,
        *,
        reparameterize: bool = False,
        hidden_size: int = 512,
        init_kv: torch.Tensor | None = None,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.geo, self.length, self.reparameterize = geo, length, reparameterize
        shape = (geo.num_layers, 2, length, geo.kv_dim)
        if init_kv is not None and tuple(init_kv.shape) != shape:
            raise ValueError(f"init_kv has shape {tuple(init_kv.shape)}, expected {shape}")
        if reparameterize:
            self.embedding = nn.Parameter(torch.randn(length, geo.hidden_size) * init_std)
            self.mlp = nn.Sequential(
                nn.Linear(geo.hidden_size, hidden_size),
                nn.Tanh(),
                nn.Linear(hidden_size, geo.num_layers * 2 * geo.kv_dim),
            )
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)
            base = init_kv if init_kv is not None else torch.zeros(shape)
            self.register_buffer("init_kv", base.clone(), persistent=True)
        else:
            start = init_kv.clone() if init_kv is not None else torch.randn(shape) * init_std
            self.kv = nn.Parameter(start)

    def forward(self) -> torch.Tensor:
        if not self.reparameterize:
            return self.kv
        out = self.mlp(self.embedding)  # (m, L*2*kv)
        out = out.view(self.length, self.geo.num_layers, 2, self.geo.kv_dim).permute(1, 2, 0, 3)
        return self.init_kv + out


def build_prefix_cache(prefix_kv: torch.Tensor, geo: ModelGeometry, config) -> DynamicCache:
    """Pre-fill a DynamicCache with per-example prefixes of shape ``(B, L, 2, m, kv_dim)``."""
    b, layers, _, m, _ = prefix_kv.shape
    cache = DynamicCache(config=config)
    kv = prefix_kv.view(b, layers, 2, m, geo.num_key_value_heads, geo.head_dim).transpose(3, 4)
    # unbind, not kv[:, layer, 0]: its backward stacks the 2L gradients once, where indexing would
    # zero-fill and add a whole prefix-sized gradient per layer and key/value (O(L^2) work).
    for layer, (keys, values) in enumerate(pair.unbind(1) for pair in kv.unbind(1)):
        # (B, kv_heads, m, head_dim): the layout every Cache layer expects.
        cache.update(keys, values, layer)
    return cache


def build_row_scaled_prefix_cache(
    static: torch.Tensor, scale: torch.Tensor, geo: ModelGeometry, config, dtype: torch.dtype | None = None
) -> DynamicCache:
    """A DynamicCache whose prefix for example ``i`` is ``static * scale[i, j] + static`` in row ``j`` (DCPC's
    gate, eq. 11), written layer by layer straight into the cache: the same values, bit for bit, as
    ``build_prefix_cache`` of the materialised (B, L, 2, m, kv_dim) prefix, without that tensor.

    ``static`` ``(L, 2, m, kv_dim)``, ``scale`` ``(B, m)``. For inference (no autograd): the layers' key and value
    tensors are set directly, not appended, so each prefix row is written once per layer. The rows are computed
    in ``static``'s dtype and then cast to ``dtype`` (the backbone's), as the materialised prefix is.
    """
    layers, _, m, _ = static.shape
    b = scale.shape[0]
    kv = static.view(layers, 2, m, geo.num_key_value_heads, geo.head_dim).transpose(2, 3)  # (L, 2, kv_heads, m, hd)
    factor = scale.to(static.dtype).view(b, 1, m, 1)
    cache = DynamicCache(config=config)
    for layer, (k, v) in enumerate(pair.unbind(0) for pair in kv.unbind(0)):
        keys = (k.unsqueeze(0) * factor).add_(k).to(dtype or static.dtype)  # the product, then the sum, as before
        values = (v.unsqueeze(0) * factor).add_(v).to(dtype or static.dtype)
        cache.update(keys[:, :, :0], values[:, :, :0], layer)  # the layer, initialised with no rows
        holder = cache.layers[layer]
        holder.keys, holder.values = keys, values
    return cache


def _cache_layers(cache: Cache) -> list:
    """The per-layer key/value holders of ``cache`` (an encoder-decoder cache: those of both its caches)."""
    if hasattr(cache, "self_attention_cache"):
        return _cache_layers(cache.self_attention_cache) + _cache_layers(cache.cross_attention_cache)
    return list(getattr(cache, "layers", []))


class PrefixCheckpointedLayer:
    """A transformer layer's forward, checkpointed (non-reentrant) with the prefix cache passed through.

    transformers' own checkpointing drops ``past_key_values`` inside checkpointed layers, since a layer
    appends its new keys/values to the cache and the backward replay would append them a second time. Here
    the cache stays: the keys/values every cache layer holds when the layer is called (the prefix, for the
    layers not yet run) are remembered, and the replay starts from them, so it recomputes exactly the
    forward's activations. Only the layer's activations are dropped; the prefix tensors are inputs of the
    graph as without checkpointing, so their gradients are the same. RNG state is replayed too (dropout).
    """

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer

    def forward(self, *args, **kwargs):
        return type(self.layer).forward(self.layer, *args, **kwargs)  # the class's forward, as without this

    def __call__(self, *args, **kwargs):
        if not (self.layer.training and torch.is_grad_enabled()):
            return self.forward(*args, **kwargs)
        cache = next((a for a in (*args, *kwargs.values()) if isinstance(a, Cache)), None)
        held = [(c, c.keys, c.values) for c in _cache_layers(cache)] if cache is not None else []

        def run(*inputs):
            for holder, keys, values in held:  # the replay sees the cache as the forward did
                holder.keys, holder.values = keys, values
            return self.forward(*inputs, **kwargs)

        return checkpoint(run, *args, use_reentrant=False)


def checkpoint_prefix_layers(model: nn.Module) -> int:
    """Checkpoint every transformer layer of ``model`` with the prefix cache kept (``PrefixCheckpointedLayer``);
    the number of layers. A ModelLoadError when the model has no layers transformers marks as checkpointable."""
    layers, names = [], []
    for name, module in model.named_modules():
        if isinstance(module, GradientCheckpointingLayer) and not any(name.startswith(n + ".") for n in names):
            layers.append(module)  # the outermost ones: a layer inside a checkpointed layer is replayed with it
            names.append(name)
    if not layers:
        raise ModelLoadError(
            f"{type(model).__name__} has no layers transformers can checkpoint; drop training.gradient_checkpointing"
        )
    for layer in layers:
        if not isinstance(layer.forward, PrefixCheckpointedLayer):
            layer.forward = PrefixCheckpointedLayer(layer)  # the instance's forward: nn.Module.__call__ runs it
    return len(layers)


def uncheckpoint_prefix_layers(model: nn.Module) -> None:
    """Undo ``checkpoint_prefix_layers``."""
    for layer in model.modules():
        if isinstance(layer.__dict__.get("forward"), PrefixCheckpointedLayer):
            del layer.forward


def extend_attention_mask(attention_mask: torch.Tensor, prefix_length: int) -> torch.Tensor:
    """Prepend ``prefix_length`` ones: every real token may attend to every prefix position."""
    ones = attention_mask.new_ones(attention_mask.shape[0], prefix_length)
    return torch.cat([ones, attention_mask], dim=1)


def positions_from_zero(attention_mask: torch.Tensor, geo: ModelGeometry, padding_idx: int | None) -> torch.Tensor:
    """Position ids that ignore the prefix (real tokens start where they would without one)."""
    pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    if geo.model_type in {"roberta", "xlm-roberta", "camembert"} and padding_idx is not None:
        pos = (pos + padding_idx + 1) * attention_mask.long() + padding_idx * (1 - attention_mask.long())
    return pos


@torch.no_grad()
def check_prefix_reaches_model(model, geo: ModelGeometry) -> None:
    """Raise ModelLoadError if the model ignores a pre-filled cache (its attention takes no past_key_values)."""
    device = next(model.parameters()).device
    ids = torch.arange(1, 4, device=device).unsqueeze(0) % max(getattr(model.config, "vocab_size", 4), 4)
    mask = torch.ones_like(ids)
    base = model.base_model if geo.is_decoder else model
    was_training = model.training
    model.eval()
    plain = base(input_ids=ids, attention_mask=mask).last_hidden_state
    gen = torch.Generator(device="cpu").manual_seed(0)  # leave the global RNG (and so training) untouched
    kv = (torch.randn(1, geo.num_layers, 2, 2, geo.kv_dim, generator=gen) * 3).to(device=device, dtype=plain.dtype)
    cache = build_prefix_cache(kv, geo, model.config)
    prefixed = base(
        input_ids=ids, attention_mask=extend_attention_mask(mask, 2), past_key_values=cache
    ).last_hidden_state
    model.train(was_training)
    if torch.allclose(plain, prefixed):
        raise ModelLoadError(
            f"'{geo.model_type}' models ignore past_key_values, so prefixes cannot reach them; prefalign supports "
            "BERT/RoBERTa-style encoders and LLaMA/Mistral/Qwen2/GPT-2-style decoders"
        )


@torch.no_grad()
def text_init_kv(model, tokenizer, geo: ModelGeometry, text: str, length: int) -> torch.Tensor:
    """Li & Liang's initialisation: the frozen model's keys/values for ``length`` tokens of real text.

    The text's tokens (no special tokens) are repeated or cut to ``length`` and run through the
    model once; the cache it fills becomes the initial prefix, shape ``(L, 2, m, kv_dim)``. With
    positions continuing after the prefix, such a prefix starts out exactly as that text would.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("prefix_init_text is empty after tokenisation")
    ids = (ids * (length // len(ids) + 1))[:length]
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    cache = DynamicCache(config=model.config)
    was_training = model.training
    model.eval()
    model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), past_key_values=cache, use_cache=True)
    model.train(was_training)
    rows = []
    for layer in range(geo.num_layers):
        k, v = cache.layers[layer].keys[0], cache.layers[layer].values[0]  # (kv_heads, m, head_dim)
        rows.append(torch.stack([t.transpose(0, 1).reshape(length, geo.kv_dim) for t in (k, v)]))
    return torch.stack(rows).float().cpu()
