"""Annotator conditioning for any trainable method: per-annotator heads, annotator embeddings, prefix offsets.

``method.annotator_conditioning`` (with ``data.target: annotators``) makes a method predict what one
annotator would answer. Three kinds, each attached to the method's ``PrefixClassifier``:

* ``heads`` (Davani, Diaz & Prabhakaran, TACL 2022, multi-task): annotator a's head is the shared head
  plus a per-annotator linear offset ``(W_a, b_a)``, zero at the start; that is Davani's one head per
  annotator, written so that an annotator with few rows stays near the shared head.
* ``embedding`` (Deng et al., EMNLP 2023): a learned vector ``e_a`` (plus one per attribute value, POPQUORN's
  gender=..., race=...) added to the pooled state the head reads; zero at the start.
* ``prefix`` (prefix methods: P-Tuning v2, DCPC): a low-rank offset ``u_a V`` (``u_a`` in R^r, ``V`` r x the
  prefix's size) added to every layer's prefix keys and values, PCM style: the correction depends on who
  labels, and the rank keeps it small at MD-Agreement's 670 annotators.

A batch carries ``annotators`` (B, K): indices into the training vocabulary, ``UNSEEN`` for an annotator
the model never saw, ``PAD`` for an empty slot, and optionally ``annotator_attributes`` (B, K, A) of
attribute-value indices (-1 none). One slot (training rows) gives that annotator's logits; several slots
(an item's annotators, a panel) give the log of the mean of their class distributions. An unseen
annotator with attributes is their attributes' embedding/offset; without, the population: the mean
distribution over every training annotator (heads, embedding) or the mean offset (prefix). A batch
without ``annotators`` is predicted for the population.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.examples import Example
from ..errors import ConfigError
from ..models.classifier import BackboneOutput, PrefixClassifier

KINDS = ("heads", "embedding", "prefix")
PAD, UNSEEN = -1, -2


@dataclass
class AnnotatorVocab:
    """The annotators a model was trained on, in index order, with their attributes ('col=value' strings)."""

    ids: list[str]
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    attribute_values: list[str] = field(default_factory=list)

    @classmethod
    def from_examples(cls, examples: Sequence[Example]) -> AnnotatorVocab:
        """Every annotator (and attribute value) of ``examples``' meta, sorted for a stable order."""
        ids: set[str] = set()
        attrs: dict[str, dict[str, str]] = {}
        for ex in examples:
            for j, worker in enumerate(ex.meta.get("annotators") or ()):
                ids.add(str(worker))
                given = (ex.meta.get("annotator_attributes") or [{}] * (j + 1))[j]
                if given:
                    attrs[str(worker)] = {str(k): str(v) for k, v in given.items()}
        if not ids:
            raise ConfigError(
                "method.annotator_conditioning needs training rows with annotator ids: set data.target: annotators "
                "on a multi-annotator task whose data names its annotators"
            )
        values = sorted({f"{k}={v}" for a in attrs.values() for k, v in a.items()})
        return cls(sorted(ids), attrs, values)

    def to_dict(self) -> dict:
        return {"ids": list(self.ids), "attributes": dict(self.attributes), "attribute_values": self.attribute_values}

    @classmethod
    def from_dict(cls, data: dict) -> AnnotatorVocab:
        return cls(list(data["ids"]), dict(data.get("attributes") or {}), list(data.get("attribute_values") or []))

    @property
    def index(self) -> dict[str, int]:
        return {a: i for i, a in enumerate(self.ids)}

    @property
    def attribute_index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.attribute_values)}

    def pool_attributes(self) -> torch.Tensor:
        """(V, A) attribute-value indices of every known annotator, -1 where none."""
        index = self.attribute_index
        width = max([len(a) for a in self.attributes.values()] or [0])
        out = torch.full((len(self.ids), max(width, 1)), -1, dtype=torch.long)
        for i, worker in enumerate(self.ids):
            for j, (k, v) in enumerate(sorted(self.attributes.get(worker, {}).items())):
                out[i, j] = index.get(f"{k}={v}", -1)
        return out


