"""L-Tuning (Kowsher et al.): label-token prefixes and prompts, trained as NLI pairs.

Each class's label text ``y_k`` is run once through the frozen model; its last-layer states
``h_k in R^{l x d}`` are cached (a non-persistent buffer, recomputed whenever the method is
built, so a checkpoint never holds them and no training step repeats the frozen pass).

* prefix (eq. 1): ``p_k = Z_Psi(F_Phi(h_k))`` in ``R^{L x 2 x l x kv}`` goes into the key/value
  cache of every layer through ``PrefixClassifier(prefix_kv=...)``, exactly as DCPC's prefixes do;
* prompt (eq. 2): ``e(y_k) = G_gamma(h_k)`` in ``R^{l x d}`` is placed before the text's word
  embeddings through ``PrefixClassifier(prompt_embeds=...)``.

A (text, label) pair gets one score ``o = C_zeta(M(x, p_k))``; training draws, per batch, true
pairs (target 1) and pairs with a uniformly drawn wrong label (target 0) and minimises binary
cross-entropy (appendix A.3); evaluation scores every label and predicts the argmax (A.4), so the
method's logits are ``(B, C)`` per-label scores and accuracy is computed as for any method.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import ConfigError
from ...models.classifier import PrefixClassifier, TaskSpec
from ...models.introspect import ModelGeometry
from ..base import Method, MethodOutput
from .config import LTuningConfig, LTuningPrefixConfig, LTuningPromptConfig


def resolve_label_texts(config: LTuningConfig, task: TaskSpec) -> list[str]:
    """The text of each class, in class order: ``method.label_texts`` or the task's label names."""
    names = list(task.label_names) if task.label_names else None
    given = config.label_texts
    if isinstance(given, list):
        if len(given) != task.num_classes:
            raise ConfigError(f"method.label_texts lists {len(given)} texts for {task.num_classes} classes")
        return [str(t) for t in given]
    if names is None:
        raise ConfigError(
            "L-Tuning reads each class's label text, and this task has no label names; set "
            "method.label_texts to a list of texts in class order"
        )
    if isinstance(given, dict):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ConfigError(f"method.label_texts names unknown labels {unknown}; the labels are {names}")
        return [given.get(name, name) for name in names]
    return names


def label_token_ids(tokenizer, texts: list[str], *, length: int | None, special: bool, pad_text: str) -> torch.Tensor:
    """``(C, l)`` token ids: each label's tokens padded with the filler to a common length ``l``.

    With ``special``, the tokenizer's own special tokens frame the padded label (``[CLS] y . . [SEP]``),
    as the authors' collator builds its label inputs.
    """
    filler = tokenizer(pad_text, add_special_tokens=False)["input_ids"] if pad_text else []
    if len(filler) != 1:
        if tokenizer.pad_token_id is None:
            raise ConfigError(
                f"method.label_pad_text {pad_text!r} is not one token and the tokenizer has no pad "
                "token; choose a one-token filler"
            )
        filler = [tokenizer.pad_token_id]
    parts = []
    for text in texts:
        core = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not core:
            raise ConfigError(f"label text {text!r} tokenises to nothing")
        lead: list[int] = []
        trail: list[int] = []
        if special:
            full = tokenizer(text)["input_ids"]
            at = next((i for i in range(len(full) - len(core) + 1) if full[i : i + len(core)] == core), None)
            if at is not None:
                lead, trail = full[:at], full[at + len(core) :]
        parts.append((lead, core, trail))
    longest = max(len(a) + len(b) + len(c) for a, b, c in parts)
    width = length or longest
    if longest > width:
        raise ConfigError(
            f"method.label_length = {width}, but a label takes {longest} tokens; raise it or leave it "
            "unset (the longest label's length)"
        )
    rows = [lead + core + filler * (width - len(lead) - len(core) - len(trail)) + trail for lead, core, trail in parts]
    return torch.tensor(rows, dtype=torch.long)


