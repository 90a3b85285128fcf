"""Run setup shared by the trainer and the evaluator: device, autocast, seeding, torch globals.

* :func:`resolve_device` / :func:`device_kind`: ``train.device`` -> a ``torch.device``.
* :func:`autocast_policy` / :func:`autocast_factory`: ``train.amp`` / ``train.amp_dtype`` ->
  ``torch.autocast`` settings (fp16 refused off CUDA).
* :func:`seed_everything`, :func:`set_deterministic`.
* :func:`torch_globals`: the one place that changes torch's process-wide state (intra-op
  threads, deterministic algorithms and their warn-only flag, cuDNN deterministic /
  benchmark) and restores it afterwards, also when the block raises.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


def device_kind(name: str) -> str:
    """'cuda' when ``train.device`` = ``name`` asks for CUDA ('cuda', 'cuda:N', or 'auto' with
    CUDA available), else 'cpu': the kind the process group (``init_distributed``) is set up for.
    """
    return (
        "cuda"
        if name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
        else "cpu"
    )


def resolve_device(name: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """'auto' -> cuda:<local_rank> when CUDA is available else cpu; 'cuda' -> cuda:<local_rank>.

    An explicit ``cuda:N`` is refused when ``world_size`` > 1 (every rank would use GPU N).
    """
    if name.startswith("cuda:") and world_size > 1:
        raise ValueError(
            f"train.device: {name!r} pins every one of the {world_size} ranks to "
            "one GPU; use 'cuda' or 'auto' under torchrun (each rank takes "
            "cuda:<LOCAL_RANK>)"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "train.device is 'cuda' but CUDA is not available (use --set train.device=cpu)"
            )
        return torch.device("cuda", local_rank)
    if name.startswith("cuda:") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available")
    return torch.device(name)


def autocast_policy(amp: bool, amp_dtype: str, device: torch.device) -> tuple[bool, torch.dtype]:
    """``(enabled, dtype)`` of ``torch.autocast`` for ``train.amp`` / ``train.amp_dtype`` on
    ``device``: bf16 or fp16 on CUDA, bf16 only elsewhere (ValueError naming the key for fp16)."""
    dtype = torch.bfloat16 if amp_dtype == "bf16" else torch.float16
    if amp and device.type != "cuda" and dtype != torch.bfloat16:
        raise ValueError(
            f"train.amp_dtype: {amp_dtype!r} autocast needs CUDA; on {device.type} "
            "use train.amp_dtype=bf16 (or train.amp=false)"
        )
    return bool(amp), dtype


def autocast_factory(enabled: bool, dtype: torch.dtype, device: torch.device) -> Callable[[], Any]:
    """A no-argument callable returning a fresh ``torch.autocast`` context for ``device``."""
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype, enabled=enabled)


def seed_everything(seed: int) -> None:
    """Seed python ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_deterministic(enabled: bool) -> None:
    """``torch.use_deterministic_algorithms(enabled, warn_only=True)`` plus the cuDNN flags.

    warn_only: an op without a deterministic implementation warns instead of failing.
    On CUDA, cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG`` (set here when unset).
    Process-wide: prefer :func:`torch_globals`, which restores the previous state.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled and torch.cuda.is_available()


@contextlib.contextmanager
def torch_globals(threads: int | None = None, deterministic: bool | None = None) -> Iterator[None]:
    """Run a block with torch's global state set, restoring the previous state afterwards.

    Args:
        threads: ``torch.set_num_threads(threads)`` for the block (None: unchanged).
        deterministic: :func:`set_deterministic` for the block (None: unchanged).
    On exit (normal or by an exception) the thread count, the deterministic-algorithms flag
    and its warn-only flag, and ``cudnn.deterministic`` / ``cudnn.benchmark`` are restored.
    """
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if deterministic is not None:
            set_deterministic(deterministic)
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn
        torch.set_num_threads(prev_threads)


__all__ = [
    "device_kind",
    "autocast_factory",
    "autocast_policy",
    "resolve_device",
    "seed_everything",
    "set_deterministic",
    "torch_globals",
]
