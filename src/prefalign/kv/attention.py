"""The compressed attention module that replaces a layer's self-attention (thesis 5.4.1, 5.4.3, H.1).

Per layer, with G blocks of rank r (``factorize.py``):

* queries: LLaMA keeps ``q_proj`` and its RoPE; GPT-2 (no RoPE) folds each head's key up-projection
  into its query (eq. 5.7), so a head's scores are taken against the latent directly.
* keys (LLaMA): rebuilt from the cached latent, ``K = latent U_k^T + b_k``, then rotated at each cached
  token's position (appendix H.1: the cache holds un-rotated, compressed keys).
* values: never rebuilt. Each query head attends over its group's value latent (r wide) and the
  value up-projection is folded into that head's slice of ``o_proj`` (eq. 5.9, per head):
  ``o_proj'_i = W_o[:, head i] U_v[head i rows]`` of shape (hidden, r); the value bias moves into
  ``o_proj``'s bias (attention weights sum to one).
* GQA (5.4.3): query head i reads key/value head i // (heads / kv_heads), whose latent lives in
  block (kv head) // (kv_heads / G).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cache import latent_layer
from .factorize import Factor, Projections


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """LLaMA's rotary embedding on (b, heads, n, d) with cos/sin of shape (b, n, d)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + _rotate_half(x) * sin


