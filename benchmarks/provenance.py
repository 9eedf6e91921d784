"""What every benchmark record says about where it came from: the command, the machine, torch's thread count
and the library versions. Scripts in this folder import it as ``from provenance import provenance``."""

from __future__ import annotations

import platform
import sys


def provenance(script: str, argv: list[str] | None) -> dict:
    """``command`` (``python benchmarks/<script> ARGS``), ``machine``, ``torch_threads`` and ``versions``."""
    import torch

    from prefalign.utils.environment import versions

    args = sys.argv[1:] if argv is None else argv
    return {
        "command": f"python benchmarks/{script} " + " ".join(args),
        "machine": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
    }
