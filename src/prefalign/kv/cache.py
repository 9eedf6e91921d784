"""A transformers cache whose compressed layers hold LoRC latents instead of keys and values.

Pinned to transformers 5.x's layered cache API (``transformers.cache_utils``): a ``Cache`` is a list of
per-layer objects, ``Cache.update(keys, values, layer_idx, **kwargs)`` forwards ``kwargs`` to the layer's
``update``, and ``DynamicLayer`` grows ``keys``/``values`` by concatenating along dim -2. ``LatentLayer``
stores tensors of shape (batch, groups, seq, rank) in those two slots, plus (for RoPE models) the
position id of every cached token, which the keys need when they are rebuilt and rotated.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from ..errors import ConfigError


class LatentLayer(DynamicLayer):
    """One compressed layer: ``keys``/``values`` hold the d_c-wide latents; ``positions`` their position ids."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.positions: torch.Tensor | None = None

    def update(self, key_states, value_states, *args, positions: torch.Tensor | None = None, **kwargs):
        """Append the new latents (and their positions); return all cached latents."""
        keys, values = super().update(key_states, value_states)
        if positions is not None:
            positions = positions.to(torch.int32)
            self.positions = positions if self.positions is None else torch.cat([self.positions, positions], dim=-1)
        return keys, values

    def reset(self) -> None:
        super().reset()
        self.positions = None

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        if self.positions is not None and self.keys is not None:
            self.positions = self.positions[..., : self.keys.shape[-2]]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        if self.positions is not None:
            self.positions = self.positions.index_select(0, beam_idx.to(self.positions.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        if self.positions is not None:
            self.positions = self.positions.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        if self.positions is not None:
            self.positions = self.positions[indices, ...]


class LoRCCache(DynamicCache):
    """A dynamic cache with a ``LatentLayer`` for each compressed layer and a ``DynamicLayer`` for the rest.

    ``generate`` needs no change: pass ``past_key_values=LoRCCache(compressed)`` or nothing at all (a
    compressed attention module turns an empty ``DynamicLayer`` of transformers' default cache into a
    ``LatentLayer`` the first time it writes).
    """

    def __init__(self, compressed: list[bool]):
        Cache.__init__(self, layers=[LatentLayer() if c else DynamicLayer() for c in compressed])


def latent_layer(cache: Cache, layer_idx: int) -> LatentLayer:
    """The cache's layer ``layer_idx`` as a LatentLayer, swapping in one for a still-empty DynamicLayer."""
    if getattr(cache, "layer_class_to_replicate", None) is not None:
        while len(cache.layers) <= layer_idx:
            cache.layers.append(cache.layer_class_to_replicate())
    layer = cache.layers[layer_idx]
    if isinstance(layer, LatentLayer):
        return layer
    if type(layer) is not DynamicLayer or layer.get_seq_length() > 0:
        raise ConfigError(
            f"layer {layer_idx} of the {type(cache).__name__} passed in holds full keys/values; "
            "a LoRC-compressed model needs an empty DynamicCache or prefalign.kv.LoRCCache"
        )
    fresh = LatentLayer()
    cache.layers[layer_idx] = fresh
    return fresh


def stored_nbytes(obj) -> int:
    """Bytes of every tensor ``obj`` holds: a tensor's ``nbytes``; a tensor subclass that packs its data
    (optimum-quanto's quantized tensors) summed over the inner tensors ``__tensor_flatten__`` names, so
    packed 2- and 4-bit codes count at their packed size; tuples, lists and dict values (HQQ's codes and
    their metadata) summed; anything else 0."""
    if isinstance(obj, torch.Tensor):
        if type(obj) is not torch.Tensor and hasattr(obj, "__tensor_flatten__"):
            names = obj.__tensor_flatten__()[0]
            return sum(stored_nbytes(getattr(obj, name)) for name in names)
        return obj.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(stored_nbytes(x) for x in obj)
    if isinstance(obj, dict):
        return sum(stored_nbytes(x) for x in obj.values())
    return 0


def cache_nbytes(cache: Cache) -> dict[str, int]:
    """Bytes the cache really holds: the sum of its stored tensors' nbytes, by kind, and the total.

    Works for transformers' own caches too: a quantized layer (``QuantizedCache``, any backend) counts its
    quantized keys/values (codes, scales, zero points) plus the full-precision residual it keeps."""
    keys = values = positions = 0
    for layer in cache.layers:
        keys += stored_nbytes(getattr(layer, "keys", None)) + stored_nbytes(getattr(layer, "_quantized_keys", None))
        values += stored_nbytes(getattr(layer, "values", None))
        values += stored_nbytes(getattr(layer, "_quantized_values", None))
        positions += stored_nbytes(getattr(layer, "positions", None))
    return {"keys": keys, "values": values, "positions": positions, "total": keys + values + positions}
