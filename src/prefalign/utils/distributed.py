"""Tensors across DDP processes, for losses over pairs of examples (DCPC's ``pair_scope: global``)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` concatenated along dim 0 in rank order; the gradient flows back to each
    process's own rows (torch.distributed.nn's all_gather, which sums the gradients of all ranks).

    Under DDP each rank then holds the same loss over the global pairs; the all_gather backward sums
    the W ranks' gradients and DDP divides by W, so the parameters get that loss's exact gradient.
    Batches of unequal size (a last, short batch) are padded for the exchange and trimmed after.
    """
    n = world_size()
    if n == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    rows = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(rows) for _ in range(n)]
    dist.all_gather(sizes, rows)
    sizes = [int(s) for s in sizes]
    pad = max(sizes) - x.shape[0]
    if pad:
        x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])])
    parts = all_gather(x)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])
