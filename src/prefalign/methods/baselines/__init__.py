"""The baselines of DCPC Tables 1-2 (appendix A.1.2), trained through the same runner as DCPC.

From PEFT: LoRA, AdaLoRA, (IA)^3, prompt tuning. By hand (PEFT lacks them): full fine-tuning,
BitFit, Houlsby adapters, LPT and PEDRO (forward hooks, see hooks.py). Training-free (bias-aware
PEFT paper, appendix D): the untuned model, CC, DC and CRISPR.
"""

from .config import (
    AdaLoraBaselineConfig,
    BaselineConfig,
    BitFitConfig,
    FullFineTuningConfig,
    HoulsbyAdapterConfig,
    IA3BaselineConfig,
    LatePromptTuningConfig,
    LoraBaselineConfig,
    PedroConfig,
    PromptTuningConfig,
)
from .bitfit import BitFit
from .calibration import (
    ContextualCalibration,
    ContextualCalibrationConfig,
    DomainCalibration,
    DomainCalibrationConfig,
    ZeroShotConfig,
)
from .calibration import Calibrated as ZeroShot
from .crispr import Crispr, CrisprConfig
from .houlsby import HoulsbyAdapter
from .lpt import LatePromptTuning
from .model import BaselineModel, FullFineTuning
from .pedro import Pedro
from .peft_methods import AdaLoraBaseline, IA3Baseline, LoraBaseline, PromptTuningBaseline

BASELINES = {
    "full-ft": (FullFineTuningConfig, FullFineTuning),
    "lora": (LoraBaselineConfig, LoraBaseline),
    "adalora": (AdaLoraBaselineConfig, AdaLoraBaseline),
    "ia3": (IA3BaselineConfig, IA3Baseline),
    "prompt-tuning": (PromptTuningConfig, PromptTuningBaseline),
    "bitfit": (BitFitConfig, BitFit),
    "houlsby": (HoulsbyAdapterConfig, HoulsbyAdapter),
    "lpt": (LatePromptTuningConfig, LatePromptTuning),
    "pedro": (PedroConfig, Pedro),
    # Training-free baselines of the bias-aware PEFT paper (appendix D): evaluated, never stepped.
    "zero-shot": (ZeroShotConfig, ZeroShot),
    "cc": (ContextualCalibrationConfig, ContextualCalibration),
    "dc": (DomainCalibrationConfig, DomainCalibration),
    "crispr": (CrisprConfig, Crispr),
}

__all__ = ["BASELINES", "BaselineConfig", "BaselineModel"]
