"""Class scores from a frozen backbone with per-example deep prefixes.

Encoders score through a trainable head on mean-pooled output (MiniLM was trained for mean
pooling; BERT's pooler on the first token stays at the majority class, see docs/methods/dcpc.md).
Decoders score through their own LM head: a class's score is the log-probability of its
verbalizer token after the prompt; a multiple-choice option's score is the mean
log-probability of its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .introspect import ModelGeometry
from .prefix import build_prefix_cache, build_row_scaled_prefix_cache, extend_attention_mask, positions_from_zero


@dataclass(frozen=True)
class TaskSpec:
    """What the classifier must output: ``num_classes`` scores per example."""

    num_classes: int
    multiple_choice: bool = False
    verbalizer_ids: tuple[int, ...] | None = None  # decoders, classification tasks
    generation: bool = False  # decoders, generation tasks: the LM loss over answer tokens (lm_forward)
    label_names: tuple[str, ...] | None = None  # the classes' names (L-Tuning reads them as label texts)


@dataclass
class LMOutput:
    """The LM loss over answer tokens plus what DCPC's pairwise terms read (generation tasks)."""

    loss: torch.Tensor  # mean token cross-entropy over every answer token of the batch
    answer_probs: torch.Tensor  # (B, V): each example's next-token distribution, averaged over its answer positions
    pooled: torch.Tensor | None  # (B, L+1, d): masked mean per layer over the prompt tokens, 0 = embeddings
    last_pooled: torch.Tensor  # (B, d): the last layer's mean over the prompt tokens


@dataclass
class BackboneOutput:
    """Class logits plus the pooled hidden states DCPC's losses read."""

    logits: torch.Tensor  # (B, C)
    pooled: torch.Tensor | None  # (B, L+1, d): masked mean per layer, 0 = embeddings
    last_pooled: torch.Tensor  # (B, d)
    head_input: torch.Tensor | None = None  # (B, d): what an encoder's head read (annotator conditioning)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: ``hidden`` (..., N, T, d), ``mask`` (N, T) -> (..., N, d)."""
    m = mask.to(hidden.dtype)
    return torch.einsum("...ntd,nt->...nd", hidden, m) / m.sum(-1).clamp(min=1).unsqueeze(-1)