class PairScorer(PrefixClassifier):
    """The frozen backbone plus C_zeta: one score per (text, label) row, ``(N,)``.

    ``linear``: a bias-free ``d -> 2`` layer (appendix A.5's ``2 x d``) on the encoder's pooled output
    or the decoder's last real token; the score is the true logit minus the false one, so a sigmoid
    of it is the two-way softmax's probability that the label fits. ``lm`` (decoders): the LM head's
    log-probability of the 'fits' word minus that of the 'does not fit' word.
    """

    def __init__(
        self,
        model: nn.Module,
        geo: ModelGeometry,
        *,
        score_head: str,
        yes_no_ids: tuple[int, int] | None,
        position_offset: bool,
        head_dropout: float,
        head_pooling: str,
    ) -> None:
        if score_head == "lm" and not geo.is_decoder:
            raise ConfigError("method.score_head=lm needs a decoder (a model with an LM head); use linear")
        spec = TaskSpec(num_classes=2, verbalizer_ids=yes_no_ids if geo.is_decoder else None)
        super().__init__(
            model, geo, spec, position_offset=position_offset, head_dropout=head_dropout, head_pooling=head_pooling
        )
        self.score_head = score_head
        if score_head == "linear":
            linear = nn.Linear(geo.hidden_size, 2, bias=False)  # rows: [does not fit, fits]
            nn.init.normal_(linear.weight, std=0.02)
            self.head = nn.Sequential(nn.Dropout(head_dropout), linear)
        else:
            self.head = None

    def _scores(self, hidden, head_input, input_ids, attention_mask, score_mask) -> torch.Tensor:
        if self.score_head == "lm":
            logprobs = super()._scores(hidden, head_input, input_ids, attention_mask, score_mask)  # (N, 2)
            return logprobs[:, 0] - logprobs[:, 1]
        if self.geo.is_decoder:
            last = attention_mask.long().sum(-1) - 1  # right padding: index of the last real token
            head_input = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        two = self.head(head_input.float())
        return two[:, 1] - two[:, 0]


