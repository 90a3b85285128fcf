"""torch.distributed helpers for the engine, the methods and the metrics (one place).

``torchrun --nproc_per_node N -m pcseg train CONFIG`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them
(gloo on CPU, nccl on CUDA). Without them everything runs in a single process and every
helper here is a no-op, so callers can use them unconditionally.

Collective calls must be made by EVERY rank in the same order: a method must call
:func:`all_reduce_sum` on every step whether or not its local batch holds anything to
reduce (e.g. ERDA reduces its class sums/counts even when a rank saw no labelled point),
otherwise the ranks dead-lock.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


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


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate the (n_r, C) tensors of every rank along dim 0, in rank order.

    Row counts may differ between ranks (padded internally). Returns ``x`` itself when not
    distributed. Every rank must call it (a collective).
    """
    if not is_distributed() or get_world_size() == 1:
        return x
    world = get_world_size()
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.int64)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes_i = [int(s.item()) for s in sizes]
    max_n = max(sizes_i)
    padded = x.new_zeros((max_n,) + tuple(x.shape[1:]))
    padded[: x.shape[0]] = x
    out = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(out, padded)
    return torch.cat([o[:s] for o, s in zip(out, sizes_i)], dim=0)


def is_main_process() -> bool:
    """True on rank 0: the only process that writes logs and checkpoints."""
    return get_rank() == 0


#: collective timeout: rank 0 may prepare a whole raw dataset (pcseg prepare) while
#: the other ranks wait in a barrier, far longer than torch's 10-minute nccl default
COLLECTIVE_TIMEOUT = timedelta(hours=3)


def init_distributed(device_kind: str) -> tuple[int, int, int]:
    """Initialise the default process group from torchrun's environment, if present.

    Args:
        device_kind: ``'cuda'`` (nccl backend) or ``'cpu'`` (gloo backend).
    Returns:
        ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` when not launched distributed.
    The CUDA device of this process is set to ``cuda:<local_rank>`` (also when the group
    was initialised by the caller). Collectives time out after :data:`COLLECTIVE_TIMEOUT`.
    """
    if is_distributed():
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device_kind == "cuda":
            torch.cuda.set_device(local_rank)
        return get_rank(), get_world_size(), local_rank
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend=backend, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT
    )
    return rank, world, local_rank


def barrier() -> None:
    """Synchronise all ranks (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def reduce_device() -> torch.device:
    """Device of reduction buffers: the current CUDA device under nccl, else the CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def sync_buffers(module: nn.Module) -> None:
    """Average the floating-point buffers of ``module`` over ranks; broadcast the others from
    rank 0.

    Used for the network's BatchNorm running statistics. The trainer wraps model +
    method in DDP with ``broadcast_buffers=False`` so that DDP never overwrites a
    method's own state (ERDA all-reduces its prototype statistics itself, U2PL's
    queues are per-rank); the model's buffers are synchronised here instead, after
    every optimiser step, which keeps all ranks bit-identical.
    """
    if not is_distributed():
        return
    bufs = [b for b in module.buffers()]
    if not bufs:
        return
    dev = reduce_device()
    floats = [b for b in bufs if b.is_floating_point()]
    others = [b for b in bufs if not b.is_floating_point()]
    world = get_world_size()
    if floats:
        flat = torch.cat([b.detach().reshape(-1).to(dev, torch.float64) for b in floats])
        dist.all_reduce(flat)
        flat /= world
        off = 0
        for b in floats:
            n = b.numel()
            b.copy_(flat[off : off + n].reshape(b.shape).to(b.dtype))
            off += n
    for b in others:
        t = b.detach().to(dev)
        dist.broadcast(t, src=0)
        b.copy_(t.to(b.device))


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Mean of each scalar over ranks; every rank must pass the same keys (sorted here)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=reduce_device())
    dist.all_reduce(t)
    t /= get_world_size()
    return {k: float(v) for k, v in zip(keys, t.cpu().tolist())}


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from rank ``src`` to every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Destroy the process group if one is initialised."""
    if is_distributed():
        dist.destroy_process_group()
