"""Layer-wise analyses: preference drift (DCPC section 3.1), label bias (bias-aware PEFT section 3),
and the HTML run report.

``layers`` reads every layer of a base model or a checkpoint (prefixes in place); ``drift`` and
``bias`` compute the papers' per-layer quantities from it; ``plots`` draws them; ``report``
collects a run directory into one offline HTML page.
"""

from .layers import LayerReadout, Subject, read_layers

__all__ = ["LayerReadout", "Subject", "read_layers"]
