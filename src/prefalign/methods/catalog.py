"""Method names -> their config classes, without loading a method: what parsing and validating a config needs.

A config's ``method:`` section is checked here (unknown names, unknown options, wrong types, ranges) with the
config dataclasses alone (each method folder's ``config.py`` imports neither torch nor transformers), so a
config error answers before any model library loads. The method classes themselves (``nn.Module``
subclasses) are imported only when a method is built: ``MethodSpec.load`` and ``registry.METHODS``.

Each built-in entry restates its class's ``config_class``, ``config_defaults``, ``feeds_prefix`` and
``changes_backbone``; tests/test_method_catalog.py checks that every entry agrees with its class.
A method registered at run time (``registry.register_method``) is added here from its class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ..errors import ConfigError
from .baselines import config as baselines
from .bias_aware.config import BiasAwareConfig
from .dcpc.config import DCPCConfig
from .ltuning.config import LTuningPrefixConfig, LTuningPromptConfig
from .options import MethodConfig
from .ptloss.config import PTLossConfig


@dataclass(frozen=True)
class MethodSpec:
    """What is known of a method before its class loads: its config and how the runner must treat it."""

    name: str
    config_class: type[MethodConfig]
    config_defaults: dict = field(default_factory=dict)  # a named variant's defaults (DCPC's ablations)
    feeds_prefix: bool = False  # keys/values go into the attention cache
    changes_backbone: bool = True  # backbone weights change in place: built on a copy
    target: str = ""  # "module:Class" under prefalign.methods, for a built-in method
    method_class: type | None = field(default=None, compare=False)  # a class registered at run time

    def load(self) -> type:
        """The method class (imports its module, and with it torch, on first use)."""
        if self.method_class is not None:
            return self.method_class
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module, __package__), name)

    def make_config(self, params: dict | None = None) -> MethodConfig:
        """This method's config: the variant's defaults, then ``params``; unknown keys raise ConfigError."""
        params = {k: v for k, v in (params or {}).items() if k != "name"}
        return self.config_class.from_dict({**self.config_defaults, **params, "name": self.name}, where="method")


def spec_of(cls: type) -> MethodSpec:
    """The spec of a method class registered at run time."""
    return MethodSpec(
        cls.name,
        cls.config_class,
        dict(cls.config_defaults),
        cls.feeds_prefix,
        cls.changes_backbone,
        method_class=cls,
    )


_NO = {"feeds_prefix": False, "changes_backbone": False}  # training-free: nothing in the backbone changes
_PREFIX = {"feeds_prefix": True, "changes_backbone": False}
_BUILTIN = [
    MethodSpec("dcpc", DCPCConfig, {}, **_PREFIX, target=".dcpc.model:DCPCModel"),
    MethodSpec("dcpc-no-clpa", DCPCConfig, {"use_alignment": False}, **_PREFIX, target=".dcpc.model:DCPCNoCLPA"),
    MethodSpec("dcpc-no-pcm", DCPCConfig, {"use_pcm": False}, **_PREFIX, target=".dcpc.model:DCPCNoPCM"),
    MethodSpec(
        "dcpc-no-ambiguity", DCPCConfig, {"use_ambiguity": False}, **_PREFIX, target=".dcpc.model:DCPCNoAmbiguity"
    ),
    MethodSpec(
        "dcpc-no-clpa-pcm",
        DCPCConfig,
        {"use_alignment": False, "use_pcm": False},
        **_PREFIX,
        target=".dcpc.model:DCPCNoCLPAPCM",
    ),
    MethodSpec(
        "ptuning-v2",
        DCPCConfig,
        {"use_ambiguity": False, "use_alignment": False, "use_pcm": False},
        **_PREFIX,
        target=".dcpc.model:PTuningV2",
    ),
    MethodSpec("full-ft", baselines.FullFineTuningConfig, target=".baselines.model:FullFineTuning"),
    MethodSpec("lora", baselines.LoraBaselineConfig, target=".baselines.peft_methods:LoraBaseline"),
    MethodSpec("adalora", baselines.AdaLoraBaselineConfig, target=".baselines.peft_methods:AdaLoraBaseline"),
    MethodSpec("ia3", baselines.IA3BaselineConfig, target=".baselines.peft_methods:IA3Baseline"),
    MethodSpec("prompt-tuning", baselines.PromptTuningConfig, target=".baselines.peft_methods:PromptTuningBaseline"),
    MethodSpec("bitfit", baselines.BitFitConfig, target=".baselines.bitfit:BitFit"),
    MethodSpec("houlsby", baselines.HoulsbyAdapterConfig, target=".baselines.houlsby:HoulsbyAdapter"),
    MethodSpec("learned-adapter", baselines.LearnedAdapterConfig, target=".baselines.learned_adapter:LearnedAdapter"),
    MethodSpec("lpt", baselines.LatePromptTuningConfig, target=".baselines.lpt:LatePromptTuning"),
    MethodSpec("pedro", baselines.PedroConfig, target=".baselines.pedro:Pedro"),
    MethodSpec("zero-shot", baselines.ZeroShotConfig, **_NO, target=".baselines.calibration:Calibrated"),
    MethodSpec(
        "cc", baselines.ContextualCalibrationConfig, **_NO, target=".baselines.calibration:ContextualCalibration"
    ),
    MethodSpec("dc", baselines.DomainCalibrationConfig, **_NO, target=".baselines.calibration:DomainCalibration"),
    MethodSpec("crispr", baselines.CrisprConfig, target=".baselines.crispr:Crispr"),
    MethodSpec("ltuning-prefix", LTuningPrefixConfig, **_PREFIX, target=".ltuning.model:LTuningPrefix"),
    MethodSpec(
        "ltuning-prompt",
        LTuningPromptConfig,
        feeds_prefix=False,
        changes_backbone=False,
        target=".ltuning.model:LTuningPrompt",
    ),
    MethodSpec("bias-aware", BiasAwareConfig, target=".bias_aware.model:BiasAwareModel"),
    MethodSpec("ptloss", PTLossConfig, target=".ptloss.model:PTLossDistill"),
]

# Every method by name, built-ins first (the order `prefalign methods` lists them in).
SPECS: dict[str, MethodSpec] = {spec.name: spec for spec in _BUILTIN}


def method_spec(name: str) -> MethodSpec:
    """The method registered as ``name``; a ConfigError lists the known ones."""
    if not isinstance(name, str) or name not in SPECS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(SPECS)}")
    return SPECS[name]


def method_config(name: str, params: dict | None = None) -> MethodConfig:
    """The config of method ``name``: its variant's defaults with ``params`` over them."""
    return method_spec(name).make_config(params)


def resolve_method(section: dict | str | MethodConfig) -> MethodConfig:
    """The ``method`` section of a config (``{name: ..., <options>}``, a bare name, or a config) as its dataclass."""
    if isinstance(section, MethodConfig):
        return section
    if isinstance(section, str):
        section = {"name": section}
    if not isinstance(section, dict):
        raise ConfigError(f"method must be a mapping with a name, for example {{name: dcpc}}, not {section!r}")
    if not section.get("name"):
        raise ConfigError("method.name is required (for example dcpc or ptuning-v2)")
    return method_config(section["name"], section)
