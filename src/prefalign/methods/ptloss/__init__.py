"""PTLoss (thesis chapter 4): distillation from a biased teacher with the perturbed KL loss of eq. 4.7,
its proxy teacher and Algorithm 2's coefficient search, and the distillation baselines of section 4.6.2."""

from __future__ import annotations

from ...utils.lazy import lazy_exports

# Each name is imported on first use, so reading a config module (config.py) loads no model library.
_EXPORTS = {
    "LOSSES": ".config",
    "PTLossConfig": ".config",
    "PTLossDistill": ".model",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
