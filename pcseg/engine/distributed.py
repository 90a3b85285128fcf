"""Distributed-data-parallel helpers (``torchrun`` launches; gloo on CPU, nccl on CUDA).

``torchrun --nproc_per_node N tools/train.py CONFIG`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them.
Without them everything runs in a single process and every helper here is a no-op.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pcseg.methods.distributed import get_rank, get_world_size, is_distributed  # noqa: F401 (re-exported)



def is_main_process() -> bool:
    """True on rank 0: the only process that writes logs and checkpoints."""
    return get_rank() == 0


#: collective timeout: rank 0 may prepare a whole raw dataset (tools/prepare_data.py) while
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
    dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)
    return rank, world, local_rank


def barrier() -> None:
    """Synchronise all ranks (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def _reduce_device() -> torch.device:
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def sync_buffers(module: nn.Module) -> None:
    """Average the floating-point buffers of ``module`` over ranks; broadcast the others from rank 0.

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
    dev = _reduce_device()
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
            b.copy_(flat[off:off + n].reshape(b.shape).to(b.dtype))
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
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduce_device())
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
