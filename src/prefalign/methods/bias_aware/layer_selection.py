"""Target layer selection by interchange ablation (bias-aware PEFT paper, appendix A, eq. 5-6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...data.collator import pad_ids
from ...errors import ConfigError
from ...models.introspect import ModelGeometry
from ...utils.atomic_files import save_figure_atomically, write_text_atomically
from ..baselines.hooks import find_layers


@dataclass
class LayerCurve:
    """Mean KL per layer after swapping the component's activation, and the layer it peaks at (eq. 6)."""

    kl: list[float]
    layer: int
    component: str
    pairs: int
    gold: list[int]
    biased: list[int]


def resolve_module(layer: nn.Module, name: str, geo: ModelGeometry) -> tuple[str, nn.Module]:
    """The submodule of one layer called ``name`` or ending in ``.name`` (exactly one), else a ConfigError."""
    modules = dict(layer.named_modules())
    hits = [n for n in modules if n and (n == name or n.endswith("." + name))]
    if len(hits) != 1:
        linear = sorted(n for n, m in modules.items() if isinstance(m, nn.Linear))
        what = "no" if not hits else f"{len(hits)} ({', '.join(hits)})"
        raise ConfigError(
            f"module '{name}' matches {what} submodules of a '{geo.model_type}' layer; name one of {', '.join(linear)}"
        )
    return hits[0], modules[hits[0]]


def _pad_right(seqs: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask on ``device``, as the collator pads a batch."""
    batch = pad_ids(seqs, pad_id, padding_side="right")
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def _last_logprobs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (N, V) of the next token after each sequence's last real token."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    last = mask.sum(-1) - 1
    return torch.log_softmax(logits[torch.arange(ids.shape[0]), last].float(), dim=-1)


@torch.no_grad()
def interchange_ablation(
    model: nn.Module,
    geo: ModelGeometry,
    prompts: Sequence[Sequence[int]],
    gold: Sequence[int],
    verbalizer_ids: Sequence[int],
    component: str = "o_proj",
    pad_id: int = 0,
) -> LayerCurve:
    """Appendix A on a causal LM: pairs (gold s_i, biased s^_i), the component swapped layer by layer.

    Eq. 5: the biased label is the argmax of the last layer's label scores after the prompt, the gold
    label excluded. s_i / s^_i are the prompt followed by the gold / biased label token. For each layer
    l the component's output on s_i is replaced by its output on s^_i (same length: both labels are one
    token) and the KL between the unpatched and patched next-token distributions after the label
    token, M(s_i) || M_{h^_l}(s_i), is averaged over the pairs (eq. 6); the argmax layer is returned.
    """
    if len(prompts) != len(gold) or not prompts:
        raise ConfigError("interchange ablation needs at least one (prompt, gold label) pair")
    if len(verbalizer_ids) < 2:
        raise ConfigError("interchange ablation needs at least two labels")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    blocks = find_layers(model, geo)
    parts = [resolve_module(block, component, geo)[1] for block in blocks]
    vids = torch.tensor(list(verbalizer_ids), device=device)
    # Eq. 5: the most likely wrong label at the end of each prompt.
    ids, mask = _pad_right([list(p) for p in prompts], pad_id, device)
    scores = _last_logprobs(model, ids, mask)[:, vids]
    gold_t = torch.tensor(list(gold), device=device)
    scores[torch.arange(len(gold)), gold_t] = float("-inf")
    biased = scores.argmax(-1).tolist()
    gold_ids, mask = _pad_right([list(p) + [verbalizer_ids[y]] for p, y in zip(prompts, gold)], pad_id, device)
    biased_ids, _ = _pad_right([list(p) + [verbalizer_ids[y]] for p, y in zip(prompts, biased)], pad_id, device)
    # h^_l: the component's output on every biased sample, all layers in one pass.
    saved: dict[int, torch.Tensor] = {}
    handles = [
        part.register_forward_hook(lambda m, a, out, l=l: saved.__setitem__(l, out.detach()))
        for l, part in enumerate(parts)
    ]
    try:
        model(input_ids=biased_ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    clean = _last_logprobs(model, gold_ids, mask)
    kl = []
    for l, part in enumerate(parts):
        handle = part.register_forward_hook(lambda m, a, out, l=l: saved[l])
        try:
            patched = _last_logprobs(model, gold_ids, mask)
        finally:
            handle.remove()
        kl.append(float((clean.exp() * (clean - patched)).sum(-1).mean()))  # eq. 6, averaged over pairs
    model.train(was_training)
    layer = max(range(len(kl)), key=lambda i: kl[i])
    return LayerCurve(kl=kl, layer=layer, component=component, pairs=len(gold), gold=list(gold), biased=biased)


def write_curve(curve: LayerCurve, directory: str | Path, title: str = "") -> dict[str, Path]:
    """layer_kl.csv and layer_kl.png (the per-layer curve, the chosen layer marked), each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "layer_kl.csv", out / "layer_kl.png"
    rows = ["layer,mean_kl,chosen"] + [f"{i},{v:.6g},{int(i == curve.layer)}" for i, v in enumerate(curve.kl)]
    write_text_atomically(csv_path, "\n".join(rows) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(len(curve.kl)), curve.kl, marker="o", ms=3)
    ax.axvline(curve.layer, color="C3", ls="--", label=f"chosen layer {curve.layer}")
    ax.set_xlabel("layer (0-based)")
    ax.set_ylabel(f"mean KL, {curve.component} swapped")
    ax.set_title(title or f"interchange ablation over {curve.pairs} pairs", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomically(fig, png_path)
    return {"csv": csv_path, "png": png_path}
