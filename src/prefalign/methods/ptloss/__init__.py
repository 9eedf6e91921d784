"""PTLoss (thesis chapter 4): distillation from a biased teacher with the perturbed KL loss of eq. 4.7,
its proxy teacher and Algorithm 2's coefficient search, and the distillation baselines of section 4.6.2."""

from .config import LOSSES, PTLossConfig
from .model import PTLossDistill

__all__ = ["LOSSES", "PTLossConfig", "PTLossDistill"]
