"""L-Tuning (Kowsher et al.): label-token prefix and prompt tuning in an NLI framing.

config.py  the options of ltuning-prefix and ltuning-prompt, with the paper sections they come from
model.py   the cached frozen pass over label texts, F/Z (prefix) and G (prompt), NLI pairs, argmax prediction
"""

from .config import VARIANTS, LTuningConfig, LTuningPrefixConfig, LTuningPromptConfig
from .model import LTuningModel, PairScorer, parameter_count

LTUNING_METHODS = {name: (config_cls, LTuningModel) for name, config_cls in VARIANTS.items()}

__all__ = ["LTUNING_METHODS", "LTuningConfig", "LTuningModel", "LTuningPrefixConfig", "LTuningPromptConfig",
           "PairScorer", "parameter_count"]
