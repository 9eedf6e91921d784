"""Read every layer of a base model or a trained checkpoint: pooled states, label scores, top-k tokens.

A *subject* is what a probe looks at: a bare backbone, or a checkpoint of any prefalign method
with its trained parts in place (the prefixes of P-Tuning v2 / DCPC go into the key/value cache
exactly as in training and evaluation, because the probe runs the method's own forward pass and
records the backbone's hidden states on the way).

Per layer ``l`` (0 = the embeddings, ``l`` = the output of transformer block ``l``):

* ``pooled[l]``: the mean of the real (non-padding) tokens' hidden states, as DCPC pools them.
* decoders, the *logit lens*: the last real token's hidden state goes through the model's final
  norm and its LM head (the last layer's state is already normed by the model, so it goes
  through the head alone). ``class_scores[l]`` are the log-probabilities (softmax over the
  whole vocabulary) of the label words' first tokens, which at the last layer are exactly the
  class scores the classifier computes; ``label_logits[l]`` are the raw LM-head logits of
  those tokens; ``topk[l]`` the ids of the k highest-scoring tokens, best first.
* encoders have no LM head: ``class_scores[l]`` is the checkpoint's trained head applied to the
  layer's pooled state (the same pooling the head was trained on); there are no top-k tokens,
  and a bare encoder (no trained head) has no label read-out at all.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.collator import Collator, PromptFormat, build_task_spec
from ..data.examples import Example, TaskDataset
from ..errors import CheckpointError, ConfigError, ModelLoadError
from ..inference import load_for_inference
from ..models.classifier import PrefixClassifier, TaskSpec, masked_mean
from ..models.loading import LoadedModel

FINAL_NORM_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "norm_f")


@dataclass
class Subject:
    """A model to probe: its classifier (backbone + read-out), the method around it (or None for a
    bare backbone), the collator that writes its inputs, and its class names."""

    name: str
    classifier: PrefixClassifier
    collator: Collator
    label_names: list[str]
    method: nn.Module | None = None
    has_readout: bool = True  # False for a bare encoder: its head would be untrained
    description: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def is_decoder(self) -> bool:
        return self.classifier.geo.is_decoder

    @property
    def num_layers(self) -> int:
        return self.classifier.geo.num_layers

    @property
    def tokenizer(self):
        return self.collator.tokenizer

    def verbalizer_tokens(self) -> list[str]:
        ids = self.classifier.task.verbalizer_ids or ()
        return [self.tokenizer.convert_ids_to_tokens(int(i)) for i in ids]


@dataclass
class LayerReadout:
    """Per-layer read-outs of N examples; the leading axis is the layer, 0 = embeddings."""

    pooled: torch.Tensor  # (L+1, N, d) float32
    class_scores: torch.Tensor | None  # (L+1, N, C): log-probs of the label words (decoders) or head logits
    label_logits: torch.Tensor | None  # (L+1, N, C): raw LM-head logits of the label words (decoders)
    topk: torch.Tensor | None  # (L+1, N, k) token ids, best first (decoders)
    final_logits: torch.Tensor | None  # (N, C): the class scores the method itself returns

    @property
    def num_layers(self) -> int:
        return self.pooled.shape[0] - 1


def base_subject(
    backbone: LoadedModel,
    label_names: Sequence[str],
    prompt: PromptFormat,
    *,
    max_length: int = 128,
    name: str | None = None,
) -> Subject:
    """The bare backbone as a subject; decoders read classes through their LM head with ``prompt``."""
    geo = backbone.geometry
    names = [str(n) for n in label_names]
    if len(names) < 2:
        raise ConfigError(f"a probe needs at least two classes, got {names}")
    dummy = TaskDataset([Example(text="x", label=0)], names, name="labels")
    if geo.is_decoder:
        spec = build_task_spec(dummy, geo, backbone.tokenizer, prompt)
    else:
        spec = TaskSpec(num_classes=len(names))
    classifier = PrefixClassifier(backbone.model, geo, spec)
    classifier.eval()
    collator = Collator(backbone.tokenizer, geo, len(names), prompt, max_length)
    return Subject(
        name=name or _short(backbone.name),
        classifier=classifier,
        collator=collator,
        label_names=names,
        has_readout=geo.is_decoder,
        description=f"base model {backbone.name}" + (f", prompt {prompt.template!r}" if geo.is_decoder else ""),
        meta={"base_model": backbone.name, "prompt": {"template": prompt.template, "verbalizers": prompt.verbalizers}},
    )


def checkpoint_subject(adapter_dir: str, backbone: LoadedModel | None = None, name: str | None = None) -> Subject:
    """A saved adapter (any prefalign method) on its base model, ready to probe."""
    model, backbone, collator, meta = load_for_inference(adapter_dir, backbone)
    if getattr(model.task, "generation", False):
        raise CheckpointError(
            f"{adapter_dir} answers a generation task; the probes read class labels, so they need "
            "a classification checkpoint"
        )
    if getattr(model.task, "multiple_choice", False):
        raise CheckpointError(
            f"{adapter_dir} is a multiple-choice checkpoint; the probes read one label distribution "
            "per input, so they need a classification checkpoint"
        )
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, PrefixClassifier):
        raise CheckpointError(f"{adapter_dir}: method '{meta.get('method')}' has no PrefixClassifier to probe")
    return Subject(
        name=name or meta.get("method", "checkpoint"),
        classifier=classifier,
        collator=collator,
        label_names=list(meta["label_names"]),
        method=model,
        description=f"{meta.get('method')} checkpoint {adapter_dir} on {meta.get('base_model')}",
        meta=meta,
    )


def _short(name: str) -> str:
    return str(name).rstrip("/").split("/")[-1] or str(name)


def final_norm(model: nn.Module) -> nn.Module | None:
    """The norm a decoder applies before its LM head (LLaMA ``norm``, GPT-2 ``ln_f`` ...), or None."""
    base = getattr(model, "base_model", model)
    for name in FINAL_NORM_NAMES:
        module = getattr(base, name, None)
        if isinstance(module, nn.Module):
            return module
    return None


def _hidden_states_of(subject: Subject, batch: dict[str, torch.Tensor]):
    """(hidden states per layer (each (B, T, d), real input positions only), the method's class scores,
    the backbone's last_hidden_state) for one batch, from one forward pass of the subject."""
    captured: dict = {}
    backbone = subject.classifier.backbone()

    def hook(module, args, output):
        captured["out"] = output

    def ask_for_hidden_states(module, args, kwargs):
        # Methods request every layer's states only when their loss needs them; the probe always does.
        return args, {**kwargs, "output_hidden_states": True}

    handle = backbone.register_forward_hook(hook)
    ask = backbone.register_forward_pre_hook(ask_for_hidden_states, with_kwargs=True)
    try:
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "target_dist", "score_mask")}
        if subject.method is not None:
            logits = subject.method(**inputs).logits
        else:
            logits = subject.classifier(
                inputs["input_ids"], inputs["attention_mask"], None, token_type_ids=inputs.get("token_type_ids")
            ).logits
    finally:
        handle.remove()
        ask.remove()
    out = captured.get("out")
    if out is None or getattr(out, "hidden_states", None) is None:
        raise ModelLoadError(f"{subject.name}: the backbone returned no hidden states; its layers cannot be probed")
    width = batch["input_ids"].shape[1]
    # Soft tokens (prompt tuning, LPT) come before the input: keep the last `width` positions.
    hidden = [h[:, h.shape[1] - width :] for h in out.hidden_states]
    last = out.last_hidden_state[:, out.last_hidden_state.shape[1] - width :]
    return hidden, logits, last


