"""The baselines of DCPC Tables 1-2 (appendix A.1.2), trained through the same runner as DCPC.

From PEFT: LoRA, AdaLoRA, (IA)^3, prompt tuning. By hand (PEFT lacks them): full fine-tuning,
BitFit, Houlsby adapters, Learned-Adapter, LPT and PEDRO (forward hooks, see hooks.py). Training-free (bias-aware
PEFT paper, appendix D): the untuned model, CC, DC and CRISPR.
"""

from __future__ import annotations

from ...utils.lazy import lazy_exports

# Each name is imported on first use, so reading a config module (config.py) loads no model library.
_EXPORTS = {
    "AdaLoraBaseline": ".peft_methods",
    "AdaLoraBaselineConfig": ".config",
    "BaselineConfig": ".config",
    "BaselineModel": ".model",
    "BitFit": ".bitfit",
    "BitFitConfig": ".config",
    "ContextualCalibration": ".calibration",
    "ContextualCalibrationConfig": ".config",
    "Crispr": ".crispr",
    "CrisprConfig": ".config",
    "DomainCalibration": ".calibration",
    "DomainCalibrationConfig": ".config",
    "FullFineTuning": ".model",
    "FullFineTuningConfig": ".config",
    "HoulsbyAdapter": ".houlsby",
    "HoulsbyAdapterConfig": ".config",
    "IA3Baseline": ".peft_methods",
    "IA3BaselineConfig": ".config",
    "LatePromptTuning": ".lpt",
    "LatePromptTuningConfig": ".config",
    "LearnedAdapter": ".learned_adapter",
    "LearnedAdapterConfig": ".config",
    "LoraBaseline": ".peft_methods",
    "LoraBaselineConfig": ".config",
    "Pedro": ".pedro",
    "PedroConfig": ".config",
    "PromptTuningBaseline": ".peft_methods",
    "PromptTuningConfig": ".config",
    "ZeroShot": ".calibration",
    "ZeroShotConfig": ".config",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
