"""prefalign: fine-tune language models on labels people disagree about.

The public API, small on purpose:

* ``load_config`` / ``ExperimentConfig`` — the YAML experiment config
* ``Adapter`` — a trained adapter: ``Adapter.from_pretrained(path).predict([...])``
* ``train``, ``evaluate``, ``predict_proba``, ``load_for_inference`` — run a method
* ``load_backbone`` — a model from a built-in alias, local folder or hub id
* ``build_method``, ``save_method``, ``load_method`` — methods by name (dcpc, ptuning-v2, ablations)
* ``DCPCConfig``, ``DCPCModel`` — the DCPC method itself
* ``polarity_shift`` — the SST-2-P preference shift

Each name is imported on first use (PEP 562), so ``import prefalign`` and the commands that do not
need a model (``prefalign --help``, ``--version``, ``tasks``, ``shift --list``) start without
loading torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UserError
from .utils.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Adapter": ".inference",
    "DCPCConfig": ".methods.dcpc",
    "DCPCModel": ".methods.dcpc",
    "ExperimentConfig": ".training.config",
    "build_method": ".methods",
    "evaluate": ".inference",
    "load_backbone": ".models",
    "load_config": ".training.config",
    "load_for_inference": ".inference",
    "load_method": ".methods",
    "polarity_shift": ".shifts",
    "predict_proba": ".inference",
    "save_method": ".methods",
    "train": ".training.run",
}
__all__ = [
    "Adapter",
    "DCPCConfig",
    "DCPCModel",
    "ExperimentConfig",
    "UserError",
    "build_method",
    "evaluate",
    "load_backbone",
    "load_config",
    "load_for_inference",
    "load_method",
    "polarity_shift",
    "predict_proba",
    "save_method",
    "train",
]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:  # type checkers and IDEs see the names; at run time __getattr__ imports them on demand
    from .inference import Adapter, evaluate, load_for_inference, predict_proba
    from .methods import build_method, load_method, save_method
    from .methods.dcpc import DCPCConfig, DCPCModel
    from .models import load_backbone
    from .shifts import polarity_shift
    from .training.config import ExperimentConfig, load_config
    from .training.run import train