@torch.no_grad()
def read_layers(
    subject: Subject,
    examples: Sequence[Example],
    *,
    top_k: int = 10,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> LayerReadout:
    """Run ``examples`` through ``subject`` once and read every layer (see the module docstring)."""
    if not examples:
        raise ConfigError("nothing to probe: no examples")
    clf = subject.classifier
    clf.eval()
    if subject.method is not None:
        subject.method.eval()
    device = next(clf.model.parameters()).device
    decoder = subject.is_decoder
    lm_head = clf.model.get_output_embeddings() if decoder else None
    norm = final_norm(clf.model) if decoder else None
    if decoder and (lm_head is None or norm is None):
        raise ModelLoadError(
            f"{subject.name}: cannot find the decoder's final norm and LM head for the logit lens "
            f"(looked for {', '.join(FINAL_NORM_NAMES)})"
        )
    vids = clf.verbalizer_ids if decoder and subject.has_readout else None
    pooled, scores, raw, tops, finals = [], [], [], [], []
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start : start + batch_size])
        batch = {k: v.to(device) for k, v in subject.collator(chunk).items()}
        hidden, logits, last_hidden = _hidden_states_of(subject, batch)
        mask = batch["attention_mask"]
        pooled.append(torch.stack([masked_mean(h.float(), mask) for h in hidden]))
        finals.append(logits.float().cpu())
        if decoder:
            rows = torch.arange(mask.shape[0], device=device)
            last = mask.long().sum(-1) - 1  # right padding: the last real token
            layer_scores, layer_raw, layer_top = [], [], []
            for i, h in enumerate(hidden):
                h_last = h[rows, last]
                already_normed = i == len(hidden) - 1 and torch.equal(h, last_hidden)
                lens = lm_head(h_last if already_normed else norm(h_last)).float()  # (B, V)
                if top_k:
                    layer_top.append(lens.topk(min(top_k, lens.shape[-1]), dim=-1).indices.cpu())
                if vids is not None:
                    layer_scores.append(torch.log_softmax(lens, dim=-1)[:, vids].cpu())
                    layer_raw.append(lens[:, vids].cpu())
            if top_k:
                tops.append(torch.stack(layer_top))
            if vids is not None:
                scores.append(torch.stack(layer_scores))
                raw.append(torch.stack(layer_raw))
        elif subject.has_readout:
            heads = [clf.head(_head_input(clf, h, mask)).float().cpu() for h in hidden]
            scores.append(torch.stack(heads))
        if progress is not None:
            progress(min(start + batch_size, len(examples)), len(examples))

    def cat(parts):
        return torch.cat(parts, dim=1) if parts else None

    return LayerReadout(
        pooled=torch.cat(pooled, dim=1).cpu(),
        class_scores=cat(scores),
        label_logits=cat(raw) if decoder else cat(scores),
        topk=cat(tops),
        final_logits=torch.cat(finals) if subject.has_readout else None,
    )


