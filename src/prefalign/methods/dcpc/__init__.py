"""DCPC: Dynamic Cross-Layer Preference Correction (the whole method lives in this folder).

config.py  every hyperparameter and switch, with the paper section it comes from
losses.py  eq. 3-7 and 12 as batched pairwise tensor operations
pcm.py     the Preference Correction Module, eq. 9-11
model.py   prefixes + PCM on a frozen backbone, and the eq. 13 objective
"""

from .config import DCPCConfig
from .model import VARIANTS, DCPCModel, PTuningV2

__all__ = ["VARIANTS", "DCPCConfig", "DCPCModel", "PTuningV2"]
