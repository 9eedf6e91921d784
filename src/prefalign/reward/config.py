"""The config of `prefalign reward`: preference sources, the reward model, DORM's weighting and the run."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..utils.config_base import ConfigBase, deep_merge, parse_overrides, read_yaml_mapping
from ..utils.config_base import option as _f


def _list(default: list, help: str):
    return field(default_factory=lambda: list(default), metadata={"help": help})


def _dict(help: str):
    return field(default_factory=dict, metadata={"help": help})


FORMATS = ("pairs", "ratings")
VARIANTS = ("unweighted", "prior", "dorm", "bilevel-no-prior")
W_GRADIENTS = ("per-example", "batch-mean")
PRIOR_DATA = ("train", "validation")  # what the briefly trained model of eq. 3.4-3.5 learns from
Q_FORMS = ("range", "absolute")  # eq. 3.5 as written, or without its division by the MC range
PRIOR_SCALINGS = ("standardise", "raw")  # u and q z-scored and clipped before eq. 3.6, or as measured
W_NORMALISE = ("none", "mean")  # after Algorithm 1 line 5: w as stepped, or rescaled to mean 1
RATING_RANGE = (0.0, 4.0)  # appendix I.1: every rating is mapped linearly onto 0-4


@dataclass
class SourceConfig(ConfigBase):
    """One preference source: a file of chosen/rejected pairs or of rated responses."""

    SECTION = "source"
    name: str = _f("", "the source's name, used in the weight curves and error messages")
    path: str = _f("", "CSV, TSV, JSON (a list of records), JSONL or .jsonl.gz file")
    format: str = _f(
        "pairs", "'pairs' (chosen/rejected texts) or 'ratings' (a response with rating columns)", choices=FORMATS
    )
    prompt_column: str = _f("", "optional prompt column, put before each response (empty: the texts are complete)")
    chosen_column: str = _f("chosen", "pairs: the preferred response's column")
    rejected_column: str = _f("rejected", "pairs: the other response's column")
    response_column: str = _f("response", "ratings: the rated response's column")
    ratings: dict = _dict("ratings: head attribute -> the column holding its rating")
    scale: list[float] = _list([0.0, 4.0], "ratings: the declared [lowest, highest] rating, mapped onto 0-4")
    limit: int = _f(0, "use only the first N rows (0: all)")

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("every source needs a name: set sources[i].name")
        if not self.path:
            raise ConfigError(f"source '{self.name}': set its path")
        if self.format == "ratings" and not self.ratings:
            raise ConfigError(f"source '{self.name}': a ratings source needs ratings: {{attribute: column}}")
        if len(self.scale) != 2 or not self.scale[0] < self.scale[1]:
            raise ConfigError(f"source '{self.name}': scale must be [lowest, highest] with lowest < highest")


@dataclass
class RewardModelConfig(ConfigBase):
    """The reward model: a backbone, LoRA through PEFT or full fine-tuning, a linear head."""

    SECTION = "model"
    name: str = _f("minilm", "backbone: a built-in alias, a local folder or a hub id")
    tuning: str = _f(
        "lora",
        "'lora' (frozen backbone plus PEFT LoRA), 'full' (every weight trains) or 'head' (frozen backbone, its "
        "pooled features cached once per text, only the head trains: cheap on CPU)",
        choices=("lora", "full", "head"),
    )
    lora_r: int = _f(8, "LoRA rank")
    lora_alpha: float = _f(16.0, "LoRA scaling numerator")
    lora_dropout: float = _f(0.0, "dropout on LoRA's input")
    target_modules: list[str] | None = _f(None, "modules LoRA adapts; default PEFT's per-architecture choice")
    attributes: list[str] = _list([], "the head's attributes (multi-attribute head); empty: one scalar 'reward'")
    head_dropout: float = _f(0.1, "dropout before the head (also what MC dropout samples, with the backbone's)")
    max_length: int = _f(128, "tokens per text; longer texts lose their START (dialogues differ at the end)")

    def validate(self) -> None:
        self.check_range("lora_r", 1, None)
        self.check_range("head_dropout", 0.0, 0.99)
        self.check_range("max_length", 8, None)

    @property
    def head_attributes(self) -> list[str]:
        return list(self.attributes) or ["reward"]


@dataclass
class DormConfig(ConfigBase):
    """DORM (thesis ch. 3): prior weights (eq. 3.4-3.6) and the first-order bilevel optimisation (Alg. 1)."""

    SECTION = "dorm"
    variant: str = _f(
        "dorm",
        "'unweighted' (w = 1), 'prior' (w = w0, fixed), 'dorm' (bilevel with the prior, beta), "
        "'bilevel-no-prior' (bilevel, beta = 0, w starts uniform)",
        choices=VARIANTS,
    )
    alpha: float = _f(10.0, "alpha of eq. 3.10 / Algorithm 1 (app. I.3)")
    beta: float = _f(1.0, "beta, the pull towards the prior weights, eq. 3.7 (app. I.3)")
    eta_w: float = _f(1e-3, "eta_w, the weights' step size in Algorithm 1 line 5 (plain gradient steps)")
    w_gradient: str = _f(
        "per-example",
        "the training loss's scale in eq. 3.10: 'per-example' (eq. 3.7's sum: dL_tr/dw_i = l_i, the batch's "
        "weights step) or 'batch-mean' (dL_tr/dw_i = l_i/|B|, the prior's pull on every weight each step)",
        choices=W_GRADIENTS,
    )
    w_normalise: str = _f(
        "none",
        "after each w step: 'none' (Algorithm 1 line 5 as written) or 'mean' (w divided by its mean over the "
        "training examples, so a step shifts weights between examples and not the loss's overall scale)",
        choices=W_NORMALISE,
    )
    gamma: float = _f(1.0, "gamma of eq. 3.6: disagreement's share against uncertainty")
    mc_passes: int = _f(8, "N, stochastic forward passes of MC dropout (eq. 3.4)")
    prior_steps: int = _f(50, "steps of the brief unweighted training the prior is read from")
    clip: float = _f(3.0, "standardised u and q are clipped to [-clip, clip] before eq. 3.6")
    prior_data: str = _f(
        "train",
        "what the briefly trained model learns from: 'train' (the training sources, unweighted) or "
        "'validation' (the trusted D_val only, so it cannot have learned the training labels' errors)",
        choices=PRIOR_DATA,
    )
    q_form: str = _f(
        "range",
        "eq. 3.5's q: 'range' (|r - mean r| / (max - min) over the MC passes, as written) or 'absolute' "
        "(|r - mean r|: for a pair 1 - mean p, how far the model is from the label)",
        choices=Q_FORMS,
    )
    u_coefficient: float = _f(
        1.0, "c in w0 = exp(c u - gamma q): 1 as in eq. 3.6 (uncertain examples up), 0 drops u, -1 turns it down"
    )
    prior_scaling: str = _f(
        "standardise",
        "u and q before eq. 3.6: 'standardise' (z-score over the training set, clipped to +-clip) or 'raw' "
        "(as measured; u is a variance, so then q alone decides unless gamma is small)",
        choices=PRIOR_SCALINGS,
    )

    def validate(self) -> None:
        for name in ("alpha", "beta", "eta_w", "gamma", "clip"):
            self.check_range(name, 0.0, None)
        self.check_range("mc_passes", 2, None)
        self.check_range("prior_steps", 0, None)


@dataclass
class RewardTrainingConfig(ConfigBase):
    """The run: steps, batch, learning rate of theta and u, checkpoints."""

    SECTION = "training"
    output_dir: str = _f("runs/reward", "where the adapter, weights, curves and checkpoints go")
    steps: int = _f(200, "T, iterations of Algorithm 1 (each: a training and a validation mini-batch)")
    batch_size: int = _f(8, "mini-batch size of D_tr and D_val")
    learning_rate: float = _f(1e-3, "eta_theta = eta_u (Adam, app. I.3)")
    weight_decay: float = _f(0.0, "Adam(W) weight decay of theta and u")
    seed: int = _f(0, "seed of sampling, dropout and the head's initialisation")
    checkpoint_every: int = _f(50, "steps between checkpoints (0: none)")
    log_every: int = _f(10, "steps between weight-curve points")
    eval_batch_size: int = _f(32, "batch size when scoring")

    def validate(self) -> None:
        self.check_range("steps", 1, None)
        self.check_range("batch_size", 1, None)
        self.check_range("learning_rate", 0.0, None)


@dataclass
class RewardConfig(ConfigBase):
    """A `prefalign reward` run: training sources, a clean validation set, an optional test set."""

    SECTION = ""
    sources: list[SourceConfig] = _list([], "training sources, each with its own weight curve")
    validation: list[SourceConfig] = _list([], "D_val: the trusted pairs the upper level fits (eq. 3.7)")
    test: list[SourceConfig] = _list([], "held-out pairs scored after training (pairwise accuracy)")
    model: RewardModelConfig = field(default_factory=RewardModelConfig, metadata={"help": "the reward model"})
    dorm: DormConfig = field(default_factory=DormConfig, metadata={"help": "DORM's weighting"})
    training: RewardTrainingConfig = field(default_factory=RewardTrainingConfig, metadata={"help": "the run"})

    def to_dict(self) -> dict:
        out = super().to_dict()
        for key in ("sources", "validation", "test"):
            out[key] = [s.to_dict() for s in getattr(self, key)]
        return out

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("set sources: a list of {name, path, format} (at least one)")
        if not self.validation:
            raise ConfigError("set validation: at least one source of trusted pairs (DORM's D_val)")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"source names must differ: {names}")
        attributes = set(self.model.head_attributes)
        for s in (*self.sources, *self.validation, *self.test):
            missing = set(s.ratings) - attributes if s.format == "ratings" else set()
            if missing:
                raise ConfigError(
                    f"source '{s.name}' rates {sorted(missing)}, which model.attributes does not list "
                    f"({sorted(attributes)}); add them there"
                )


def load_reward_config(path: str | None, overrides: list[str] | None = None) -> RewardConfig:
    """The YAML file at ``path`` (or nothing), with ``--set key=value`` overrides applied."""
    data = read_yaml_mapping(path, "reward config", "sources/validation/model/dorm/training") if path else {}
    return RewardConfig.from_dict(deep_merge(data, parse_overrides(overrides or [])), where="")