class AnnotatorConditioning(nn.Module):
    """The trainable annotator parameters of one kind, and the forward that reads ``annotators``."""

    def __init__(self, kind: str, vocab: AnnotatorVocab, classifier: PrefixClassifier, rank: int, prefix_shape):
        super().__init__()
        self.kind, self.vocab = kind, vocab
        self.annotators: torch.Tensor | None = None  # set per forward by the method's pre-hook
        self.attributes: torch.Tensor | None = None
        n, n_attr = len(vocab.ids), len(vocab.attribute_values)
        self.register_buffer("pool_attrs", vocab.pool_attributes(), persistent=False)
        if kind == "heads":
            linear = classifier.head[-1]
            self.head_weight = nn.Parameter(torch.zeros(n, *linear.weight.shape))
            self.head_bias = nn.Parameter(torch.zeros(n, linear.weight.shape[0]))
            return
        width = classifier.geo.hidden_size if kind == "embedding" else rank
        self.embed = nn.Parameter(torch.zeros(n, width))
        self.attr_embed = nn.Parameter(torch.zeros(n_attr, width)) if n_attr else None
        if kind == "prefix":
            nn.init.normal_(self.embed, std=0.02)  # V starts at zero: the offset does, too
            if self.attr_embed is not None:
                nn.init.normal_(self.attr_embed, std=0.02)
            self.prefix_shape = tuple(prefix_shape)
            size = 1
            for s in self.prefix_shape:
                size *= s
            self.up = nn.Parameter(torch.zeros(rank, size))

    # -- which annotators -------------------------------------------------------------------------------
    def _slots(self, batch: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids = self.annotators
        if ids is None:
            ids = torch.full((batch, 1), UNSEEN, dtype=torch.long, device=device)
            return ids, None
        ids = ids.to(device).long()
        if ids.dim() == 1:
            ids = ids.unsqueeze(1)
        attrs = self.attributes.to(device).long() if self.attributes is not None else None
        if attrs is not None and attrs.dim() == 2:
            attrs = attrs.unsqueeze(1)
        return ids, attrs

    def _representation(self, ids: torch.Tensor, attrs: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., width) vectors for known annotators and unseen ones with attributes, and a mask of the
        slots that fall back to the population (unseen without attributes)."""
        known = ids >= 0
        rep = self.embed[ids.clamp(min=0)] * known.unsqueeze(-1)
        has_attr = torch.zeros_like(known)
        if attrs is not None and self.attr_embed is not None:
            valid = attrs >= 0
            has_attr = valid.any(-1)
            rep = rep + (self.attr_embed[attrs.clamp(min=0)] * valid.unsqueeze(-1)).sum(-2)
        population = (ids == UNSEEN) & ~has_attr
        return rep, population

    def _pool_representation(self) -> torch.Tensor:
        """(V, width): every training annotator's vector, attributes included."""
        ids = torch.arange(len(self.vocab.ids), device=self.embed.device)
        rep, _ = self._representation(ids, self.pool_attrs.to(self.embed.device))
        return rep

    # -- the classifier's forward -------------------------------------------------------------------------
    def classify(self, classifier: PrefixClassifier, input_ids, attention_mask, prefix_kv, **kwargs) -> BackboneOutput:
        """The classifier's output for each example's annotator slots, their distributions averaged."""
        ids, attrs = self._slots(input_ids.shape[0], input_ids.device)
        weights = (ids != PAD).float()
        if (weights.sum(1) == 0).any():
            raise ValueError("an example has no annotator slot; give it one (UNSEEN for the population)")
        weights = weights / weights.sum(1, keepdim=True)
        if self.kind == "prefix":
            return self._prefix_classify(classifier, input_ids, attention_mask, prefix_kv, ids, attrs, weights, kwargs)
        out = classifier.run(input_ids, attention_mask, prefix_kv, **kwargs)
        h = classifier.head[0](out.head_input)  # the head's dropout, once per example
        log_probs = self._head_log_probs(classifier, h, ids, attrs)  # (B, K, C)
        out.logits = _mix(log_probs, weights)
        return out

    def _head_log_probs(self, classifier, h, ids, attrs) -> torch.Tensor:
        linear = classifier.head[-1]
        if self.kind == "heads":
            pool = self._all_heads(linear, h)  # (B, V, C)
            known = ids.clamp(min=0)
            per = pool.gather(1, known.unsqueeze(-1).expand(-1, -1, pool.shape[-1]))
            lp = torch.log_softmax(per.float(), -1)
            population = ids == UNSEEN
        else:
            rep, population = self._representation(ids, attrs)  # (B, K, d)
            lp = torch.log_softmax(linear(h.unsqueeze(1) + rep).float(), -1)
            if population.any():
                pool = linear(h.unsqueeze(1) + self._pool_representation().unsqueeze(0))  # (B, V, C)
        if population.any():
            pop = torch.logsumexp(torch.log_softmax(pool.float(), -1), 1) - torch.log(
                torch.tensor(float(pool.shape[1]), device=h.device)
            )
            lp = torch.where(population.unsqueeze(-1), pop.unsqueeze(1), lp)
        return lp

    def _all_heads(self, linear: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        """(B, V, C): every annotator's head on ``h`` (B, d)."""
        shared = linear(h).unsqueeze(1)
        return shared + torch.einsum("bd,vcd->bvc", h, self.head_weight) + self.head_bias.unsqueeze(0)

    def _prefix_classify(self, classifier, input_ids, attention_mask, prefix_kv, ids, attrs, weights, kwargs):
        if prefix_kv is None:
            raise ConfigError("method.annotator_conditioning=prefix needs a prefix method (ptuning-v2, dcpc)")
        b, k = ids.shape
        rep, population = self._representation(ids, attrs)  # (B, K, r)
        if population.any():
            rep = torch.where(population.unsqueeze(-1), self._pool_representation().mean(0), rep)
        offset = (rep.reshape(b * k, -1) @ self.up).view(b * k, *self.prefix_shape)
        if prefix_kv.dim() == len(self.prefix_shape):  # one prefix shared by the batch
            prefix_kv = prefix_kv.unsqueeze(0).expand(b, *prefix_kv.shape)
        expanded = prefix_kv.repeat_interleave(k, 0) + offset.to(prefix_kv.dtype)
        rep_k = lambda t: None if t is None else t.repeat_interleave(k, 0)  # noqa: E731
        kwargs = {key: rep_k(v) if torch.is_tensor(v) else v for key, v in kwargs.items()}
        out = classifier.run(rep_k(input_ids), rep_k(attention_mask), expanded, **kwargs)
        c = out.logits.shape[-1]
        log_probs = torch.log_softmax(out.logits.float(), -1).view(b, k, c)
        mean = lambda t: None if t is None else (t.view(b, k, *t.shape[1:]) * _expand(weights, t.dim() + 1)).sum(1)  # noqa: E731
        return BackboneOutput(
            logits=_mix(log_probs, weights),
            pooled=mean(out.pooled),
            last_pooled=mean(out.last_pooled),
            head_input=None,
        )


def _expand(weights: torch.Tensor, dims: int) -> torch.Tensor:
    return weights.view(*weights.shape, *([1] * (dims - weights.dim())))


def _mix(log_probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """log sum_k w_k p_k over slots: (B, K, C), (B, K) -> (B, C) log-probabilities."""
    logw = torch.where(weights > 0, torch.log(weights.clamp(min=1e-30)), float("-inf")).unsqueeze(-1)
    return torch.logsumexp(log_probs + logw, dim=1)


# -- attaching ------------------------------------------------------------------------------------------
def attach_conditioning(method: nn.Module, vocab: AnnotatorVocab) -> AnnotatorConditioning:
    """Give ``method`` (built, not yet trained or loaded) the conditioning its config names."""
    cfg = method.config
    kind = cfg.annotator_conditioning
    if kind not in KINDS:
        raise ConfigError(f"method.annotator_conditioning must be one of {', '.join(KINDS)}, not {kind!r}")
    classifier = getattr(method, "classifier", None)
    if not isinstance(classifier, PrefixClassifier):
        raise ConfigError(f"method {method.name} has no classifier that annotator conditioning can read")
    task = classifier.task
    if task.generation or task.multiple_choice:
        raise ConfigError("method.annotator_conditioning is for classification tasks (multi-annotator labels)")
    prefix_shape = None
    if kind in ("heads", "embedding") and classifier.head is None:
        raise ConfigError(
            f"method.annotator_conditioning={kind} reads an encoder's classification head; this decoder scores "
            "through its LM head: use annotator_conditioning=prefix with ptuning-v2 or dcpc"
        )
    if kind == "prefix":
        m = getattr(cfg, "prefix_length", None)
        if not getattr(method, "feeds_prefix", False) or m is None:
            raise ConfigError(
                f"method.annotator_conditioning=prefix needs a prefix method (ptuning-v2, dcpc), not {method.name}; "
                "use heads or embedding"
            )
        geo = classifier.geo
        prefix_shape = (geo.num_layers, 2, m, geo.kv_dim)
    if cfg.annotator_rank < 1:
        raise ConfigError(f"method.annotator_rank must be at least 1, not {cfg.annotator_rank}")
    module = AnnotatorConditioning(kind, vocab, classifier, cfg.annotator_rank, prefix_shape)
    module.to(next(classifier.parameters()).device)
    classifier.conditioning = module

    def capture(_module, _args, kwargs):
        module.annotators = kwargs.get("annotators")
        module.attributes = kwargs.get("annotator_attributes")

    def release(_module, _args, _kwargs, _output):
        module.annotators = module.attributes = None

    method.register_forward_pre_hook(capture, with_kwargs=True)
    method.register_forward_hook(release, with_kwargs=True, always_call=True)
    return module


def annotator_vocab(method: nn.Module) -> AnnotatorVocab | None:
    """The vocabulary of a conditioned method, None for a method without conditioning."""
    cond = getattr(getattr(method, "classifier", None), "conditioning", None)
    return cond.vocab if cond is not None else None


def annotator_inputs(vocab: AnnotatorVocab | None) -> dict:
    """The Collator's keyword arguments for ``vocab`` (none without one)."""
    if vocab is None:
        return {}
    return {"annotators": vocab.index, "attribute_values": vocab.attribute_index}