def _head_input(clf: PrefixClassifier, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What an encoder's head reads from one layer's states, pooled as the head was trained."""
    if clf.head_pooling == "first":
        return hidden[:, 0]
    if clf.head_pooling == "pooler":
        return clf.model.pooler(hidden)
    return masked_mean(hidden, mask)


@torch.no_grad()
def embed_texts(
    backbone: LoadedModel,
    texts: Sequence[str],
    pairs: Sequence[str | None] | None = None,
    *,
    batch_size: int = 32,
    max_length: int = 128,
) -> torch.Tensor:
    """Mean-pooled last-layer states (N, d) of the bare backbone on the raw texts (no prompt), for mining."""
    tok = backbone.tokenizer
    base = backbone.model.base_model if backbone.geometry.is_decoder else backbone.model
    device = next(backbone.model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        pair = None
        if pairs is not None and any(p is not None for p in pairs[start : start + batch_size]):
            pair = [p or "" for p in pairs[start : start + batch_size]]
        enc = tok(chunk, pair, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = base(**enc).last_hidden_state
        out.append(masked_mean(hidden.float(), enc["attention_mask"]).cpu())
    return torch.cat(out)


def format_number(value) -> str:
    """A CSV/summary cell: floats to 6 significant digits, NaN as empty."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def csv_text(rows, columns) -> str:
    """CSV text of dict rows with ``columns``, numbers through ``format_number``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: format_number(v) for k, v in row.items()})
    return buf.getvalue()
