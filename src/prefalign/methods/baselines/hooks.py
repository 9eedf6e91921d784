"""What the hand-written baselines (BitFit, Houlsby adapters, LPT, PEDRO) share: finding a
Transformer's layers and projections by name, and forward hooks that survive ``copy.deepcopy``
and are never installed twice.

PEFT has none of these four methods, so they change the frozen backbone through PyTorch forward
hooks. Their trainable parts live on the module they act on (``<module>.prefalign_*``), so a
checkpoint names them by where they act and a deep copy of the backbone copies them with it.
A hook is either a plain function of this module or a :class:`OwnedHook` whose owner travels
with a deep copy (``copy.deepcopy`` maps it through its memo), so copies never share state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch
from torch import nn

from ...errors import ConfigError
from ...models.classifier import masked_mean
from ...models.introspect import ModelGeometry
from .model import BaselineModel

PREFIX = "prefalign_"  # attributes (parameters, submodules) the hand-written baselines attach

# The list of Transformer blocks: BERT/RoBERTa 'encoder.layer', LLaMA/Mistral/Qwen2 'model.layers',
# GPT-2 'transformer.h'.
LAYER_LIST_NAMES = ("layer", "layers", "h", "blocks", "block")

# Projections inside one block, by name relative to the block (exact match, first found wins).
ATTENTION_OUTPUT = (
    "attention.output.dense",
    "self_attn.o_proj",
    "attn.c_proj",
    "self_attn.dense",
    "attn.out_proj",
    "self_attn.out_proj",
    "attention.dense",
)
FFN_OUTPUT = ("output.dense", "mlp.down_proj", "mlp.c_proj", "mlp.fc2", "mlp.dense_4h_to_h", "feed_forward.w2")
KEY = ("attention.self.key", "self_attn.k_proj", "attn.k_proj", "attention.k_proj")
VALUE = ("attention.self.value", "self_attn.v_proj", "attn.v_proj", "attention.v_proj")
FUSED_QKV = ("attn.c_attn", "self_attn.qkv_proj", "attention.query_key_value", "self_attention.query_key_value")


def is_linear(module: nn.Module) -> bool:
    """nn.Linear or GPT-2's Conv1D (a linear layer with a transposed weight)."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def out_features(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else int(module.nf)


def in_features(module: nn.Module) -> int:
    return module.in_features if isinstance(module, nn.Linear) else int(module.weight.shape[0])


def find_layers(model: nn.Module, geo: ModelGeometry) -> list[nn.Module]:
    """The Transformer blocks of ``model``, in order (a ConfigError if no block list is found)."""
    found = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList) and len(mod) == geo.num_layers and name.rsplit(".", 1)[-1] in LAYER_LIST_NAMES
    ]
    if not found:
        raise ConfigError(
            f"cannot find the {geo.num_layers} Transformer layers of this '{geo.model_type}' model "
            f"(looked for a module list named one of {', '.join(LAYER_LIST_NAMES)}); the hand-written "
            "baselines support BERT/RoBERTa-, LLaMA/Mistral/Qwen2- and GPT-2-style models"
        )
    return list(found[0][1])


def find_in_layer(
    layer: nn.Module, candidates: Iterable[str], override: str | None = None
) -> tuple[str, nn.Module] | None:
    """The submodule of ``layer`` named ``override``, or the first of ``candidates`` it has."""
    modules = dict(layer.named_modules())
    for name in [override] if override else candidates:
        if name in modules:
            return name, modules[name]
    return None


def require_in_layer(
    layer: nn.Module, candidates: Iterable[str], override: str | None, what: str, option: str | None, geo: ModelGeometry
) -> nn.Module:
    """Like :func:`find_in_layer`, with a ConfigError naming what was looked for and the option to set."""
    hit = find_in_layer(layer, candidates, override)
    if hit is None:
        looked = f"'{override}'" if override else ", ".join(candidates)
        hint = f"; set method.{option} to its name relative to one layer" if option else ""
        raise ConfigError(
            f"no {what} found in the layers of this '{geo.model_type}' model (looked for {looked})" + hint
        )
    return hit[1]


# -- hooks ------------------------------------------------------------------------------------------------------
_OUR_FUNCTIONS: set[Callable] = set()


def ours(fn: Callable) -> Callable:
    """Mark a module-level hook function as installed by prefalign (so strip_hooks finds it)."""
    _OUR_FUNCTIONS.add(fn)
    return fn


