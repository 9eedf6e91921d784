"""Generate with a method's prefixes in the key/value cache (DCPC section 4.1: beam search of 3).

The prefix goes in as a pre-filled ``DynamicCache`` of ``m`` positions, built for
``batch x num_beams`` rows (``generate`` expands the inputs example-major with
``repeat_interleave`` but leaves a passed cache alone). ``input_ids`` start with ``m``
placeholder tokens standing for the cached positions, and the attention mask holds ``m`` ones
for them, so ``generate`` sees a cache that covers the first ``m`` columns and feeds only the
prompt on the first step (transformers 5 slices ``input_ids[:, past_length:]``; older versions
did the same through ``cache_position``). Position ids continue after the prefix exactly as in
training (``position_offset``), and the placeholders are cut from the output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.collator import pad_ids
from ..errors import ConfigError
from ..methods import Method
from ..models.prefix import build_prefix_cache


def language_model(method: Method) -> nn.Module:
    """The causal LM a method generates with: its backbone (adapters included)."""
    if not method.geo.is_decoder:
        raise ConfigError(
            f"{method.name or type(method).__name__} is built on an encoder; generation needs a decoder (a causal LM)"
        )
    return method.language_model


def encode_prompts(tokenizer, prompts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Prompt ids with the tokenizer's start tokens and no trailing eos (the answer follows them);
    longer prompts keep their last ``max_length`` tokens."""
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    out = []
    for text in prompts:
        ids = tokenizer(text)["input_ids"]
        if ids and eos is not None and ids[-1] == eos and eos != bos:
            ids = ids[:-1]
        out.append(ids[-max_length:] if max_length else ids)
    return out


@torch.no_grad()
def generate(
    method: Method,
    tokenizer,
    prompts: Sequence[str],
    *,
    num_beams: int = 3,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    max_length: int | None = None,
    lm: nn.Module | None = None,
    **generate_kwargs,
) -> list[str]:
    """Answers to ``prompts`` from ``method``'s backbone with the method's prefixes in place.

    ``method`` is any prefalign method: ``method.prefixes(input_ids, attention_mask)`` gives the
    per-example prefix ``(N, L, 2, m, kv_dim)`` or None (no prefix: adapters live in the
    backbone); a ``soft_prompt(batch)`` method (prompt tuning) puts soft tokens before the input
    instead. Decoding is deterministic beam search (greedy with ``num_beams=1``); extra keyword
    arguments go to ``generate``. Returns the decoded continuations, special tokens dropped.
    """
    ids = encode_prompts(tokenizer, prompts, max_length)
    return generate_from_ids(
        method,
        tokenizer,
        ids,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        lm=lm,
        **generate_kwargs,
    )


@torch.no_grad()
def generate_from_ids(
    method: Method,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    *,
    num_beams: int = 3,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    lm: nn.Module | None = None,
    **generate_kwargs,
) -> list[str]:
    """``generate`` on prompts already tokenised (``Collator.prompt_ids``)."""
    lm = lm if lm is not None else language_model(method)
    was_training, lm_training = method.training, lm.training
    method.eval()
    lm.eval()
    texts = []
    try:
        for start in range(0, len(prompt_ids), batch_size):
            batch = pad_ids([list(s) for s in prompt_ids[start : start + batch_size]], tokenizer.pad_token_id, "left")
            new = generate_batch(
                method,
                lm,
                tokenizer,
                batch["input_ids"],
                batch["attention_mask"],
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
                **generate_kwargs,
            )
            texts.extend(tokenizer.decode(row, skip_special_tokens=True).strip() for row in new)
    finally:
        method.train(was_training)
        lm.train(lm_training)
    return texts


@torch.no_grad()
def generate_batch(
    method: Method,
    lm: nn.Module,
    tokenizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    num_beams: int = 3,
    max_new_tokens: int = 32,
    **generate_kwargs,
) -> torch.Tensor:
    """The new token ids ``(B, <= max_new_tokens)`` after left-padded prompts, prefix in place."""
    device = next(lm.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        num_return_sequences=1,
        do_sample=False,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )
    if num_beams > 1:
        kwargs["early_stopping"] = True
    kwargs.update(generate_kwargs)
    b, t = input_ids.shape
    prefix = method.prefixes(input_ids, attention_mask)
    soft = method.soft_prompt(b)
    if prefix is None and soft is not None:
        # Soft tokens before the input embeddings; with inputs_embeds only, generate returns new tokens only.
        words = lm.get_input_embeddings()(input_ids)
        embeds = torch.cat([soft.to(device=device, dtype=words.dtype), words], dim=1)
        mask = torch.cat([attention_mask.new_ones(b, soft.shape[1]), attention_mask], dim=1)
        with method.generating(attention_mask, num_beams):  # LPT's generator reads the prompt
            return lm.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
    if prefix is None:
        with method.generating(attention_mask, num_beams):  # PEDRO's generators read the prompt
            return lm.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[:, t:]
    geo = method.geo
    m = prefix.shape[3]
    dtype = next(lm.parameters()).dtype
    cache = build_prefix_cache(
        prefix.to(device=device, dtype=dtype).repeat_interleave(num_beams, dim=0), geo, lm.config
    )
    placeholders = input_ids.new_full((b, m), pad)
    mask = torch.cat([attention_mask.new_ones(b, m), attention_mask], dim=1)
    # Positions of the real tokens: from m (position_offset, as in training) or from 0.
    offset = m if method.position_offset else 0
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0) + offset
    position_ids = torch.cat([torch.arange(m, device=device).expand(b, m), positions], dim=1)
    out = lm.generate(
        input_ids=torch.cat([placeholders, input_ids], dim=1),
        attention_mask=mask,
        position_ids=position_ids,
        past_key_values=cache,
        **kwargs,
    )
    return out[:, m + t :]
