"""Perplexity of a causal LM on a plain-text corpus (the bias-aware PEFT paper's forgetting check, Table 5)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import ConfigError, DataError


def read_corpus(path: str | Path) -> str:
    """The text of ``path`` (UTF-8); a DataError when missing or empty."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"training.perplexity_text {path} is not a file; point it at a plain-text corpus "
            "such as WikiText-2's wiki.test.raw"
        )
    text = p.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"training.perplexity_text {path} is empty")
    return text


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokenizer, text: str, max_tokens: int = 4096, window: int = 512) -> dict:
    """exp(mean next-token NLL) over the first ``max_tokens`` tokens, in non-overlapping windows of ``window``.

    Every token but the first of each window is predicted; returns perplexity and the tokens scored.
    """
    if getattr(model, "get_output_embeddings", lambda: None)() is None:
        raise ConfigError("perplexity needs a decoder with an LM head")
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0][:max_tokens]
    if len(ids) < 2:
        raise DataError("the perplexity corpus has fewer than two tokens")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = ids[start : start + window].unsqueeze(0).to(device)
        if chunk.shape[1] < 2:
            break
        logits = model(input_ids=chunk, use_cache=False).logits[0, :-1].float()
        total += float(torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum"))
        count += chunk.shape[1] - 1
    model.train(was_training)
    return {"perplexity": math.exp(total / count), "perplexity_tokens": count}
