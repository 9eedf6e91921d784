"""The options every method's config shares (``MethodConfig``, ``HeadConfig``): plain dataclasses that import
neither torch nor transformers, so a config is parsed and validated before any model library loads."""

from __future__ import annotations

from dataclasses import dataclass

from ..utils.config_base import ConfigBase
from ..utils.config_base import option as _f

HEAD_POOLINGS = ("mean", "first", "pooler")


@dataclass
class MethodConfig(ConfigBase):
    """Options every method has: its registered name (set by the registry; see ``prefalign methods``)."""

    SECTION = "method"
    name: str = _f("", "the method's registered name (prefalign methods lists them)")
    annotator_conditioning: str | None = _f(
        None,
        "with data.target: annotators, predict each annotator: 'heads' (one output head per annotator, "
        "Davani et al. 2022), 'embedding' (an annotator embedding added to the pooled state, Deng et al. 2023) "
        "or 'prefix' (prefix methods: a low-rank per-annotator offset to the prefix); see docs/annotations.md",
        choices=("heads", "embedding", "prefix"),
    )
    annotator_rank: int = _f(8, "annotator_conditioning=prefix: rank r of each annotator's prefix offset u_a V")


@dataclass
class HeadConfig(MethodConfig):
    """Options of methods that read the backbone through a trainable encoder head."""

    head_dropout: float = _f(0.1, "dropout before the encoder classification head")
    head_pooling: str = _f(
        "mean",
        "encoder head input: 'mean' of real tokens (what MiniLM was trained for), "
        "'first' token, or the frozen BERT 'pooler' (what BertForSequenceClassification uses)",
        choices=HEAD_POOLINGS,
    )

    def validate(self) -> None:
        self.check_range("head_dropout", 0.0, 0.99)
