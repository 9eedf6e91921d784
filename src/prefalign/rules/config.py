"""The config of `prefalign rules`: the texts, the seed rules, prompting, matching, the weak model, reviewers."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..utils.config_base import ConfigBase, deep_merge, parse_overrides, read_yaml_mapping
from ..utils.config_base import option as _f

REVIEWERS = ("simulated", "terminal", "file")
MASK = "[MASK]"


def _list(default: list, help: str):
    return field(default_factory=lambda: list(default), metadata={"help": help})


@dataclass
class TextsConfig(ConfigBase):
    """One file of texts: CSV, TSV (a header row) or JSONL, with a text column and maybe a label column."""

    SECTION = "texts"
    path: str = _f("", "CSV, TSV or JSONL file")
    text_column: str = _f("text", "the text's column")
    label_column: str = _f(
        "label",
        "the label's column (a label name); unlabelled pool: optional, read only by "
        "simulated reviewers and for rule accuracy",
    )
    limit: int = _f(0, "use only the first N rows (0: all)")


@dataclass
class SeedRuleConfig(ConfigBase):
    """A seed labelling rule: a keyword (or phrase) or a regular expression and the label it gives."""

    SECTION = "seed_rules"
    kind: str = _f("keyword", "'keyword' (whole word, case-insensitive) or 'regex'", choices=("keyword", "regex"))
    pattern: str = _f("", "the word, phrase or regular expression")
    label: str = _f("", "the label name the rule gives")


@dataclass
class PromptConfig(ConfigBase):
    """Rule proposal by prompting (eq. 2.4)."""

    SECTION = "prompt"
    model: str = _f(
        "smollm2-135m",
        "prompting model (alias, folder or hub id); a decoder fills the blank at the END of the template, an "
        "encoder with a masked-LM head fills [MASK] wherever it is (sec. 2.4.1)",
    )
    template: str = _f(
        "{text} This news is about [MASK]",
        "the task's template tau: {text} is the input, [MASK] the blank (a decoder needs it last; a masked-LM "
        "encoder takes it anywhere, e.g. '[MASK] News: {text}')",
    )
    top_k: int = _f(10, "k: candidate words per large-error instance and |V_u| of eq. 2.6 (Table A.3: 10)")
    max_length: int = _f(128, "tokens of the prompt; a longer input loses its end, the template's tail is kept")
    batch_size: int = _f(16, "prompts per forward pass")
    min_word_length: int = _f(3, "shorter words (and non-alphabetic tokens, stop words) are not candidates")


@dataclass
class MatchConfig(ConfigBase):
    """Soft matching of accepted rules (eq. 2.5-2.7) and the threshold sigma tuned on dev."""

    SECTION = "match"
    embedding_model: str = _f("minilm", "encoder for e_u and e_rj (eq. 2.5), mean-pooled")
    alpha: float = _f(0.25, "alpha of eq. 2.7: embedding similarity's share (Table A.3, AG News: 0.25)")
    rule_embedding: str = _f(
        "instance",
        "e_rj: 'instance' (the embedding of the large-error instance the rule came from) or 'words' (of its "
        "accepted words joined by spaces)",
        choices=("instance", "words"),
    )
    thresholds: list[float] = _list(
        [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7],
        "the grid sigma is chosen from on dev (with alpha 0.25 and k 10, s_j rarely passes 0.5)",
    )
    tune: str = _f(
        "combined",
        "how sigma is read off dev: 'combined' (the most accurate dev labelling with rules where they match and "
        "the current ensemble elsewhere) or 'rule_accuracy' (the prompt rules' own accuracy on the dev texts "
        "they match)",
        choices=("combined", "rule_accuracy"),
    )
    min_dev_matches: int = _f(3, "rule_accuracy: a sigma must let the rules match at least this many dev texts")
    max_length: int = _f(128, "tokens per text for the embeddings")


@dataclass
class WeakModelConfig(ConfigBase):
    """The weak model m_t: a head on frozen mean-pooled sentence embeddings (computed once, cached)."""

    SECTION = "weak_model"
    head: str = _f("logistic", "'logistic' (linear softmax) or 'mlp' (one hidden layer)", choices=("logistic", "mlp"))
    hidden: int = _f(256, "mlp: hidden units")
    epochs: int = _f(200, "full-batch Adam steps on eq. 2.8")
    learning_rate: float = _f(1e-2, "Adam learning rate")
    weight_decay: float = _f(1e-4, "Adam weight decay")
    self_training: bool = _f(True, "self-train on the unmatched texts (eq. 2.9-2.10)")
    self_training_rounds: int = _f(3, "times the targets of eq. 2.9 are recomputed")
    self_training_epochs: int = _f(50, "Adam steps per target update")
    self_training_weight: float = _f(1.0, "weight of eq. 2.10's KL term beside eq. 2.8's cross-entropy")
    train_on_clean: bool = _f(
        False, "add the clean set to every D_t (the paper uses it only to find large errors, sec. 2.5.1)"
    )


@dataclass
class BoostConfig(ConfigBase):
    """The rounds: boosting weights (eq. 2.1-2.3), hard examples, the ensemble (eq. 2.11)."""

    SECTION = "boost"
    rounds: int = _f(10, "iterations of rule proposal and weak-model training (sec. 2.5.1: 10)")
    top_n: int = _f(10, "n: large-error instances per round (sec. 2.5.1: 10)")
    exclude_used: bool = _f(True, "never propose from the same clean instance twice")
    ensemble_weights: str = _f(
        "equal",
        "'equal' (appendix A.4's practice) or 'alpha' (eq. 2.11 with alpha_t of eq. 2.2)",
        choices=("equal", "alpha"),
    )


@dataclass
class ReviewConfig(ConfigBase):
    """Who accepts or rejects candidate words."""

    SECTION = "review"
    reviewer: str = _f(
        "simulated",
        "'simulated' (three noisy oracles, majority vote), 'terminal' (one keystroke a candidate) or 'file' "
        "(stop after proposing; decide in the rules JSON or with export/import, then run again)",
        choices=REVIEWERS,
    )
    reviewers: int = _f(3, "simulated: how many oracles vote (sec. 2.5.1: three)")
    error_rate: float = _f(0.1, "simulated: each oracle flips its decision with this probability")
    oracle_precision: float = _f(
        0.6,
        "simulated: a word is correct for a label if at least this share of the pool texts whose top-k holds it "
        "have that true label",
    )
    oracle_min_support: int = _f(3, "simulated: a word whose top-k holds fewer pool texts is rejected")


@dataclass
class RulesConfig(ConfigBase):
    """A `prefalign rules discover` run."""

    SECTION = ""
    labels: list[str] = _list([], "the label names, in order")
    unlabelled: TextsConfig = field(default_factory=TextsConfig, metadata={"help": "D_u, the unlabelled pool"})
    clean: TextsConfig = field(default_factory=TextsConfig, metadata={"help": "D_l, the small clean labelled set"})
    dev: TextsConfig = field(default_factory=TextsConfig, metadata={"help": "D_v: tunes sigma, rule accuracy"})
    test: TextsConfig = field(default_factory=TextsConfig, metadata={"help": "optional: scored at the end"})
    seed_rules: list[SeedRuleConfig] = _list([], "the initial keyword / regex rules")
    prompt: PromptConfig = field(default_factory=PromptConfig, metadata={"help": "rule proposal"})
    match: MatchConfig = field(default_factory=MatchConfig, metadata={"help": "rule matching"})
    weak_model: WeakModelConfig = field(default_factory=WeakModelConfig, metadata={"help": "the weak model"})
    boost: BoostConfig = field(default_factory=BoostConfig, metadata={"help": "the rounds"})
    review: ReviewConfig = field(default_factory=ReviewConfig, metadata={"help": "the reviewers"})
    output_dir: str = _f("runs/rules", "rules.json, the round state, heads, records")
    cache_dir: str = _f("", "where embeddings and top-k words are cached (empty: <output_dir>/cache)")
    baselines: bool = _f(True, "also score rule matching, majority vote, Snorkel's LabelModel and clean-only")
    seed: int = _f(0, "seed of the heads and the simulated reviewers")

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["seed_rules"] = [r.to_dict() for r in self.seed_rules]
        return out

    def validate(self) -> None:
        if len(self.labels) < 2:
            raise ConfigError("set labels: a list of at least two label names")
        for name in ("unlabelled", "clean", "dev"):
            if not getattr(self, name).path:
                raise ConfigError(f"set {name}.path: a CSV, TSV or JSONL file of texts")
        for i, r in enumerate(self.seed_rules):
            if not r.pattern or r.label not in self.labels:
                raise ConfigError(f"seed_rules[{i}] needs a pattern and a label from labels {self.labels}")
        if MASK not in self.prompt.template or "{text}" not in self.prompt.template:
            raise ConfigError(f"prompt.template needs both {{text}} and {MASK}, e.g. '{{text}} News about {MASK}'")
        self.match.check_range("alpha", 0.0, 1.0)
        self.review.check_range("error_rate", 0.0, 0.5)
        self.boost.check_range("rounds", 0, None)


def rules_config_from_dict(data: dict) -> RulesConfig:
    """A RulesConfig from a plain mapping (YAML's), sections and seed rules typed."""
    return RulesConfig.from_dict(data, where="")


def load_rules_config(path: str | None, overrides: list[str] | None = None) -> RulesConfig:
    """The YAML file at ``path`` (or nothing), with ``--set key=value`` overrides applied."""
    data = read_yaml_mapping(path, "rules config", "labels/unlabelled/clean/dev/seed_rules/...") if path else {}
    return rules_config_from_dict(deep_merge(data, parse_overrides(overrides or [])))
