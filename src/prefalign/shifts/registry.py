"""The preference shifts by name, so configs, `prefalign shift` and `prefalign compare` can pick them."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from ..data.examples import TaskDataset
from ..errors import ConfigError
from ..utils.config_base import ConfigBase, option
from .alpaca_is import instruction_shift
from .annotator_group import annotator_group_shift
from .boolq_ps import preference_shift
from .copa_bs import bias_shift
from .record_r import rephrase_shift
from .rte_e import entailment_shift
from .sst2_p import polarity_shift


@dataclass(frozen=True)
class ShiftDefinition:
    """A shift builder ``fn(dataset, *, seed, **params) -> (shifted, card)`` and what it applies to."""

    name: str
    fn: Callable[..., tuple[TaskDataset, dict]]
    description: str


SHIFTS: dict[str, ShiftDefinition] = {}


def register_shift(name: str, fn: Callable[..., tuple[TaskDataset, dict]], description: str) -> None:
    SHIFTS[name] = ShiftDefinition(name, fn, description)


register_shift("sst2-p", polarity_shift, "SST-2-PolarityShift: soft labels for a share of each class (eq. 16-18)")
register_shift("rte-e", entailment_shift, "RTE-EntailmentShift: bias entailment labels to contradiction (eq. 19-21)")
register_shift("copa-bs", bias_shift, "COPA-BiasShift: bias answers towards the human-related option (eq. 14-15)")
register_shift(
    "boolq-ps", preference_shift, "BoolQ-PreferenceShift: yes/no answers rewritten as casual, formal or expressive text"
)
register_shift("record-r", rephrase_shift, "ReCoRD-Rephrase: gold answers rewritten three ways, same meaning")
register_shift(
    "alpaca-is", instruction_shift, "Alpaca-InstructionShift: responses rewritten as terse, elaborate or conversational"
)
register_shift(
    "annotator-group",
    annotator_group_shift,
    "controlled shift: an annotator group flips a share of a feature-defined subset (short reviews, or ones "
    "about the acting) to its preferred label; hard labels, not in the paper (issue 15)",
)


def shift_parameters(name: str) -> dict[str, object]:
    """The keyword parameters of shift ``name`` and their defaults."""
    sig = inspect.signature(get_shift(name).fn)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}


def get_shift(name: str) -> ShiftDefinition:
    if name not in SHIFTS:
        raise ConfigError(f"unknown shift '{name}'; choose one of {', '.join(sorted(SHIFTS))}")
    return SHIFTS[name]


def apply_shift(name: str, dataset: TaskDataset, params: dict | None = None, seed: int = 0) -> tuple[TaskDataset, dict]:
    """Run shift ``name`` on ``dataset``; unknown parameters get a ConfigError listing the known ones."""
    params = dict(params or {})
    known = shift_parameters(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"shift '{name}' has no parameter {', '.join(unknown)}; it takes {', '.join(sorted(known))}")
    params.setdefault("seed", seed)
    return get_shift(name).fn(dataset, **params)


@dataclass
class ShiftConfig(ConfigBase):
    """``data.shift``: a registered shift's name and its parameters, written flat in YAML
    (``{name: sst2-p, rate: 0.3}``); unknown names and parameters fail when the config is loaded."""

    SECTION = "data.shift"
    name: str = option("", "a registered shift (prefalign shift --list)")
    params: dict = field(default_factory=dict, metadata={"help": "the shift's parameters (prefalign shift --list)"})

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("data.shift needs a name, for example {name: sst2-p}")
        known = shift_parameters(self.name)  # a ConfigError lists the shifts if the name is unknown
        unknown = sorted(set(self.params) - set(known))
        if unknown:
            raise ConfigError(
                f"shift '{self.name}' has no parameter {', '.join(unknown)}; it takes {', '.join(sorted(known))}"
            )

    @classmethod
    def from_dict(cls, data: dict, where: str = "data.shift") -> ShiftConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping such as {{name: sst2-p}}, got {data!r}")
        params = {k: v for k, v in data.items() if k != "name"}
        return cls(name=data.get("name") or "", params=params)

    def to_dict(self) -> dict:
        return {"name": self.name, **self.params}

    def apply(self, dataset: TaskDataset, seed: int) -> tuple[TaskDataset, dict]:
        """The shifted dataset and its card; a ``seed`` parameter of the shift overrides ``seed``."""
        return apply_shift(self.name, dataset, self.params, seed=self.params.get("seed", seed))
