"""The baselines of DCPC Tables 1-2 (appendix A.1.2), trained through the same runner as DCPC.

From PEFT: LoRA, AdaLoRA, (IA)^3, prompt tuning. By hand (PEFT lacks them): full fine-tuning,
BitFit, Houlsby adapters, Learned-Adapter, LPT and PEDRO (forward hooks, see hooks.py). Training-free (bias-aware
PEFT paper, appendix D): the untuned model, CC, DC and CRISPR.
"""

from .bitfit import BitFit
from .calibration import Calibrated as ZeroShot
from .calibration import (
    ContextualCalibration,
    ContextualCalibrationConfig,
    DomainCalibration,
    DomainCalibrationConfig,
    ZeroShotConfig,
)
from .config import (
    AdaLoraBaselineConfig,
    BaselineConfig,
    BitFitConfig,
    FullFineTuningConfig,
    HoulsbyAdapterConfig,
    IA3BaselineConfig,
    LatePromptTuningConfig,
    LearnedAdapterConfig,
    LoraBaselineConfig,
    PedroConfig,
    PromptTuningConfig,
)
from .crispr import Crispr, CrisprConfig
from .houlsby import HoulsbyAdapter
from .learned_adapter import LearnedAdapter
from .lpt import LatePromptTuning
from .model import BaselineModel, FullFineTuning
from .pedro import Pedro
from .peft_methods import AdaLoraBaseline, IA3Baseline, LoraBaseline, PromptTuningBaseline

# Trained through the runner like DCPC; the last four are training-free (bias-aware PEFT paper, appendix D):
# evaluated, never stepped.
BASELINES = (
    FullFineTuning,
    LoraBaseline,
    AdaLoraBaseline,
    IA3Baseline,
    PromptTuningBaseline,
    BitFit,
    HoulsbyAdapter,
    LearnedAdapter,
    LatePromptTuning,
    Pedro,
    ZeroShot,
    ContextualCalibration,
    DomainCalibration,
    Crispr,
)

__all__ = [
    "BASELINES",
    "AdaLoraBaseline",
    "AdaLoraBaselineConfig",
    "BaselineConfig",
    "BaselineModel",
    "BitFit",
    "BitFitConfig",
    "ContextualCalibration",
    "ContextualCalibrationConfig",
    "Crispr",
    "CrisprConfig",
    "DomainCalibration",
    "DomainCalibrationConfig",
    "FullFineTuning",
    "FullFineTuningConfig",
    "HoulsbyAdapter",
    "HoulsbyAdapterConfig",
    "IA3Baseline",
    "IA3BaselineConfig",
    "LatePromptTuning",
    "LatePromptTuningConfig",
    "LearnedAdapter",
    "LearnedAdapterConfig",
    "LoraBaseline",
    "LoraBaselineConfig",
    "Pedro",
    "PedroConfig",
    "PromptTuningBaseline",
    "PromptTuningConfig",
    "ZeroShot",
    "ZeroShotConfig",
]
