"""Package ``__init__`` modules whose names are imported on first use (PEP 562).

A package that re-exports names from heavy modules (torch, transformers) would otherwise load them
for every command, ``prefalign --help`` included. ``lazy_exports`` gives such a package the module
``__getattr__`` and ``__dir__`` that import a name's module only when the name is first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]) -> tuple[Callable, Callable]:
    """(``__getattr__``, ``__dir__``) for ``package``: ``exports`` maps a public name to the module, relative
    to the package (".collator"), that defines it; a name read once is cached in ``namespace``."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
