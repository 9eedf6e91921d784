"""Where the benchmarks find the project's shared data (tests and benchmarks only, never the product).

``../shared/data`` beside the checkout; a git worktree one level further down (``wt/NAME``) finds the same
folder further up. Scripts in this folder import it as ``from shared_data import SHARED_DATA``.
"""

from __future__ import annotations

from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]

SHARED_DATA = next(
    (p / "shared" / "data" for p in _CHECKOUT.parents if (p / "shared" / "data").is_dir()),
    _CHECKOUT.parent / "shared" / "data",
)
