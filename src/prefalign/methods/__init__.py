"""Methods: the contract (base.py), the catalog of names and configs (catalog.py), the registry of classes
(registry.py), and one folder per method.

Each name is imported on first use: a config is parsed and validated through ``catalog`` and the config
modules alone, without torch or transformers; the method classes load when a method is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "METHODS": ".registry",
    "HeadConfig": ".options",
    "Method": ".base",
    "MethodConfig": ".options",
    "MethodOutput": ".base",
    "MethodSpec": ".catalog",
    "build_method": ".registry",
    "load_method": ".registry",
    "method_class": ".registry",
    "method_config": ".catalog",
    "method_spec": ".catalog",
    "register_method": ".registry",
    "resolve_method": ".catalog",
    "save_method": ".registry",
    "soft_cross_entropy": ".base",
}
__all__ = [
    "METHODS",
    "HeadConfig",
    "Method",
    "MethodConfig",
    "MethodOutput",
    "MethodSpec",
    "build_method",
    "load_method",
    "method_class",
    "method_config",
    "method_spec",
    "register_method",
    "resolve_method",
    "save_method",
    "soft_cross_entropy",
]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on demand
    from .base import Method, MethodOutput, soft_cross_entropy
    from .catalog import MethodSpec, method_config, method_spec, resolve_method
    from .options import HeadConfig, MethodConfig
    from .registry import METHODS, build_method, load_method, method_class, register_method, save_method
