"""The baselines of DCPC Tables 1-2 (appendix A.1.2), trained through the same runner as DCPC.

From PEFT: LoRA, AdaLoRA, (IA)^3, prompt tuning. By hand (PEFT lacks them): full fine-tuning.
"""

from .config import (
    AdaLoraBaselineConfig,
    BaselineConfig,
    FullFineTuningConfig,
    IA3BaselineConfig,
    LoraBaselineConfig,
    PromptTuningConfig,
)
from .model import BaselineModel, FullFineTuning
from .peft_methods import AdaLoraBaseline, IA3Baseline, LoraBaseline, PromptTuningBaseline

BASELINES = {
    "full-ft": (FullFineTuningConfig, FullFineTuning),
    "lora": (LoraBaselineConfig, LoraBaseline),
    "adalora": (AdaLoraBaselineConfig, AdaLoraBaseline),
    "ia3": (IA3BaselineConfig, IA3Baseline),
    "prompt-tuning": (PromptTuningConfig, PromptTuningBaseline),
}

__all__ = ["BASELINES", "BaselineConfig", "BaselineModel"]
