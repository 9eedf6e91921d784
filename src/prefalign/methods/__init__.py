"""Method registry: build a method by name on a backbone, save it, load it back."""

from .registry import METHODS, build_method, load_method, method_config, save_method

__all__ = ["METHODS", "build_method", "load_method", "method_config", "save_method"]
