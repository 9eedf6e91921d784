"""`prefalign rules`: PRBoost (thesis ch. 2): labelling rules discovered by prompting on the clean set's large
errors, checked by reviewers, matched softly, and boosted weak models ensembled over rounds."""

from .config import RulesConfig, load_rules_config, rules_config_from_dict
from .core import (
    ABSTAIN,
    boosting_step,
    ensemble,
    fleiss_kappa,
    majority_vote,
    matching_scores,
    model_weight,
    self_training_targets,
    soft_match,
    top_hard,
    update_weights,
    weighted_error,
)
from .review import export_candidates, import_decisions, simulated_review, terminal_review
from .run import DiscoverResult, apply_rules, discover
from .store import load_rules, save_rules

__all__ = [
    "ABSTAIN",
    "DiscoverResult",
    "RulesConfig",
    "apply_rules",
    "boosting_step",
    "discover",
    "ensemble",
    "export_candidates",
    "fleiss_kappa",
    "import_decisions",
    "load_rules",
    "load_rules_config",
    "majority_vote",
    "matching_scores",
    "model_weight",
    "rules_config_from_dict",
    "save_rules",
    "self_training_targets",
    "simulated_review",
    "soft_match",
    "terminal_review",
    "top_hard",
    "update_weights",
    "weighted_error",
]
