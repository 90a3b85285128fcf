"""Datasets and loaders for the trainer and evaluator, built from a :class:`Config`.

Reproducibility and exact resume: the training loader draws every sample with its own
``np.random.Generator`` seeded from ``(train.seed, epoch, position in the epoch)``
(:class:`ResumableBatchSampler` yields ``(index, seed)`` pairs and :class:`SeededSamples`
passes ``np.random.default_rng(seed)`` to ``SegmentationDataset.get_sample``). A sample
is therefore a pure function of the seed, the epoch and its position: independent of
the number of DataLoader workers, of which worker loads it, and of whether the run was
interrupted and resumed at that point. The epoch order is a permutation drawn from
``(seed, epoch)``; under DDP it is padded to a multiple of the world size and rank r
takes positions r, r + W, ... (as DistributedSampler does), so every rank runs the same
number of steps.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcseg.config import Config, is_image_data
from pcseg.data.dataset import SegmentationDataset, collate
from pcseg.data.transforms import Compose, build_transforms, default_train_transforms
from pcseg.images.dataset import ImageDataset, collate_images


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """64-bit seed of the sample at ``position`` of ``epoch`` (a pure function of the three)."""
    return int(
        np.random.SeedSequence([int(seed), int(epoch), int(position), 0x5EED]).generate_state(
            1, np.uint64
        )[0]
    )


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """(num_samples,) int64 visiting order of ``epoch`` (a permutation when ``shuffle``)."""
    if not shuffle:
        return np.arange(num_samples, dtype=np.int64)
    return (
        np.random.default_rng([int(seed), int(epoch), 0x0BDE])
        .permutation(num_samples)
        .astype(np.int64)
    )


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Endless batches of ``(dataset index, sample seed)`` pairs, epoch after epoch.

    Args:
        num_samples: dataset length N.
        batch_size: samples per batch (per rank).
        seed: run seed.
        rank, world_size: this rank's share of every epoch (see module docstring).
        start_epoch, start_step: first epoch and the number of its batches to skip
            (resume point).
        shuffle: permute each epoch.
    The last batch of an epoch may be smaller than ``batch_size``.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_epoch: int = 0,
        start_step: int = 0,
        shuffle: bool = True,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("ResumableBatchSampler: empty dataset")
        self.n, self.bs, self.seed = int(num_samples), int(batch_size), int(seed)
        self.rank, self.world = int(rank), int(world_size)
        self.start_epoch, self.start_step, self.shuffle = int(start_epoch), int(start_step), shuffle

    @property
    def samples_per_rank(self) -> int:
        """Samples each rank sees per epoch (N padded to a multiple of the world size)."""
        return math.ceil(self.n / self.world)

    @property
    def batches_per_epoch(self) -> int:
        """Optimiser steps per epoch."""
        return math.ceil(self.samples_per_rank / self.bs)

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """All batches of this rank in ``epoch``."""
        order = epoch_order(self.n, self.seed, epoch, self.shuffle)
        total = self.samples_per_rank * self.world
        positions = np.arange(total) % self.n  # pad by wrapping around
        mine = positions[self.rank :: self.world]
        pairs = [
            (int(order[p]), sample_seed(self.seed, epoch, int(p_glob)))
            for p_glob, p in zip(range(self.rank, total, self.world), mine)
        ]
        return [pairs[i : i + self.bs] for i in range(0, len(pairs), self.bs)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.start_epoch
        skip = self.start_step
        while True:
            batches = self.epoch_batches(epoch)
            yield from batches[skip:]
            skip = 0
            epoch += 1

    def __len__(self) -> int:  # one epoch; the iterator itself is endless
        return self.batches_per_epoch


#: what a loader reads: the voxelized scenes of point clouds or the images of the 2D path
Samples = SegmentationDataset | ImageDataset


def collate_of(dataset: Any) -> Any:
    """The collate function of a dataset's samples (voxels or images)."""
    inner = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset
    return collate_images if isinstance(inner, ImageDataset) else collate


class SeededSamples(torch.utils.data.Dataset):
    """Wrap a dataset so that item ``(index, seed)`` is drawn with its own RNG."""

    def __init__(self, dataset: Samples) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        index, seed = item
        return self.dataset.get_sample(int(index), np.random.default_rng(int(seed)))


def build_train_transforms(cfg: Config, feat_kind: str) -> Compose | None:
    """Training augmentation pipeline from ``data.augmentations`` (see the config docs)."""
    aug = cfg.data.augmentations
    if aug is None or aug == []:
        return None
    if aug == "default":
        return default_train_transforms(feat_kind)
    if aug == "default_elastic":
        return default_train_transforms(feat_kind, elastic=True)
    return build_transforms(aug)


def build_image_dataset(
    cfg: Config, split: str, mode: str, with_weak_labels: bool = True
) -> ImageDataset:
    """ImageDataset of ``split`` in ``mode`` from ``cfg.data`` (``data.images``; train mode:
    ``data.label_spec``, ``data.loop``, the augmentations unless ``data.augmentations`` is
    null, which leaves the random crop only)."""
    d = cfg.data
    train = mode == "train"
    options = d.images
    if train and d.augmentations in (None, []):
        options = options.model_copy(update={"scale": [1.0, 1.0], "flip": False, "jitter": 0.0})
    return ImageDataset(
        d.root,
        split,
        label_spec=d.label_spec if (train or with_weak_labels) else None,
        mode=mode,
        options=options,
        loop=d.loop,
    )


