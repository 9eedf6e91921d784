"""LoRC: low-rank KV cache compression with a progressive, condition-number-driven schedule (thesis ch. 5).

``compress_model`` swaps each compressed layer's attention for one that caches d_c-wide latents
(``LoRCCache`` / ``LatentLayer``); ``progressive_schedule`` and ``uniform_schedule`` choose the ranks;
``save_compressed`` / ``load_compressed`` write and read a compressed-model folder.
"""

from .cache import LatentLayer, LoRCCache, cache_nbytes
from .compress import compress_model, compressed_layers, truncate_model
from .io import apply_compressed, load_compressed, save_compressed
from .profile import sensitivity_profile
from .schedule import Schedule, progressive_schedule, uniform_schedule

__all__ = [
    "LatentLayer",
    "LoRCCache",
    "Schedule",
    "apply_compressed",
    "cache_nbytes",
    "compress_model",
    "compressed_layers",
    "load_compressed",
    "progressive_schedule",
    "save_compressed",
    "sensitivity_profile",
    "truncate_model",
    "uniform_schedule",
]
