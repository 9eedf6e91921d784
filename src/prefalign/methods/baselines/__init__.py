"""The baselines of DCPC Tables 1-2 (appendix A.1.2), trained through the same runner as DCPC.

From PEFT: LoRA, AdaLoRA, (IA)^3, prompt tuning. By hand (PEFT lacks them): full fine-tuning,
BitFit, Houlsby adapters, LPT and PEDRO (forward hooks, see hooks.py).
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
}

__all__ = ["BASELINES", "BaselineConfig", "BaselineModel"]
