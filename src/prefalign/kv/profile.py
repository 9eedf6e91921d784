"""Single-layer sensitivity (thesis 5.6.5 / Table 5.1 style): compress one layer at a time, score, restore."""

from __future__ import annotations

from collections.abc import Callable

from .compress import install, layer_factors
from .factorize import attention_modules, family


def _swap(model, layer: int, module) -> None:
    if family(model) == "llama":
        model.model.layers[layer].self_attn = module
    else:
        model.transformer.h[layer].attn = module


def sensitivity_profile(model, score: Callable[[object], float], rank: int, granularity: str = "head") -> dict:
    """``score(model)`` uncompressed, then with each single layer at ``rank`` (all others untouched).

    Returns {"rank", "granularity", "baseline", "scores": [per layer], "deltas": [score - baseline]}.
    The model is left exactly as it was (the original attention module is put back).
    """
    baseline = float(score(model))
    scores = []
    for layer in range(len(attention_modules(model))):
        original = attention_modules(model)[layer]
        key, value = layer_factors(model, layer, rank, granularity)
        install(model, layer, key, value)
        try:
            scores.append(float(score(model)))
        finally:
            _swap(model, layer, original)
    return {
        "rank": rank,
        "granularity": granularity,
        "baseline": baseline,
        "scores": scores,
        "deltas": [s - baseline for s in scores],
    }
