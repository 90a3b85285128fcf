"""Small torch.distributed helpers used by methods that keep global state.

Every helper is a no-op (single-process semantics) when ``torch.distributed`` is not
available or not initialised, so methods can call them unconditionally.

Collective calls must be made by EVERY rank in the same order: a method must call
:func:`all_reduce_sum` on every step whether or not its local batch holds anything to
reduce (e.g. ERDA reduces its class sums/counts even when a rank saw no labelled point),
otherwise the ranks dead-lock.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of ranks of the default process group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    """Rank of this process in the default process group (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks IN PLACE and return it (unchanged when not distributed).

    Args:
        tensor: any dense tensor; with the NCCL backend it must live on the rank's CUDA
            device, with gloo on CPU (or CUDA for float types). Same shape/dtype on all ranks.
    Returns:
        The same tensor object, now holding the element-wise sum over ranks.
    """
    if is_distributed() and get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
