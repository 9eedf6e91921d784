"""prefalign: fine-tune language models on labels people disagree about.

The public API, small on purpose:

* ``load_config`` / ``ExperimentConfig`` — the YAML experiment config
* ``Adapter`` — a trained adapter: ``Adapter.from_pretrained(path).predict([...])``
* ``train``, ``evaluate``, ``predict_proba``, ``load_for_inference`` — run a method
* ``load_backbone`` — a model from a built-in alias, local folder or hub id
* ``build_method``, ``save_method``, ``load_method`` — methods by name (dcpc, ptuning-v2, ablations)
* ``DCPCConfig``, ``DCPCModel`` — the DCPC method itself
* ``polarity_shift`` — the SST-2-P preference shift
"""

__version__ = "0.1.0"

from .errors import UserError
from .inference import Adapter, evaluate, load_for_inference, predict_proba
from .methods import build_method, load_method, save_method
from .methods.dcpc import DCPCConfig, DCPCModel
from .models import load_backbone
from .shifts import polarity_shift
from .training.config import ExperimentConfig, load_config
from .training.run import train

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