class LoRCAttention(nn.Module):
    """Self-attention over a cache of LoRC latents; a drop-in for LlamaAttention / GPT2Attention in eval."""

    def __init__(
        self,
        proj: Projections,
        key: Factor,
        value: Factor,
        *,
        layer_idx: int,
        scaling: float,
        rotary: nn.Module | None,
    ):
        super().__init__()
        h, kvh, hd = proj.num_heads, proj.num_kv_heads, proj.head_dim
        groups, rank = key.down.shape[0], key.rank
        if value.down.shape[0] != groups or value.rank != rank:
            raise ValueError("key and value factors must have the same blocks and rank")
        self.layer_idx, self.scaling = layer_idx, scaling
        self.num_heads, self.num_kv_heads, self.head_dim = h, kvh, hd
        self.groups, self.rank = groups, rank
        self.rope = rotary is not None
        self._rotary = [rotary]  # shared with the model, not a submodule of this one
        per_group = kvh // groups  # kv heads in one block
        kv_of_head = torch.arange(h) // (h // kvh)
        self.register_buffer("group_of_head", kv_of_head // per_group, persistent=False)
        local = kv_of_head % per_group  # the kv head's place inside its block
        hidden = proj.q.shape[1]
        dtype = proj.q.dtype

        def head_rows(up: torch.Tensor, i: int) -> torch.Tensor:  # (hd, r): U rows of query head i's kv head
            g, j = int(self.group_of_head[i]), int(local[i])
            return up[g, j * hd : (j + 1) * hd, :]

        self.k_down = nn.Linear(hidden, groups * rank, bias=False, dtype=dtype)
        self.k_down.weight.data.copy_(key.down.reshape(groups * rank, hidden))
        self.v_down = nn.Linear(hidden, groups * rank, bias=False, dtype=dtype)
        self.v_down.weight.data.copy_(value.down.reshape(groups * rank, hidden))
        q_bias = proj.q_bias is not None
        if self.rope:
            self.q_proj = nn.Linear(hidden, h * hd, bias=q_bias, dtype=dtype)
            self.q_proj.weight.data.copy_(proj.q)
            if q_bias:
                self.q_proj.bias.data.copy_(proj.q_bias)
            self.register_buffer("k_up", key.up.detach().clone())
            self.register_buffer("k_bias", None if proj.k_bias is None else proj.k_bias.detach().clone())
        else:
            # eq. 5.7 per head: q'_i = U_k[i]^T q_i. The key bias adds q_i . b_k to every score of a
            # query alike, which softmax ignores, so it is dropped exactly.
            wq = torch.cat([head_rows(key.up, i).T @ proj.q[i * hd : (i + 1) * hd] for i in range(h)])
            self.q_proj = nn.Linear(hidden, h * rank, bias=q_bias, dtype=dtype)
            self.q_proj.weight.data.copy_(wq)
            if q_bias:
                bq = torch.cat([head_rows(key.up, i).T @ proj.q_bias[i * hd : (i + 1) * hd] for i in range(h)])
                self.q_proj.bias.data.copy_(bq)
        # eq. 5.9 per head: o_proj'_i = W_o[:, head i] U_v[head i]  (hidden, r)
        wo = torch.cat([proj.o[:, i * hd : (i + 1) * hd] @ head_rows(value.up, i) for i in range(h)], dim=1)
        bo = torch.zeros(hidden, dtype=dtype) if proj.o_bias is None else proj.o_bias.detach().clone()
        if proj.v_bias is not None:
            v_bias_per_head = torch.stack([proj.v_bias[int(k) * hd : (int(k) + 1) * hd] for k in kv_of_head])
            bo = bo + proj.o.reshape(hidden, h, hd).mul(v_bias_per_head).sum(dim=(1, 2))
        self.o_proj = nn.Linear(h * rank, hidden, bias=True, dtype=dtype)
        self.o_proj.weight.data.copy_(wo)
        self.o_proj.bias.data.copy_(bo)

    def _keys(self, latent: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rebuild (b, kv_heads, N, head_dim) keys from (b, G, N, r) latents and rotate them (H.1)."""
        b, g, n, _ = latent.shape
        keys = torch.einsum("bgnr,gor->bngo", latent, self.k_up).reshape(b, n, self.num_kv_heads * self.head_dim)
        if self.k_bias is not None:
            keys = keys + self.k_bias
        keys = keys.view(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self._rotary[0](keys, positions)
        return _rope(keys, cos.to(keys.dtype), sin.to(keys.dtype))

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, None]:
        b, n, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(b, n, self.num_heads, -1).transpose(1, 2)
        lk = self.k_down(hidden_states).view(b, n, self.groups, self.rank).transpose(1, 2)
        lv = self.v_down(hidden_states).view(b, n, self.groups, self.rank).transpose(1, 2)
        positions = None
        if self.rope:
            cos, sin = position_embeddings
            q = _rope(q, cos, sin)
            if position_ids is None:  # the model's default: positions follow the cache
                past = 0 if past_key_values is None else past_key_values.get_seq_length(self.layer_idx)
                position_ids = torch.arange(past, past + n, device=hidden_states.device)[None]
            positions = position_ids.expand(b, n)
        if past_key_values is not None:
            layer = latent_layer(past_key_values, self.layer_idx)
            lk, lv = past_key_values.update(lk, lv, self.layer_idx, positions=positions)
            positions = layer.positions
        total = lk.shape[-2]
        if self.rope:
            keys = self._keys(lk, positions.long()).repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
        else:
            keys = lk.index_select(1, self.group_of_head)
        values = lv.index_select(1, self.group_of_head)
        mask, causal = attention_mask, False
        if mask is not None:
            mask = mask[..., -n:, -total:]
        elif n > 1 and n == total:
            causal = True  # a prefill with nothing cached before it: SDPA's own causal pattern
        elif n > 1:
            mask = torch.ones(n, total, dtype=torch.bool, device=q.device).tril(diagonal=total - n)
        width = values.shape[-1]
        if n > 1 and width < q.shape[-1]:
            # SDPA's fused kernels need one head width for q, k and v; r-wide values would send a prefill
            # to the path that materialises every score (6.6x the full model's prefill time at 8k tokens on
            # SmolLM2, docs/results.md). Zero columns leave the first r outputs exactly as they were.
            values = F.pad(values, (0, q.shape[-1] - width))
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal, scale=self.scaling)
        out = out[..., :width].transpose(1, 2).reshape(b, n, self.num_heads * self.rank)
        return self.o_proj(out), None
