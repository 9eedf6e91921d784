"""L-Tuning (Kowsher et al.): label-token prefix and prompt tuning in an NLI framing.

config.py  the options of ltuning-prefix and ltuning-prompt, with the paper sections they come from
model.py   the cached frozen pass over label texts, F/Z (prefix) and G (prompt), NLI pairs, argmax prediction
"""

from .config import LTuningConfig, LTuningPrefixConfig, LTuningPromptConfig
from .model import LTuningModel, LTuningPrefix, LTuningPrompt, PairScorer, parameter_count

__all__ = [
    "LTuningConfig",
    "LTuningModel",
    "LTuningPrefix",
    "LTuningPrefixConfig",
    "LTuningPrompt",
    "LTuningPromptConfig",
    "PairScorer",
    "parameter_count",
]
