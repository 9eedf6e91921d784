"""L-Tuning (Kowsher et al.): label-token prefix and prompt tuning in an NLI framing.

config.py  the options of ltuning-prefix and ltuning-prompt, with the paper sections they come from
model.py   the cached frozen pass over label texts, F/Z (prefix) and G (prompt), NLI pairs, argmax prediction
"""

from __future__ import annotations

from ...utils.lazy import lazy_exports

# Each name is imported on first use, so reading a config module (config.py) loads no model library.
_EXPORTS = {
    "LTuningConfig": ".config",
    "LTuningModel": ".model",
    "LTuningPrefix": ".model",
    "LTuningPrefixConfig": ".config",
    "LTuningPrompt": ".model",
    "LTuningPromptConfig": ".config",
    "PairScorer": ".model",
    "parameter_count": ".model",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
