"""DCPC's configuration: every switch and hyperparameter, with the paper section it comes from."""

from __future__ import annotations

from dataclasses import dataclass

from ...utils.config_base import option as _f
from ..options import HeadConfig

# The text whose activations initialise the prefixes unless prefix_init_text says otherwise.
DEFAULT_INIT_TEXT = "Read the following text carefully and decide which of the possible labels describes it best."


@dataclass
class DCPCConfig(HeadConfig):
    """DCPC (P-Tuning v2 prefixes + ambiguity loss + CLPA + PCM); P-Tuning v2 when all three are off."""

    # P-Tuning v2 prefixes (section 3.1, eq. 1-2)
    prefix_length: int = _f(16, "m, prefix tokens per layer (section 4.1: 16)")
    reparameterize: bool = _f(False, "P-Tuning v2's MLP reparameterisation of the prefixes")
    reparam_hidden_size: int = _f(512, "hidden width of the reparameterisation MLP (P-Tuning v2 code: 512)")
    prefix_init: str = _f(
        "text", "'text': keys/values of real text (Li & Liang); 'random': N(0, 0.02)", choices=("text", "random")
    )
    prefix_init_text: str = _f(DEFAULT_INIT_TEXT, "text whose activations initialise the prefixes")
    position_offset: bool = _f(True, "real tokens' positions continue after the prefix (as PEFT and P-Tuning v2)")
    # Switches (Table 3 ablations)
    use_ambiguity: bool = _f(True, "add lambda1 * L_ambiguity (section 3.3)")
    use_alignment: bool = _f(True, "add lambda2 * L_align, cross-layer prefix alignment (section 3.4)")
    use_pcm: bool = _f(True, "Preference Correction Module and lambda3 * L_KL (section 3.5)")
    # Preference-sensitive similarity (section 3.3, eq. 3-5)
    tau_cos: float = _f(
        0.3,
        "cosine gate of eq. 5 on centred cosines (similarity_center); section 4.1's 0.85 was "
        "set for raw cosines on LLaMA-2 and lets no pair of MiniLM's reviews through, which would "
        "make DCPC P-Tuning v2 plus the PCM (docs/methods/dcpc.md)",
    )
    tau_ambiguity: float = _f(
        0.3,
        "per-pair threshold on cos x disagreement above which CLPA and PCM's KL act (section 4.1: 0.3)",
    )
    gate_divergence: str = _f(
        "kl",
        "disagreement the tau_ambiguity gate reads, zero when L_A = L_B: 'kl' KL(L_A || L_B) (eq. 4 minus "
        "L_A's entropy), 'js' Jensen-Shannon, or 'cross_entropy' (eq. 4 itself: opens on agreeing but "
        "uncertain pairs; the old gate)",
        choices=("kl", "js", "cross_entropy"),
    )
    similarity_layer: int = _f(-1, "layer whose pooled output feeds eq. 3 (0 = embeddings, -1 = last)")
    ambiguity_divergence: str = _f(
        "cross_entropy",
        "eq. 4 as written ('cross_entropy') or minus L_A's entropy ('kl')",
        choices=("cross_entropy", "kl"),
    )
    detach_similarity: bool = _f(True, "treat cos(theta) in eq. 5 as a constant weight (no gradient)")
    similarity_center: bool = _f(
        True,
        "subtract the batch mean before eq. 3, so a direction all inputs share "
        "cannot open the gate for every pair (false: the paper's raw cosine)",
    )
    pair_scope: str = _f(
        "device",
        "which examples form the pairs of eq. 3-12 under DDP: each process's own "
        "batch ('device', as the paper's single-GPU runs) or every process's batch ('global': "
        "an all_gather with gradient; equal to one process with the whole batch)",
        choices=("device", "global"),
    )
    pair_reduction: str = _f(
        "gated_pairs",
        "average each pairwise term over the pairs its gate passes, or all pairs",
        choices=("gated_pairs", "all_pairs"),
    )
    # Cross-layer prefix alignment (section 3.4, eq. 6-7)
    align_reduction: str = _f(
        "mean", "squared distance summed ('sum') or averaged ('mean') over features", choices=("mean", "sum")
    )
    align_normalize: bool = _f(
        True,
        "RMS-normalise each layer's pooled token state before eq. 7, so every layer is on one scale "
        "(false: raw residual streams, which grow with depth)",
    )
    align_token_gradient: bool = _f(
        False,
        "let eq. 7's token half |T_A - T_B|^2 send gradient through the frozen backbone into the prefix "
        "(the old behaviour; it collapses decoders, so it warns); default: only P_A, P_B train (eq. 27)",
    )
    # Preference Correction Module (section 3.5, eq. 9-12)
    pcm_mode: str = _f(
        "gate",
        "eq. 11 reading: 'gate' (the literal M p_pref in R^m scales the prefix rows; 0.17M at LLaMA-2 7B, "
        "the paper's +0.2M) or 'elementwise' (P_new = M * (d p_pref), an m x d prefix embedding "
        "projected to every layer; 4.8M at 7B)",
        choices=("elementwise", "gate"),
    )
    pcm_mu_scale: float = _f(
        1.0,
        "alpha in eq. 10 read as softmax(alpha mu + sigma eps): a temperature 1/alpha on the auxiliary "
        "classifier's mean only (the sampled noise keeps the scale sigma learns); 1 is the paper as written. "
        "At 1 mu is ~1e-2 against noise ~0.13 and p_pref stays uniform (docs/methods/dcpc.md item 10)",
    )
    pcm_input_norm: bool = _f(
        False,
        "standardise eq. 9's input (the pooled layer-0 embedding) per example before the auxiliary classifier "
        "(a layer norm without weights); false: the embedding as pooled, whose norm is 0.39 on MiniLM and "
        "varies across reviews by 0.01 per feature, so mu barely depends on the input (docs/methods/dcpc.md)",
    )
    pcm_gate_input: str = _f(
        "probability",
        "what eq. 11's M multiplies in 'gate' mode: 'probability' (s = M p_pref, the paper as written; uniform "
        "p_pref gives every input the same scales M 1/d) or 'centred' (s = M (d p_pref - 1), zero at uniform "
        "p_pref, so s is only the input's own part: d p_pref - 1 ~ mu - mean(mu) for small mu)",
        choices=("probability", "centred"),
    )
    pcm_sigma_bias: float = _f(
        -2.0,
        "starting bias of the auxiliary classifier's sigma outputs: eq. 10's sigma = softplus(b) + 1e-4 starts at "
        "0.127 for -2 (little noise next to a softmax over d), 0.0068 for -5; the paper does not give it",
    )
    pcm_aux_rank: int = _f(8, "bottleneck of the auxiliary classifier d -> r -> (mu, sigma)")
    pcm_proj_rank: int = _f(16, "rank of the projection from P_new (m x d) to every layer's keys/values")
    pcm_learning_rate: float | None = _f(
        None,
        "learning rate of the PCM's parameters (default: training.learning_rate); "
        "its zero-initialised projection moves every prefix at once, so it "
        "tolerates less than the prefixes do",
    )
    pcm_kl: str = _f(
        "gaussian",
        "eq. 12 between N(mu, sigma^2) ('gaussian') or between softmax p_pref ('softmax')",
        choices=("gaussian", "softmax"),
    )
    # Eq. 13 weights (not given in the paper)
    lambda_ambiguity: float = _f(
        0.1,
        "lambda1 of eq. 13 (the paper gives none; 0.1 was chosen on validation items over 0.3, 1 and eq. 4 minus "
        "L_A's entropy: configs/compare/issue15_demo_rt_ambiguity_probe.yaml, docs/methods/dcpc.md item 14). "
        "At 1, eq. 4's cross-entropy pulls like a second task loss and costs SmolLM2 7 points on SST-2",
        digest_default=1.0,  # the default until issue 15: records made then still match configs that set 1.0
        digest_when="use_ambiguity",  # and P-Tuning v2's or w/o L_ambiguity's records match whatever it is
    )
    lambda_align: float = _f(
        0.5,
        "lambda2 of eq. 13 (0.5: lambda2 x the starting L_align stays below the task loss on MiniLM, "
        "SmolLM2 and the tiny test models; benchmarks/dcpc_findings.py --real)",
    )
    lambda_kl: float = _f(0.1, "lambda3 of eq. 13")

    def validate(self) -> None:
        super().validate()
        self.check_range("prefix_length", 1, 4096)
        self.check_range("tau_cos", 0.0, 1.0)  # eq. 5 weights by cos: a negative gate would flip signs
        self.check_range("tau_ambiguity", 0.0, None)
        for name in ("lambda_ambiguity", "lambda_align", "lambda_kl"):
            self.check_range(name, 0.0, None)
        self.check_range("reparam_hidden_size", 1, None)
        self.check_range("pcm_aux_rank", 1, None)
        self.check_range("pcm_mu_scale", 0.0, 1.0e4)
        self.check_range("pcm_sigma_bias", -20.0, 20.0)
        self.check_range("pcm_proj_rank", 1, None)
        self.check_range("pcm_learning_rate", 0.0, 10.0)
