"""The network input of a collated batch, built in one place for the student, the evaluator
and U2PL's EMA teacher (so methods never build it from the data layer themselves).

:func:`network_input` is what they call: the (B, 3, H, W) ``images`` tensor of an image batch
(pcseg.images.dataset.collate_images), else the :func:`sparse_input` of a voxel batch."""

from __future__ import annotations

from typing import Any

import torch

from pcseg.sparse import SparseTensor

#: batch key under which :func:`sparse_input` keeps the network input it built
SPARSE_INPUT_KEY = "_sparse_input"


def sparse_input(batch: dict[str, Any], device: torch.device | str | None = None) -> Any:
    """The network input of a collated batch: ``pcseg.sparse.SparseTensor(coords (M,4) int32,
    feats (M,C) float32)`` on ``device`` (default: the device of ``batch["feats"]``).

    Built once per batch and kept in it under :data:`SPARSE_INPUT_KEY`, so every forward
    pass over the same batch (the student, then U2PL's EMA teacher) shares one coordinate
    manager and builds each kernel map once. ``KeyError`` names a missing key.
    """
    for key in ("coords", "feats"):
        if key not in batch:
            raise KeyError(f"network input: batch has no {key!r} (keys: {sorted(batch)})")
    dev = torch.device(device) if device is not None else batch["feats"].device
    cached = batch.get(SPARSE_INPUT_KEY)
    if cached is not None and cached.feats.device == dev:
        return cached
    x = SparseTensor(
        batch["coords"].to(device=dev, dtype=torch.int32),
        batch["feats"].to(device=dev, dtype=torch.float32),
    )
    batch[SPARSE_INPUT_KEY] = x
    return x


def network_input(batch: dict[str, Any], device: torch.device | str | None = None) -> Any:
    """The network input of a collated batch on ``device``: ``batch["images"]`` (float32
    (B, 3, H, W)) for an image batch, else :func:`sparse_input` (voxels)."""
    images = batch.get("images")
    if images is None:
        return sparse_input(batch, device)
    dev = torch.device(device) if device is not None else images.device
    return images.to(device=dev, dtype=torch.float32)
