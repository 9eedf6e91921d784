"""`prefalign reward`: reward models on preference data from several sources, with DORM's learned
per-example weights (thesis ch. 3: prior weights from MC dropout, first-order bilevel optimisation)."""

from .bilevel import Bilevel, w_gradient
from .config import DormConfig, RewardConfig, RewardModelConfig, SourceConfig, load_reward_config
from .data import PreferenceExample, read_source, read_sources
from .losses import bradley_terry, example_losses, masked_regression, weighted_loss
from .model import RewardModel, predictions
from .prior import mc_dropout_statistics, mc_statistics, prior_weights, standardise
from .run import RewardResult, evaluate, load_reward_model, score_pairs, train_reward

__all__ = [
    "Bilevel",
    "DormConfig",
    "PreferenceExample",
    "RewardConfig",
    "RewardModel",
    "RewardModelConfig",
    "RewardResult",
    "SourceConfig",
    "bradley_terry",
    "evaluate",
    "example_losses",
    "load_reward_config",
    "load_reward_model",
    "masked_regression",
    "mc_dropout_statistics",
    "mc_statistics",
    "predictions",
    "prior_weights",
    "read_source",
    "read_sources",
    "score_pairs",
    "standardise",
    "train_reward",
    "w_gradient",
    "weighted_loss",
]