def pool_layers(hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Masked mean of every layer's output: L+1 tensors (N, T', d) -> (N, L+1, d).

    Tokens ``start:`` are pooled with ``mask`` (N, T). One matmul per layer, not one over a stack:
    stacking would copy every hidden state, (L+1) x N x T x d more at the forward pass's peak.
    """
    w = mask.to(hidden_states[0].dtype)
    w = (w / w.sum(-1, keepdim=True).clamp(min=1)).unsqueeze(1)  # (N, 1, T)
    return torch.cat([torch.bmm(w, h[:, start:]) for h in hidden_states], dim=1)


class PrefixClassifier(nn.Module):
    """A frozen backbone that takes per-example prefixes and returns class logits.

    Holds the only trainable non-prefix parameters of a prefix method: the encoder's head.
    """

    def __init__(
        self,
        model: nn.Module,
        geo: ModelGeometry,
        task: TaskSpec,
        *,
        position_offset: bool = True,
        head_dropout: float = 0.1,
        head_pooling: str = "mean",
        freeze: bool = True,
    ) -> None:
        super().__init__()
        self.model, self.geo, self.task, self.position_offset = model, geo, task, position_offset
        self.head_pooling = head_pooling
        if head_pooling == "pooler" and not geo.is_decoder and getattr(model, "pooler", None) is None:
            raise ConfigError("method.head_pooling=pooler needs a BERT-style model with a pooler; use mean")
        for p in self.model.parameters():
            p.requires_grad_(not freeze)
        if geo.is_decoder:
            if not task.multiple_choice and not task.verbalizer_ids and not task.generation:
                raise ValueError("a decoder classification task needs verbalizer token ids")
            self.head = None
            if task.verbalizer_ids:
                self.register_buffer("verbalizer_ids", torch.tensor(task.verbalizer_ids), persistent=False)
        else:
            # Multiple choice scores each option with one shared linear map (a bias would cancel).
            out = 1 if task.multiple_choice else task.num_classes
            linear = nn.Linear(geo.hidden_size, out, bias=not task.multiple_choice)
            nn.init.normal_(linear.weight, std=0.02)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
            self.head = nn.Sequential(nn.Dropout(head_dropout), linear)
        # Annotator conditioning (prefalign.methods.conditioning) sets a module here that forward defers to.
        self.conditioning: nn.Module | None = None

    def backbone(self) -> nn.Module:
        """The transformer without its LM head (decoders) or the encoder itself."""
        return self.model.base_model if self.geo.is_decoder else self.model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prefix_kv: torch.Tensor | None,
        *,
        score_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        all_layers: bool = False,
        prompt_embeds: torch.Tensor | None = None,
        prefix_scale: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """Run the backbone once; ``prefix_kv`` is ``(N, L, 2, m, kv_dim)`` or None (no prefix).

        With ``prefix_scale`` ``(N, m)`` (inference only), ``prefix_kv`` is one static prefix ``(L, 2, m, kv_dim)``
        and example ``i``'s row ``j`` is ``prefix_kv * prefix_scale[i, j] + prefix_kv``, written straight into the
        attention cache (``build_row_scaled_prefix_cache``).

        ``prompt_embeds`` ``(N, p, d)`` are soft tokens placed before the input embeddings
        (prompt tuning, LPT); their outputs are dropped before pooling and scoring. With annotator
        conditioning attached, the conditioning module runs it (once per annotator slot for prefix
        offsets) and mixes the slots' distributions.
        For multiple choice, inputs hold ``B * C`` sequences, example-major.
        """
        options = dict(score_mask=score_mask, token_type_ids=token_type_ids, all_layers=all_layers)
        if prompt_embeds is not None:
            options["prompt_embeds"] = prompt_embeds
        if self.conditioning is not None:
            if prefix_scale is not None:
                raise ValueError("annotator conditioning edits each example's prefix: pass it materialised, not scaled")
            return self.conditioning.classify(self, input_ids, attention_mask, prefix_kv, **options)
        return self.run(input_ids, attention_mask, prefix_kv, prefix_scale=prefix_scale, **options)

    def _inputs(self, input_ids, attention_mask, prompt_embeds, prefix_kv) -> tuple[dict, torch.Tensor]:
        """The backbone's token inputs and the mask over them: ``input_ids``, or with soft tokens ``(N, p, d)``
        (prompt tuning, LPT) the embeddings with the soft tokens first and the mask lengthened by p."""
        if prompt_embeds is None:
            return {"input_ids": input_ids}, attention_mask
        if prefix_kv is not None:
            raise ValueError("prompt_embeds and prefix_kv cannot be combined")
        words = self.model.get_input_embeddings()(input_ids)
        embeds = torch.cat([prompt_embeds.to(words.dtype), words], dim=1)
        ones = attention_mask.new_ones(attention_mask.shape[0], prompt_embeds.shape[1])
        return {"inputs_embeds": embeds}, torch.cat([ones, attention_mask], dim=1)

    def run(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prefix_kv: torch.Tensor | None,
        *,
        score_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        all_layers: bool = False,
        prompt_embeds: torch.Tensor | None = None,
        prefix_scale: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """``forward`` without annotator conditioning."""
        kwargs, mask = self._inputs(input_ids, attention_mask, prompt_embeds, prefix_kv)
        n_soft = 0 if prompt_embeds is None else prompt_embeds.shape[1]
        if n_soft and token_type_ids is not None:
            token_type_ids = torch.cat([token_type_ids.new_zeros(token_type_ids.shape[0], n_soft), token_type_ids], 1)
        if prefix_kv is not None:
            dtype = next(self.model.parameters()).dtype  # bf16 backbones take bf16 prefixes
            if prefix_scale is not None:
                m = prefix_kv.shape[2]
                cache = build_row_scaled_prefix_cache(prefix_kv, prefix_scale, self.geo, self.model.config, dtype)
                kwargs["past_key_values"] = cache
            else:
                prefix_kv = prefix_kv.to(dtype)
                m = prefix_kv.shape[3]
                kwargs["past_key_values"] = build_prefix_cache(prefix_kv, self.geo, self.model.config)
            mask = extend_attention_mask(attention_mask, m)
            if not self.position_offset:
                pad = getattr(self.model.config, "pad_token_id", None)
                kwargs["position_ids"] = positions_from_zero(attention_mask, self.geo, pad)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.backbone()(attention_mask=mask, output_hidden_states=all_layers, use_cache=False, **kwargs)
        hidden = out.last_hidden_state[:, n_soft:]
        pooled = pool_layers(out.hidden_states, attention_mask, n_soft) if all_layers else None
        last_pooled = masked_mean(hidden, attention_mask)
        head_input = {"mean": last_pooled, "first": hidden[:, 0], "pooler": getattr(out, "pooler_output", None)}[
            self.head_pooling
        ]
        logits = self._scores(hidden, head_input, input_ids, attention_mask, score_mask)
        c = self.task.num_classes
        if self.task.multiple_choice:
            if pooled is not None:
                pooled = pooled.view(-1, c, *pooled.shape[1:]).mean(1)
            last_pooled = last_pooled.view(-1, c, last_pooled.shape[-1]).mean(1)
        return BackboneOutput(logits=logits, pooled=pooled, last_pooled=last_pooled, head_input=head_input)

    def _scores(self, hidden, head_input, input_ids, attention_mask, score_mask) -> torch.Tensor:
        c = self.task.num_classes
        if self.head is not None:
            # A bf16/fp16 backbone trained without autocast feeds an fp32 head: the head reads in its own dtype.
            scores = self.head(head_input.to(self.head[-1].weight.dtype))
            return scores.view(-1, c) if self.task.multiple_choice else scores
        lm_head = self.model.get_output_embeddings()
        if not self.task.multiple_choice:
            last = attention_mask.long().sum(-1) - 1  # right padding: index of the last real token
            h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
            logprobs = torch.log_softmax(lm_head(h).float(), dim=-1)
            return logprobs[:, self.verbalizer_ids]
        # Multiple choice: mean log-probability of each option's tokens (score_mask marks them).
        target_mask = score_mask[:, 1:].bool()
        rows, cols = target_mask.nonzero(as_tuple=True)
        logprobs = torch.log_softmax(lm_head(hidden[rows, cols]).float(), dim=-1)
        token_lp = logprobs.gather(-1, input_ids[rows, cols + 1].unsqueeze(-1)).squeeze(-1)
        sums = torch.zeros(hidden.shape[0], device=hidden.device).index_add(0, rows, token_lp)
        scores = sums / target_mask.sum(-1).clamp(min=1)
        return scores.view(-1, c)

    def lm_forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prefix_kv: torch.Tensor | None,
        labels: torch.Tensor,
        *,
        all_layers: bool = False,
        prompt_embeds: torch.Tensor | None = None,
    ) -> LMOutput:
        """Generation tasks (decoders): the LM loss of the answer tokens with the prefix cache in place.

        ``labels`` (B, T) follows the HF convention: the token id at answer positions, -100 on the
        prompt and padding; position t's hidden state predicts ``labels[:, t + 1]``. The LM head
        runs only on the positions that predict an answer token. Pooled states (for DCPC's
        similarity and alignment terms) cover the prompt tokens only, as generation sees them.
        ``prompt_embeds`` ``(B, p, d)``: soft tokens before the prompt (prompt tuning, LPT), as generation
        puts them; their outputs are dropped.
        """
        if not self.geo.is_decoder:
            raise ConfigError("generation tasks need a decoder (a model with an LM head)")
        kwargs, mask = self._inputs(input_ids, attention_mask, prompt_embeds, prefix_kv)
        n_soft = 0 if prompt_embeds is None else prompt_embeds.shape[1]
        if prefix_kv is not None:
            prefix_kv = prefix_kv.to(next(self.model.parameters()).dtype)
            kwargs["past_key_values"] = build_prefix_cache(prefix_kv, self.geo, self.model.config)
            mask = extend_attention_mask(attention_mask, prefix_kv.shape[3])
            if not self.position_offset:
                kwargs["position_ids"] = positions_from_zero(attention_mask, self.geo, None)
        out = self.backbone()(attention_mask=mask, output_hidden_states=all_layers, use_cache=False, **kwargs)
        hidden = out.last_hidden_state[:, n_soft:]
        targets = labels[:, 1:]
        rows, cols = (targets != -100).nonzero(as_tuple=True)
        logits = self.model.get_output_embeddings()(hidden[rows, cols]).float()  # (K, V)
        loss = torch.nn.functional.cross_entropy(logits, targets[rows, cols]) if len(rows) else logits.sum() * 0
        probs = torch.softmax(logits, dim=-1)
        counts = torch.zeros(hidden.shape[0], device=hidden.device).index_add(
            0, rows, torch.ones_like(rows, dtype=torch.float)
        )
        sums = torch.zeros(hidden.shape[0], probs.shape[-1], device=hidden.device).index_add(0, rows, probs)
        answer_probs = sums / counts.clamp(min=1).unsqueeze(-1)
        prompt_mask = attention_mask * (labels == -100).to(attention_mask.dtype)
        pooled = None
        if all_layers:
            pooled = pool_layers(out.hidden_states, prompt_mask, n_soft)
        return LMOutput(
            loss=loss, answer_probs=answer_probs, pooled=pooled, last_pooled=masked_mean(hidden, prompt_mask)
        )
