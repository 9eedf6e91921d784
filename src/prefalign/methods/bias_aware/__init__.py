"""Bias-aware PEFT (the paper "Debiasing the Fine-Grained Classification Task in LLMs with Bias-Aware
PEFT"): target layer by interchange ablation, o_proj/down_proj of that layer plus a refine vector, and
the bias balance losses.

config.py           options, with the paper section each comes from
layer_selection.py  interchange ablation (appendix A, eq. 5-6) and its curve
losses.py           H^C / H^N, L_bal1, L_bal2, the total loss (eq. 1-4)
model.py            the trained modules, the refine hook, the forward
"""

from __future__ import annotations

from ...utils.lazy import lazy_exports

# Each name is imported on first use, so reading a config module (config.py) loads no model library.
_EXPORTS = {
    "BiasAwareConfig": ".config",
    "BiasAwareModel": ".model",
    "LayerCurve": ".layer_selection",
    "balance_losses": ".losses",
    "contain_means": ".losses",
    "interchange_ablation": ".layer_selection",
    "total_loss": ".losses",
    "write_curve": ".layer_selection",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
