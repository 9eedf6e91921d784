"""Methods: the contract (base.py), the registry of names, and one folder per method."""

from .base import HeadConfig, Method, MethodConfig, MethodOutput, soft_cross_entropy
from .registry import (
    METHODS,
    build_method,
    load_method,
    method_class,
    method_config,
    register_method,
    resolve_method,
    save_method,
)

__all__ = [
    "METHODS",
    "HeadConfig",
    "Method",
    "MethodConfig",
    "MethodOutput",
    "build_method",
    "load_method",
    "method_class",
    "method_config",
    "register_method",
    "resolve_method",
    "save_method",
    "soft_cross_entropy",
]
