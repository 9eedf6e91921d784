"""The DCPC model: a frozen backbone, deep prefixes, the PCM, and the eq. 13 objective."""

from __future__ import annotations

import dataclasses
import warnings

import torch

from ...models.classifier import masked_mean
from ...models.prefix import PrefixEncoder, text_init_kv
from ...utils.distributed import gather_rows
from ..base import Method, MethodOutput, soft_cross_entropy
from . import losses
from .config import DCPCConfig
from .pcm import PreferenceCorrection

MIN_CENTRED_ROWS = 4  # fewer pair rows than this: eq. 3's cosine is taken uncentred


class DCPCModel(Method):
    """DCPC on any supported backbone; with every switch off, exactly P-Tuning v2."""

    name = "dcpc"
    config_class = DCPCConfig
    feeds_prefix = True
    changes_backbone = False

    def __init__(self, model, tokenizer, geo, task, config, *, initialise=True) -> None:  # see Method
        super().__init__(model, tokenizer, geo, task, config)
        self.classifier = self.build_classifier(model, position_offset=config.position_offset)
        init_kv = None
        if initialise and config.prefix_init == "text":
            init_kv = text_init_kv(model, tokenizer, geo, config.prefix_init_text, config.prefix_length)
        self.prefix = PrefixEncoder(
            geo,
            config.prefix_length,
            reparameterize=config.reparameterize,
            hidden_size=config.reparam_hidden_size,
            init_kv=init_kv,
        )
        self.pcm = PreferenceCorrection(geo, config) if config.use_pcm else None
        if config.use_alignment and config.align_token_gradient:
            warnings.warn(
                "method.align_token_gradient: true sends eq. 7's token half through the frozen backbone into "
                "the shared prefix, which can only shrink it by making every layer ignore the input (it "
                "collapsed SmolLM2 to one class); the paper trains only P_A, P_B (eq. 27)",
                stacklevel=2,
            )

    # -- parameters ---------------------------------------------------------------------------
    def learning_rates(self) -> dict[str, float | None]:
        """The PCM's own learning rate (prefixes and the encoder head train at training.learning_rate)."""
        return {"pcm.": self.config.pcm_learning_rate}

    @property
    def position_offset(self) -> bool:
        return self.config.position_offset

    # -- prefixes -----------------------------------------------------------------------------
    def _prefix_for(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, per: int = 1, *, sample: bool, rows: bool = False
    ):
        """(prefix (N*per, L, 2, m, kv_dim), PCM output or None): the static prefix plus the PCM's delta.

        ``rows`` (inference with the 'gate' PCM, one sequence per example): the prefix is returned as the static
        one, (L, 2, m, kv_dim), and the classifier writes each example's scaled rows (the PCM output's
        ``scales``) straight into the attention cache, with the same values.
        """
        static = self.prefix()  # (L, 2, m, kv)
        n_examples = input_ids.shape[0] // per
        pcm_out = None
        if self.pcm is not None:
            words = self.classifier.model.get_input_embeddings()(input_ids)
            e_in = masked_mean(words.float(), attention_mask)  # eq. 9's input: pooled layer-0 embedding
            if per > 1:  # multiple choice: one PCM input per example, the mean over its options
                e_in = e_in.view(n_examples, per, -1).mean(1)
            e_in = e_in.to(self.pcm.aux[0].weight.dtype)  # an adapter cast to bf16/fp16 has a half-precision PCM
            # The pair terms read P_A - P_B from the PCM's codes or row scales (pcm.pairwise_delta_distance)
            # and the static prefix, so the PCM returns each example's whole prefix in place of its delta: one
            # (N, L, 2, m, kv) tensor written and alive through the backbone's forward instead of two.
            rows = rows and per == 1 and self.pcm.mode == "gate"
            pcm_out = self.pcm(e_in, static, sample=sample, add_static=True, write_prefix=not rows)
            prefix = static if rows else pcm_out.delta
        else:
            prefix = static.unsqueeze(0).expand(n_examples, *static.shape)
        if per > 1:
            prefix = prefix.repeat_interleave(per, dim=0)
        return prefix, pcm_out

    def prefixes(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Each example's prefix ``(N, L, 2, m, kv_dim)`` as evaluation uses it (static + PCM delta, no
        sampling), for generation to put in the cache; ``input_ids`` hold the prompt tokens only."""
        return self._prefix_for(input_ids, attention_mask, sample=False)[0]

    # -- forward ------------------------------------------------------------------------------
    def forward(
        self, input_ids, attention_mask, labels=None, target_dist=None, score_mask=None, token_type_ids=None, **_
    ) -> MethodOutput:  # see Method.forward
        cfg = self.config
        if labels is not None and labels.dim() == 2:  # token labels: a generation task (decoders)
            return self._generation_forward(input_ids, attention_mask, labels)
        per = self.task.num_classes if self.task.multiple_choice else 1
        # Without autograd, the gate PCM's per-example prefix is written straight into the attention cache; annotator
        # conditioning edits each example's prefix, so it gets the materialised one.
        rows = not torch.is_grad_enabled() and self.pcm is not None and self.classifier.conditioning is None
        prefix, pcm_out = self._prefix_for(input_ids, attention_mask, per, sample=self.training, rows=rows)
        scale = pcm_out.scales if pcm_out is not None and pcm_out.delta is None else None
        # Every layer's pooled output feeds only the loss terms: inference without targets skips it.
        has_targets = labels is not None or target_dist is not None
        need_layers = has_targets and (cfg.use_alignment or cfg.similarity_layer != -1)
        out = self.classifier(
            input_ids,
            attention_mask,
            prefix,
            score_mask=score_mask,
            token_type_ids=token_type_ids,
            all_layers=need_layers,
            prefix_scale=scale,
        )
        del prefix  # the per-example prefix (B x a P-Tuning v2 prefix) is not needed for the loss terms
        if target_dist is None and labels is not None:
            target_dist = torch.nn.functional.one_hot(labels, self.task.num_classes).float()
        if target_dist is None:
            return MethodOutput(logits=out.logits)
        loss, terms = self.objective(out, target_dist, pcm_out)
        result = MethodOutput(loss=loss, logits=out.logits)
        result.terms.update(terms)
        return result

    def _generation_forward(self, input_ids, attention_mask, labels) -> MethodOutput:
        """LM loss over the answer tokens (labels -100 elsewhere) plus DCPC's terms on the prompts.

        The PCM reads the prompt tokens only, as it does when ``prefixes`` serves generation.
        """
        cfg = self.config
        prompt_mask = attention_mask * (labels == -100).to(attention_mask.dtype)
        prefix, pcm_out = self._prefix_for(input_ids, prompt_mask, sample=self.training)
        need_layers = cfg.use_alignment or cfg.similarity_layer != -1
        out = self.classifier.lm_forward(input_ids, attention_mask, prefix, labels, all_layers=need_layers)
        del prefix
        loss, terms = self.objective(out, None, pcm_out, task_loss=out.loss, probs=out.answer_probs)
        result = MethodOutput(loss=loss, logits=torch.log(out.answer_probs.clamp(min=1e-12)))
        result.terms.update(terms)
        return result

    def objective(
        self, out, target_dist, pcm_out, *, task_loss: torch.Tensor | None = None, probs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict]:
        """Eq. 13 plus the task loss: L_task + l1 L_ambiguity + l2 L_align + l3 L_KL.

        Generation tasks pass their LM loss as ``task_loss`` and each example's mean next-token
        distribution over its answer positions as ``probs`` (read in place of class probabilities).
        """
        cfg = self.config
        task_loss = soft_cross_entropy(out.logits, target_dist) if task_loss is None else task_loss
        terms = {"loss_task": task_loss.detach()}
        total = task_loss
        if not (cfg.use_ambiguity or cfg.use_alignment or cfg.use_pcm):
            return total, terms
        emb = out.last_pooled if cfg.similarity_layer == -1 else out.pooled[:, cfg.similarity_layer]
        probs = torch.softmax(out.logits.float(), dim=-1) if probs is None else probs
        layers = out.pooled[:, 1:] if cfg.use_alignment else None
        if cfg.pair_scope == "global" and self.training:  # pairs across every DDP process's batch
            emb, probs, layers, pcm_out = self._gather_pair_inputs(emb, probs, layers, pcm_out)
        if len(emb) < 2:
            return total, terms
        # Centring on the batch mean needs a few rows: 2 centred vectors are antipodal (cos = -1) and 3 sit
        # near -1/2, which would shut the gate; smaller batches are handled by using the raw cosine.
        center = cfg.similarity_center and len(emb) >= MIN_CENTRED_ROWS
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.use_ambiguity):
            amb, cos_gate = losses.pairwise_ambiguity(
                emb,
                probs,
                cfg.tau_cos,
                divergence=cfg.ambiguity_divergence,
                detach_similarity=cfg.detach_similarity,
                center=center,
            )
        # Sections 3.4-3.5's trigger, per pair: cos x disagreement of the two predictions (zero when they agree).
        cos = losses.pairwise_cosine(emb.detach(), center=center)
        disagreement = cos * losses.pairwise_disagreement(probs, cfg.gate_divergence)
        amb_gate = cos_gate & (disagreement > cfg.tau_ambiguity)
        n = len(cos_gate)
        pairs = max(n * (n - 1), 1)
        terms["gate_cos_rate"] = cos_gate.sum().float() / pairs
        terms["gate_ambiguity_rate"] = amb_gate.sum().float() / pairs
        l_amb = losses.reduce_pairs(amb, cos_gate, cfg.pair_reduction)
        terms["loss_ambiguity"] = l_amb.detach()
        if cfg.use_ambiguity:
            total = total + cfg.lambda_ambiguity * l_amb
        if cfg.use_alignment:
            # Eq. 27: only P_A, P_B train. The token half is a constant unless the old behaviour is asked for.
            states = layers if cfg.align_token_gradient else layers.detach()
            align = losses.pairwise_alignment(
                states, None, reduction=cfg.align_reduction, normalize=cfg.align_normalize
            )
            if pcm_out is not None:  # P_A^l - P_B^l = delta_A - delta_B: the prefix half of eq. 7
                align = align + self.pcm.pairwise_delta_distance(pcm_out, self.prefix(), cfg.align_reduction)
            l_align = losses.reduce_pairs(align, amb_gate, cfg.pair_reduction)
            terms["loss_align"] = l_align.detach()
            total = total + cfg.lambda_align * l_align
        if pcm_out is not None:
            if cfg.pcm_kl == "gaussian" and cfg.pair_reduction == "gated_pairs":  # only the gated pairs count
                l_kl = losses.gated_gaussian_kl(pcm_out.mu, pcm_out.sigma, amb_gate)
            else:
                if cfg.pcm_kl == "gaussian":
                    kl = losses.pairwise_gaussian_kl(pcm_out.mu, pcm_out.sigma)
                else:
                    kl = losses.pairwise_categorical_kl(pcm_out.p_pref)
                l_kl = losses.reduce_pairs(kl, amb_gate, cfg.pair_reduction)
            terms["loss_kl"] = l_kl.detach()
            # How much the PCM's per-example outputs differ across the batch (issue 15: ~0 means one prefix for
            # every input): d x the std over examples of p_pref, averaged over its d entries (about 1 when it
            # varies as much as it is large; in training p_pref is sampled, so the noise alone gives about sigma,
            # without noise 0 when it does not depend on the input), and the std of the row scales s = M p_pref.
            p = pcm_out.p_pref.detach().float()
            terms["pcm_p_spread"] = p.std(0).mean() * p.shape[-1]
            if pcm_out.scales is not None:
                terms["pcm_scale_spread"] = pcm_out.scales.detach().float().std(0).mean()
            total = total + cfg.lambda_kl * l_kl
        return total, terms

    def _gather_pair_inputs(self, emb, probs, layers, pcm_out):
        """The pair losses' inputs from every DDP process (rank order), each rank keeping the gradient to
        its own rows; the same tensors are exchanged on every rank, so the collectives always match."""
        emb, probs = gather_rows(emb), gather_rows(probs)
        layers = gather_rows(layers) if layers is not None else None
        if pcm_out is not None:
            kl_gaussian, align = self.config.pcm_kl == "gaussian", self.config.use_alignment
            pcm_out = dataclasses.replace(
                pcm_out,
                codes=gather_rows(pcm_out.codes) if align and pcm_out.codes is not None else pcm_out.codes,
                scales=gather_rows(pcm_out.scales) if align and pcm_out.scales is not None else pcm_out.scales,
                mu=gather_rows(pcm_out.mu) if kl_gaussian else pcm_out.mu,
                sigma=gather_rows(pcm_out.sigma) if kl_gaussian else pcm_out.sigma,
                p_pref=pcm_out.p_pref if kl_gaussian else gather_rows(pcm_out.p_pref),
            )
        return emb, probs, layers, pcm_out


# Table 3 of the paper, plus P-Tuning v2 itself (DCPC with everything off): one class, other defaults.
class DCPCNoCLPA(DCPCModel):
    """DCPC without cross-layer prefix alignment (Table 3, w/o CLPA)."""

    name = "dcpc-no-clpa"
    config_defaults = {"use_alignment": False}


class DCPCNoPCM(DCPCModel):
    """DCPC without the Preference Correction Module (Table 3, w/o PCM)."""

    name = "dcpc-no-pcm"
    config_defaults = {"use_pcm": False}


class DCPCNoAmbiguity(DCPCModel):
    """DCPC without the ambiguity loss (Table 3, w/o L_ambiguity)."""

    name = "dcpc-no-ambiguity"
    config_defaults = {"use_ambiguity": False}


class DCPCNoCLPAPCM(DCPCModel):
    """DCPC without CLPA and the PCM (Table 3, w/o CLPA & PCM)."""

    name = "dcpc-no-clpa-pcm"
    config_defaults = {"use_alignment": False, "use_pcm": False}


class PTuningV2(DCPCModel):
    """P-Tuning v2 (Liu et al., 2022): DCPC's deep prefixes with every DCPC term off."""

    name = "ptuning-v2"
    config_defaults = {"use_ambiguity": False, "use_alignment": False, "use_pcm": False}


VARIANTS = (DCPCModel, DCPCNoCLPA, DCPCNoPCM, DCPCNoAmbiguity, DCPCNoCLPAPCM, PTuningV2)