class LTuningModel(Method):
    """L-Tuning for prefix or prompt (``form``, fixed by the subclass) on a frozen encoder or decoder."""

    form: str = ""  # "prefix" (eq. 1) or "prompt" (eq. 2)
    changes_backbone = False
    generation_refusal = (
        "L-Tuning classifies into labels (an NLI framing of label texts); use dcpc, ptuning-v2 or a baseline"
    )

    def __init__(self, model, tokenizer, geo, task, config, *, initialise=True) -> None:  # see Method
        super().__init__(model, tokenizer, geo, task, config)
        if task.generation or task.multiple_choice:
            kind = "generation" if task.generation else "multiple-choice"
            raise ConfigError(
                f"L-Tuning classifies into labels (an NLI framing of label texts); this is a {kind} "
                "task. Use dcpc, ptuning-v2 or a baseline for it"
            )
        if task.num_classes < 2:
            raise ConfigError("L-Tuning needs at least two classes (a negative pair takes a wrong label)")
        self.label_texts = resolve_label_texts(config, task)
        yes_no = None
        if geo.is_decoder:
            yes_no = tuple(self._first_token(tokenizer, w) for w in config.lm_verbalizers)
            if config.score_head == "lm" and yes_no[0] == yes_no[1]:
                raise ConfigError(f"method.lm_verbalizers {config.lm_verbalizers} share a first token")
        self.classifier = PairScorer(
            model,
            geo,
            score_head=config.score_head,
            yes_no_ids=yes_no,
            position_offset=self.position_offset,
            head_dropout=config.head_dropout,
            head_pooling=config.head_pooling,
        )
        ids = label_token_ids(
            tokenizer,
            self.label_texts,
            length=config.label_length,
            special=config.label_special_tokens,
            pad_text=config.label_pad_text,
        )
        self.label_length = ids.shape[1]
        self.register_buffer("label_ids", ids, persistent=False)
        # h_k for every class, computed once: the frozen pass of section 2 / Algorithm 1 line 5.
        self.register_buffer("label_hidden", self.encode_labels(), persistent=False)
        d, l = geo.hidden_size, self.label_length
        if self.form == "prefix":
            self.pool = nn.Linear(d, 1, bias=False)  # F_Phi's scoring layer: d parameters
            z_in = d if config.pooling == "attention" else l
            self.z = nn.Linear(z_in, geo.num_layers * 2 * l * geo.kv_dim, bias=False)  # Z_Psi
        elif self.form == "prompt":
            self.g = nn.Linear(d, d, bias=False)  # G_gamma: d^2 parameters
            if initialise and config.prompt_init == "scaled_identity":
                self._scaled_identity_init()
        else:
            raise ConfigError(f"unknown L-Tuning form {self.form!r}")
        self._generator = torch.Generator().manual_seed(config.negative_seed)
        self.last_pairs: dict[str, torch.Tensor] | None = None  # the latest training pairs, for inspection

    @staticmethod
    def _first_token(tokenizer, word: str) -> int:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ConfigError(f"verbalizer {word!r} tokenises to nothing")
        return ids[0]

    # -- the frozen pass over the label tokens, cached ----------------------------------------------
    @torch.no_grad()
    def encode_labels(self) -> torch.Tensor:
        """``(C, l, d)`` float32: the frozen model's last-layer states of every label input (eval mode)."""
        model = self.classifier.model
        device = next(model.parameters()).device
        ids = self.label_ids.to(device)
        was_training = model.training
        model.eval()
        try:
            out = self.classifier.backbone()(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        finally:
            model.train(was_training)
        return out.last_hidden_state.float().to(self.label_ids.device)

    @torch.no_grad()
    def _scaled_identity_init(self) -> None:
        words = self.classifier.model.get_input_embeddings().weight
        e_norm = words.float()[self.label_ids.to(words.device)].norm(dim=-1).mean().item()
        h_norm = self.label_hidden.norm(dim=-1).mean().clamp(min=1e-6).item()
        self.g.weight.copy_(torch.eye(self.geo.hidden_size) * (e_norm / h_norm))

    # -- label-conditioned prefixes and prompts ------------------------------------------------------
    def label_prefixes(self) -> torch.Tensor:
        """``(C, L, 2, l, kv_dim)``: p_k = Z_Psi(F_Phi(h_k)) for every class (eq. 1)."""
        h = self.label_hidden
        scores = self.pool(h).squeeze(-1)  # (C, l): w . h_t
        if self.config.pooling == "attention":
            pooled = torch.einsum("cl,cld->cd", torch.softmax(scores, dim=-1), h)  # (C, d)
        else:
            pooled = scores  # the authors' code: the l raw scores themselves
        c, geo = h.shape[0], self.geo
        return self.z(pooled).view(c, geo.num_layers, 2, self.label_length, geo.kv_dim)

    def label_prompts(self) -> torch.Tensor:
        """``(C, l, d)``: e(y_k) = G_gamma(h_k) for every class (eq. 2)."""
        return self.g(self.label_hidden)

    def score_pairs(self, input_ids, attention_mask, rows, label_idx, token_type_ids=None) -> torch.Tensor:
        """One score per pair (text ``rows[i]``, label ``label_idx[i]``): all pairs in one backbone pass."""
        ids, mask = input_ids[rows], attention_mask[rows]
        tt = token_type_ids[rows] if token_type_ids is not None else None
        if self.form == "prefix":
            out = self.classifier(ids, mask, self.label_prefixes()[label_idx], token_type_ids=tt)
        else:
            out = self.classifier(ids, mask, None, token_type_ids=tt, prompt_embeds=self.label_prompts()[label_idx])
        return out.logits.float()

    # -- NLI pairs (appendix A.3) --------------------------------------------------------------------
    def sample_pairs(self, true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows, label_idx, targets): which text, which label, 1 for the true label and 0 for a wrong one.

        A wrong label is drawn uniformly from the other ``C - 1`` classes (so never the true one) by a
        generator seeded with ``negative_seed``.
        """
        b, c = true.shape[0], self.task.num_classes
        true_cpu = true.detach().long().cpu()
        draw = torch.randint(0, c - 1, (b,), generator=self._generator)
        wrong = draw + (draw >= true_cpu).long()
        order = torch.arange(b)
        if self.config.pairing == "both":
            rows = torch.cat([order, order])
            labels = torch.cat([true_cpu, wrong])
            targets = torch.cat([torch.ones(b), torch.zeros(b)])
        else:
            positive = order < (b + 1) // 2
            rows, labels, targets = order, torch.where(positive, true_cpu, wrong), positive.float()
        return rows.to(true.device), labels.to(true.device), targets.to(true.device)

    # -- the method interface ------------------------------------------------------------------------
    # Trained: F_Phi and Z_Psi (prefix) or G_gamma (prompt), plus C_zeta. The cached label states are
    # non-persistent buffers, so checkpoints never hold them (they are recomputed when the method is built).
    def forward(
        self, input_ids, attention_mask, labels=None, target_dist=None, score_mask=None, token_type_ids=None, **_
    ) -> MethodOutput:  # see Method.forward
        if labels is not None and labels.dim() == 2:
            raise ConfigError("L-Tuning classifies into labels; generation batches (token labels) are not supported")
        # Soft targets: the pairs read the most likely class as the true label, each pair's BCE target is q(label).
        true = target_dist.argmax(-1) if target_dist is not None else labels
        b, c = input_ids.shape[0], self.task.num_classes
        if self.training and true is not None:
            rows, label_idx, targets = self.sample_pairs(true)
            if target_dist is not None:  # soft targets: a pair's BCE target is q(label), one-hot gives 1/0
                targets = target_dist[rows, label_idx].to(targets.dtype)
            self.last_pairs = {"rows": rows, "labels": label_idx, "targets": targets, "true": true.detach()}
            scores = self.score_pairs(input_ids, attention_mask, rows, label_idx, token_type_ids)
            loss = F.binary_cross_entropy_with_logits(scores, targets)  # eq. 4
            logits = torch.full((b, c), float("-inf"), device=scores.device)
            logits[rows, label_idx] = scores.detach()
            result = MethodOutput(loss=loss, logits=logits)
            per_pair = F.binary_cross_entropy_with_logits(scores.detach(), targets, reduction="none")
            pos = targets > 0.5
            result.terms["loss_task"] = loss.detach()
            if pos.any():
                result.terms["loss_true_pairs"] = per_pair[pos].mean()
            if (~pos).any():
                result.terms["loss_false_pairs"] = per_pair[~pos].mean()
            result.terms["pair_accuracy"] = ((scores.detach() > 0) == pos).float().mean()
            return result
        # Evaluation (appendix A.4): every label scored, B x C pairs in one pass; prediction = argmax.
        rows = torch.arange(b, device=input_ids.device).repeat_interleave(c)
        label_idx = torch.arange(c, device=input_ids.device).repeat(b)
        logits = self.score_pairs(input_ids, attention_mask, rows, label_idx, token_type_ids).view(b, c)
        if true is None:
            return MethodOutput(logits=logits)
        onehot = F.one_hot(true.long(), c).float()
        per_pair = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        pos_loss = (per_pair * onehot).sum() / b
        neg_loss = (per_pair * (1 - onehot)).sum() / (b * (c - 1))
        # The expected training loss: half true pairs, half pairs with a uniformly drawn wrong label.
        loss = 0.5 * (pos_loss + neg_loss)
        result = MethodOutput(loss=loss, logits=logits)
        result.terms.update(
            {"loss_task": loss.detach(), "loss_true_pairs": pos_loss.detach(), "loss_false_pairs": neg_loss.detach()}
        )
        return result


class LTuningPrefix(LTuningModel):
    """L-Tuning for prefix: label tokens -> per-layer key/value prefixes (eq. 1)."""

    name = "ltuning-prefix"
    config_class = LTuningPrefixConfig
    form = "prefix"
    feeds_prefix = True

    @property
    def position_offset(self) -> bool:
        return self.config.position_offset


class LTuningPrompt(LTuningModel):
    """L-Tuning for prompt: a d x d map of the label's hidden states before the text embeddings (eq. 2)."""

    name = "ltuning-prompt"
    config_class = LTuningPromptConfig
    form = "prompt"


def parameter_count(
    geo: ModelGeometry, form: str, label_length: int, *, pooling: str = "attention", score_head: str = "linear"
) -> int:
    """The trainable parameters appendix A.5 counts, in the geometry of this code (kv width for Z).

    prefix, 'scores':    d + 2 l (l L kv) + 2d      (= A.5's 2 l^2 m d + 3 d when kv = d)
    prefix, 'attention': d + 2 l (d L kv) + 2d      (the pooled vector is d wide, not l)
    prompt:              d^2 + 2d                   (= A.5's d (d + 2))
    score_head 'lm' drops the head's 2d.
    """
    d, L, kv, l = geo.hidden_size, geo.num_layers, geo.kv_dim, label_length
    head = 2 * d if score_head == "linear" else 0
    if form == "prompt":
        return d * d + head
    z_in = l if pooling == "scores" else d
    return d + z_in * (2 * L * l * kv) + head
