"""DCPC: Dynamic Cross-Layer Preference Correction (the whole method lives in this folder).

config.py  every hyperparameter and switch, with the paper section it comes from
losses.py  eq. 3-7 and 12 as batched pairwise tensor operations
pcm.py     the Preference Correction Module, eq. 9-11
model.py   prefixes + PCM on a frozen backbone, and the eq. 13 objective
"""

from __future__ import annotations

from ...utils.lazy import lazy_exports

# Each name is imported on first use, so reading a config module (config.py) loads no model library.
_EXPORTS = {
    "VARIANTS": ".model",
    "DCPCConfig": ".config",
    "DCPCModel": ".model",
    "PTuningV2": ".model",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
