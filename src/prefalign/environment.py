"""TEMPORARY: replaced by h-bench's environment.py at merge."""

from __future__ import annotations


def versions() -> dict[str, str]:
    """Library versions recorded beside every run."""
    import importlib.metadata as md

    out = {}
    for pkg in ("prefalign", "torch", "transformers", "peft", "accelerate", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
