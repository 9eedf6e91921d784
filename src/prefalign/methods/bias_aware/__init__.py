"""Bias-aware PEFT (the paper "Debiasing the Fine-Grained Classification Task in LLMs with Bias-Aware
PEFT"): target layer by interchange ablation, o_proj/down_proj of that layer plus a refine vector, and
the bias balance losses.

config.py           options, with the paper section each comes from
layer_selection.py  interchange ablation (appendix A, eq. 5-6) and its curve
losses.py           H^C / H^N, L_bal1, L_bal2, the total loss (eq. 1-4)
model.py            the trained modules, the refine hook, the forward
"""

from .config import BiasAwareConfig
from .layer_selection import LayerCurve, interchange_ablation, write_curve
from .losses import balance_losses, contain_means, total_loss
from .model import BiasAwareModel

__all__ = [
    "BiasAwareConfig",
    "BiasAwareModel",
    "LayerCurve",
    "balance_losses",
    "contain_means",
    "interchange_ablation",
    "total_loss",
    "write_curve",
]