def build_dataset(
    cfg: Config, split: str, mode: str, transforms: Any = None, with_weak_labels: bool = True
) -> Samples:
    """SegmentationDataset of ``split`` in ``mode`` ('train' | 'val' | 'test') from ``cfg.data``.

    ``split`` is a split name of meta.json; ``'a+b'`` joins several (e.g. ``'Area_1+Area_2'``)
    unless meta.json has a split of that very name.

    Train mode uses ``data.label_spec``, ``data.max_voxels``, ``data.loop`` and the training
    augmentations (unless ``transforms`` is given); val / test modes read no weak labels
    unless ``with_weak_labels``. Image data: :func:`build_image_dataset`.
    """
    d = cfg.data
    root = Path(d.root)
    if not (root / "meta.json").is_file():
        raise FileNotFoundError(
            f"data.root {root} is not a processed folder (no meta.json); run `pcseg prepare` "
            f"or set data.raw so `pcseg train` prepares it"
        )
    if is_image_data(d):
        return build_image_dataset(cfg, split, mode, with_weak_labels)
    train = mode == "train"
    from pcseg.data.processed import read_meta

    meta = read_meta(root)
    check_class_spec_voxel_size(meta, d.voxel_size, root)
    known = meta["splits"]
    split_arg: str | list[str] = (
        split.split("+") if ("+" in split and split not in known) else split
    )
    ds = SegmentationDataset(
        root,
        split_arg,
        label_spec=d.label_spec if (train or with_weak_labels) else None,
        voxel_size=d.voxel_size,
        mode=mode,
        transforms=None,
        max_voxels=d.max_voxels if train else None,
        loop=d.loop if train else 1,
        seed=cfg.train.seed,
        feature_keys=d.feature_keys,
        superpoints=d.superpoints if train else None,
    )
    check_feature_channels(meta, ds.feat_channels, root)
    if transforms is not None:
        ds.transforms = transforms
    elif train:
        ds.transforms = build_train_transforms(cfg, ds.feat_kind)
    return ds


class MixedFolderError(ValueError):
    """A processed folder whose scenes were made otherwise than its meta.json says."""


def check_feature_channels(meta: dict[str, Any], channels: int, root: Path) -> None:
    """:class:`MixedFolderError` when the scenes of a ``pcseg prepare custom`` folder hold
    ``channels`` feature channels but its meta.json's inputs were fitted on another number:
    a folder an earlier pcseg reprepared with a changed ``features`` list (it kept the old
    scenes and wrote the new spec), which would train and then fail at predict."""
    norm = (meta.get("inputs") or {}).get("normalisation") or {}
    fitted = list(norm.get("channels") or [])
    if fitted and len(fitted) != channels:
        raise MixedFolderError(
            f"data.root {root}: its scenes hold {channels} feature channel(s) but its "
            f"meta.json was written for features {fitted}: the folder was prepared again "
            "with another class file and kept its old scenes; rerun `pcseg prepare custom "
            "... --force` into it"
        )


def check_class_spec_voxel_size(meta: dict[str, Any], voxel_size: float, root: Path) -> None:
    """Warn when ``data.voxel_size`` (metres) is not the ``voxel_size`` of the CLASSES.yaml a
    ``pcseg prepare custom`` folder was made with (kept in its ``meta.json``): its weak labels
    were drawn per voxel of that size and its extent checked at it."""
    spec_size = (meta.get("classes") or {}).get("voxel_size")
    if spec_size is not None and not math.isclose(float(spec_size), float(voxel_size)):
        warnings.warn(
            f"data.voxel_size is {voxel_size} m but {root / 'meta.json'} was prepared with "
            f"voxel_size {spec_size} m ({meta.get('classes_file', 'its CLASSES.yaml')}): its "
            f"labels were drawn per {spec_size} m voxel; pass --set data.voxel_size={spec_size} "
            "unless the other size is meant",
            stacklevel=2,
        )


def build_train_loader(
    cfg: Config,
    dataset: Samples,
    rank: int,
    world: int,
    start_epoch: int,
    start_step: int,
    pin_memory: bool = False,
) -> tuple[torch.utils.data.DataLoader, ResumableBatchSampler]:
    """Endless training loader resuming at (``start_epoch``, ``start_step``)."""
    sampler = ResumableBatchSampler(
        len(dataset),
        cfg.data.batch_size,
        cfg.train.seed,
        rank,
        world,
        start_epoch,
        start_step,
        shuffle=True,
    )
    gen = torch.Generator()
    gen.manual_seed(cfg.train.seed)  # the loader's own generator: never touches the global RNG
    nw = cfg.data.num_workers
    loader = torch.utils.data.DataLoader(
        SeededSamples(dataset),
        batch_sampler=sampler,
        collate_fn=collate_of(dataset),
        num_workers=nw,
        generator=gen,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=2 if nw > 0 else None,
    )
    return loader, sampler


def build_eval_loader(
    cfg: Config,
    dataset: Samples,
    rank: int = 0,
    world: int = 1,
    batch_size: int | None = None,
) -> torch.utils.data.DataLoader:
    """In-order loader over this rank's shard (scenes rank, rank + W, ...; no padding)."""
    shard: torch.utils.data.Dataset[Any] = dataset
    if world > 1:
        shard = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
    gen = torch.Generator()
    gen.manual_seed(0)
    return torch.utils.data.DataLoader(
        shard,
        batch_size=batch_size or cfg.data.val_batch_size,
        shuffle=False,
        collate_fn=collate_of(dataset),
        num_workers=cfg.data.num_workers,
        generator=gen,
    )


def batch_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a collated batch to ``device`` (non-blocking); others unchanged."""
    return {
        k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()
    }
