"""Late Prompt Tuning (Liu et al., 2022b, "Late Prompt Tuning: A Late Prompt Could Be Better Than
Many Prompts"): an instance-dependent soft prompt inserted at an intermediate layer.
PEFT has no LPT, so it is written here.

The prompt of length l (64, appendix A.1.2) enters at layer k (default L // 2). A prompt
generator reads the hidden states entering layer k (the output of layer k - 1) over the real
tokens, mean-pools them into l consecutive segments (adaptive average pooling, as LPT's pooling
prompt generator), normalises each (layer norm without parameters) and maps it through a
bottleneck MLP d -> 1024 -> d (tanh). Its size, 2 d b + b + d, is 8.4M for LLaMA-2 7B, the LPT
row of Tables 1-2.

The placeholder reading: the classifier cannot lengthen the sequence between two layers, so l
placeholder tokens (zero embeddings) are placed before the input from the start and a forward
pre-hook on layer k overwrites their hidden states with the generated prompt. Below layer k the
real tokens therefore attend to l placeholder positions LPT does not have (zeros in, so a fixed,
input-independent context), and with absolute positions (BERT, GPT-2) the real tokens sit l
positions later. The placeholders' outputs are dropped before pooling and scoring.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from .config import LatePromptTuningConfig
from .hooks import PREFIX, HookedBaseline, MaskReader, OwnedHook, find_layers, layer_hidden, with_layer_hidden


def segment_means(hidden: torch.Tensor, mask: torch.Tensor, segments: int) -> torch.Tensor:
    """Adaptive average pooling of each row's real tokens into ``segments`` means: (B, T, d) -> (B, l, d).

    Segment i of a row with n real tokens covers real tokens [floor(i n / l), ceil((i + 1) n / l)),
    as ``adaptive_avg_pool1d`` does; rows shorter than l repeat tokens.
    """
    mask = mask.to(hidden.device).long()
    rank = mask.cumsum(-1) - 1  # (B, T): index among the row's real tokens
    n = mask.sum(-1, keepdim=True)  # (B, 1)
    i = torch.arange(segments, device=hidden.device).unsqueeze(0)  # (1, l)
    start, end = (i * n) // segments, ((i + 1) * n + segments - 1) // segments  # (B, l)
    member = (
        mask.unsqueeze(1).bool() & (rank.unsqueeze(1) >= start.unsqueeze(-1)) & (rank.unsqueeze(1) < end.unsqueeze(-1))
    ).to(hidden.dtype)  # (B, l, T)
    weights = member / member.sum(-1, keepdim=True).clamp(min=1)
    return torch.einsum("blt,btd->bld", weights, hidden)


class LatePromptGenerator(MaskReader):
    """Pooled hidden states below layer k -> the l prompt vectors that enter layer k."""

    def __init__(self, d: int, bottleneck: int, length: int) -> None:
        super().__init__()
        self.length = length
        self.down, self.act, self.up = nn.Linear(d, bottleneck), nn.Tanh(), nn.Linear(bottleneck, d)

    def generate(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden`` (B, l + T, d), placeholders first -> the prompt (B, l, d) in the generator's dtype."""
        segments = segment_means(hidden[:, self.length :].to(self.down.weight.dtype), self.real_mask, self.length)
        segments = nn.functional.layer_norm(segments, segments.shape[-1:])
        return self.up(self.act(self.down(segments)))

    def insert(self, module, args, kwargs):
        """Forward pre-hook on layer k: the placeholders' hidden states become the generated prompt."""
        hidden = layer_hidden(args, kwargs)
        if self.real_mask is None or hidden.shape[1] != self.real_mask.shape[1] + self.length:
            return None  # not a call through the method's forward: leave the block alone
        prompt = self.generate(hidden).to(hidden.dtype)
        return with_layer_hidden(args, kwargs, torch.cat([prompt, hidden[:, self.length :]], dim=1))


class LatePromptTuning(HookedBaseline):
    """LPT: placeholders before the input; their states at layer k come from the prompt generator."""

    name = "lpt"
    config_class = LatePromptTuningConfig

    def install(self, model, initialise):
        cfg, geo = self.config, self.geo
        k = geo.num_layers // 2 if cfg.insert_layer is None else cfg.insert_layer
        if not 0 <= k < geo.num_layers:
            raise ConfigError(
                f"method.insert_layer = {k} is outside [0, {geo.num_layers - 1}] for this {geo.num_layers}-layer model"
            )
        self.insert_layer = k
        layer = find_layers(model, geo)[k]
        generator = LatePromptGenerator(geo.hidden_size, cfg.bottleneck, cfg.prompt_length)
        layer.add_module(PREFIX + "prompt_generator", generator.to(next(model.parameters()).device))
        layer.register_forward_pre_hook(OwnedHook(generator, "insert"), with_kwargs=True)

    def adapt(self, model, tokenizer, initialise):
        super().adapt(model, tokenizer, initialise)
        self.register_buffer("placeholders", self.placeholder_embeddings(model, tokenizer), persistent=False)

    def placeholder_embeddings(self, model, tokenizer) -> torch.Tensor:
        """(1, l, d): zeros, or placeholder_init_text's token embeddings repeated to l (fixed: not a parameter,
        rebuilt from the frozen embeddings whenever the method is built, so checkpoints do not hold it)."""
        cfg, d = self.config, self.geo.hidden_size
        words = model.get_input_embeddings()
        if cfg.placeholder_init == "zeros":
            return torch.zeros(1, cfg.prompt_length, d, device=words.weight.device)
        ids = tokenizer(cfg.placeholder_init_text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ConfigError("method.placeholder_init_text has no tokens; give a non-empty text")
        ids = (ids * (cfg.prompt_length // len(ids) + 1))[: cfg.prompt_length]
        with torch.no_grad():
            return words(torch.tensor(ids, device=words.weight.device)).float().unsqueeze(0)

    def soft_prompt(self, batch_size: int) -> torch.Tensor:
        return self.placeholders.expand(batch_size, -1, -1)

    @property
    def generator(self) -> LatePromptGenerator:
        return find_layers(self.classifier.model, self.geo)[self.insert_layer].prefalign_prompt_generator