class OwnedHook:
    """A hook that calls ``owner.<method>(module, *args)``; deep-copies along with its owner."""

    def __init__(self, owner: nn.Module, method: str) -> None:
        self.owner, self.method = owner, method

    def __call__(self, *args):
        return getattr(self.owner, self.method)(*args)


def _is_ours(fn) -> bool:
    if isinstance(fn, OwnedHook):
        return True
    try:
        return fn in _OUR_FUNCTIONS
    except TypeError:  # an unhashable hook someone else installed
        return False


def strip_hooks(model: nn.Module) -> int:
    """Remove every hook and ``prefalign_*`` attachment a hand-written baseline put on ``model``.

    Returns how many hooks were removed. Building a method on an already adapted backbone (with
    ``copy_backbone=False``) calls this first, so hooks are replaced, never stacked.
    """
    removed = 0
    for module in model.modules():
        for hooks, extra in (
            (module._forward_hooks, (module._forward_hooks_with_kwargs, module._forward_hooks_always_called)),
            (module._forward_pre_hooks, (module._forward_pre_hooks_with_kwargs,)),
        ):
            for key, fn in list(hooks.items()):
                if _is_ours(fn):
                    del hooks[key]
                    for table in extra:
                        table.pop(key, None)
                    removed += 1
        for name in [n for n in module._parameters if n.startswith(PREFIX)]:
            del module._parameters[name]
        for name in [n for n in module._modules if n.startswith(PREFIX)]:
            del module._modules[name]
    return removed


def count_hooks(model: nn.Module) -> int:
    """How many prefalign hooks ``model`` carries (tests use it)."""
    return sum(
        _is_ours(fn) for m in model.modules() for d in (m._forward_hooks, m._forward_pre_hooks) for fn in d.values()
    )


def add_output(module: nn.Module, output: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``output + delta`` in the output's dtype (adapters stay float32 on a bf16 backbone)."""
    return output + delta.to(output.dtype)


def layer_hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    """A block's input hidden states, whether passed positionally or as ``hidden_states=``."""
    return args[0] if args else kwargs["hidden_states"]


def with_layer_hidden(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


class MaskReader(nn.Module):
    """A generator that pools the input tokens: the method's forward tells it which are real. ``hold``: while
    generating, what it made from the prompt (the first call) stays for every new token."""

    def __init__(self) -> None:
        super().__init__()
        self.real_mask: torch.Tensor | None = None  # (B, T) over the sequence the blocks see
        self.hold = False

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """Mean over the real tokens, ``(B, T, d) -> (B, d)`` (every position if the mask is unknown)."""
        mask = self.real_mask
        if mask is None or mask.shape != hidden.shape[:2]:
            mask = hidden.new_ones(hidden.shape[:2])
        return masked_mean(hidden, mask.to(hidden.device))


class HookedBaseline(BaselineModel):
    """A baseline that installs prefalign hooks: strips stale ones first, tells generators the mask."""

    def adapt(self, model, tokenizer, initialise):
        strip_hooks(model)
        self.install(model, initialise)

    def install(self, model: nn.Module, initialise: bool) -> None:
        raise NotImplementedError

    def remove_hooks(self) -> int:
        """Detach this method from its backbone: the frozen model again (tests compare against it)."""
        return strip_hooks(self.classifier.model)

    def real_token_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The mask over the sequence the blocks see (LPT prepends its placeholders)."""
        return attention_mask

    def forward(self, input_ids, attention_mask, labels=None, *args, **kwargs):
        # A generation batch's answer tokens are what the model must predict: the generators read the prompt only,
        # as they do while generating (``generating``).
        seen = attention_mask
        if labels is not None and labels.dim() == 2:
            seen = attention_mask * (labels == -100).to(attention_mask.dtype)
        with self._reading(self.real_token_mask(seen)):
            return super().forward(input_ids, attention_mask, labels, *args, **kwargs)

    def generating(self, attention_mask: torch.Tensor, num_beams: int = 1):
        """The generators read the left-padded prompt's mask (one row per beam, as generate() expands the batch)
        on the first call and keep what they made for every new token."""
        return self._reading(self.real_token_mask(attention_mask).repeat_interleave(num_beams, dim=0), hold=True)

    @contextmanager
    def _reading(self, mask: torch.Tensor, hold: bool = False):
        readers = [m for m in self.modules() if isinstance(m, MaskReader)]
        for reader in readers:
            reader.real_mask, reader.hold = mask, hold
        try:
            yield
        finally:
            for reader in readers:
                reader.real_mask, reader.hold = None, False
                if hasattr(reader, "clear"):
                    reader.clear()
