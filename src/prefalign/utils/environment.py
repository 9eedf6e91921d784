"""What a result was measured with: library versions and the machine, recorded beside runs and benchmarks."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

import torch


def versions() -> dict[str, str]:
    """Library versions recorded beside every run."""
    out = {}
    for pkg in ("prefalign", "torch", "transformers", "peft", "accelerate", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def machine(device: str = "cpu") -> str:
    """'Linux-..., 2 CPU cores (CPU model name)', plus ', GPU <name>' when ``device`` is cuda."""
    text = f"{platform.platform()}, {os.cpu_count()} CPU cores"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
        text += f" ({model})"
    except (OSError, StopIteration):
        pass
    if device == "cuda":
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def hardware() -> str:
    """'2 CPU cores, 1 torch thread, no GPU' or the GPU's name: what a table's timings were measured on."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch thread(s), {gpu}"
