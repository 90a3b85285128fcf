"""Atomic checkpoints and random-number-generator state capture.

A checkpoint (``RUN/checkpoints/last.pt`` / ``best.pt``) is a dict::

    {"format": 1, "model": state_dict, "method": state_dict, "optimizer": ...,
     "scheduler": ..., "scaler": ... or None, "rng": get_rng_state(), "iteration": int,
     "epoch": int, "epoch_step": int, "best_miou": float, "best_iteration": int,
     "best_epoch": int, "history": {...}, "config": resolved config dict,
     "class_names": [...], "in_channels": int, "num_classes": int,
     "data_meta": {"classes", "inputs", "fingerprint"}}

``data_meta`` (:func:`data_meta_of`): what of the training folder's ``meta.json`` a
prediction needs: the custom class spec, the inputs fitted at prepare time and the
folder's fingerprint (:mod:`pcseg.data.processed`; ``pcseg predict`` checks a CLASSES.yaml
given to it against it).

It is written with :func:`pcseg.io.atomic.atomic_save_with`, so an interrupted save
never leaves a truncated ``last.pt``. :func:`config_from_checkpoint` rebuilds the run's
config from it (``pcseg test CKPT``, ``pcseg predict``).
"""

from __future__ import annotations

import contextlib
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcseg.config import (
    IMAGE_DATASETS,
    Config,
    ConfigError,
    config_from_dict,
    merge_dicts,
    parse_override,
)
from pcseg.io.atomic import atomic_save_with

CHECKPOINT_FORMAT = 1
#: the keys of a processed ``meta.json`` a checkpoint keeps (``data_meta``)
DATA_META_KEYS = ("classes", "inputs", "fingerprint")


def data_meta_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The :data:`DATA_META_KEYS` of a processed folder's ``meta`` that it has."""
    return {k: meta[k] for k in DATA_META_KEYS if k in meta}


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (if available) every CUDA device's RNG state."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu() if hasattr(state["torch"], "cpu") else state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        n = min(len(cuda_states), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda_states[i].cpu(), i)


@contextlib.contextmanager
def preserve_rng() -> Iterator[None]:
    """Run a block (validation, a checkpoint) without disturbing any global RNG stream."""
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically with torch.save. A full
    disk is a :class:`pcseg.io.atomic.DiskFullError` naming the file and the space left,
    and the previous checkpoint under that name is kept: torch writes through a Python file
    object, whose ``OSError(ENOSPC)`` reaches :func:`pcseg.io.atomic.atomic_path` (as the
    context of the zip writer's own error; given a path, torch says only ``RuntimeError:
    ... unexpected pos``)."""
    payload = dict(state)
    payload["format"] = CHECKPOINT_FORMAT

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            torch.save(payload, fh)

    atomic_save_with(path, write)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (truncated, not a torch file, not pcseg's)."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; clear error when missing/invalid."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:
        reason = str(e).split(". This is an internal")[0] or type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} is not a complete pcseg checkpoint (truncated or not a torch "
            f"file): {reason}"
        ) from e
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        raise CheckpointError(f"checkpoint {path} cannot be read: {e}") from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path} is not a pcseg checkpoint (no 'model' entry)")
    if state.get("format", CHECKPOINT_FORMAT) > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {state['format']}, newer than this code"
        )
    return state


def load_matching_weights(
    model: torch.nn.Module,
    path: str | Path,
    class_names: list[str],
    classifier_prefix: str = "final.",
) -> dict[str, Any]:
    """Initialise ``model`` from the network weights of another run's checkpoint (fine-tuning).

    Every parameter and buffer whose name and shape match is copied. The classifier
    (``classifier_prefix``, MinkUNet's last Linear) is copied only when the checkpoint's class
    list equals ``class_names`` (same names, same order); otherwise it keeps its fresh
    initialisation, as does anything else that does not match. The method's state (ERDA's
    prototypes, U2PL's teacher and queues), the optimiser and the iteration are never taken.

    Returns ``{"loaded": [names], "fresh": [names], "skipped_from_checkpoint": [names],
    "same_classes": bool}``. Raises FileNotFoundError / ValueError naming the file.
    """
    state = load_checkpoint(path)
    src: dict[str, torch.Tensor] = state["model"]
    same_classes = list(state.get("class_names") or []) == list(class_names)
    own = model.state_dict()
    loaded, fresh = [], []
    for name, tensor in own.items():
        ok = name in src and tuple(src[name].shape) == tuple(tensor.shape)
        if name.startswith(classifier_prefix) and not same_classes:
            ok = False
        if ok:
            own[name] = src[name].to(dtype=tensor.dtype)
            loaded.append(name)
        else:
            fresh.append(name)
    if not loaded:
        raise ValueError(
            f"--init {path}: no weight of the checkpoint matches this model "
            f"(different model.name / planes / input features?)"
        )
    model.load_state_dict(own)
    return {
        "loaded": loaded,
        "fresh": fresh,
        "same_classes": same_classes,
        "skipped_from_checkpoint": sorted(set(src) - set(loaded)),
    }


def config_from_checkpoint(checkpoint: str | Path, overrides: list[str]) -> Config:
    """The config stored in ``checkpoint`` with ``--set`` overrides applied. Raises ConfigError."""
    state = load_checkpoint(checkpoint)
    if "config" not in state:
        raise ConfigError(f"{checkpoint} holds no config: pass CONFIG")
    merged = state["config"]
    for item in overrides:
        merged = merge_dicts(merged, parse_override(item))
    return config_from_dict(merged, f"config of {checkpoint}")


def is_image_checkpoint(checkpoint: str | Path) -> bool:
    """Whether ``checkpoint`` was trained on images (its config's ``data.dataset`` is one of
    ``pcseg.config.IMAGE_DATASETS``); False for a missing file (the caller reports it)."""
    if not Path(checkpoint).is_file():
        return False
    cfg = load_checkpoint(checkpoint).get("config") or {}
    return (cfg.get("data") or {}).get("dataset") in IMAGE_DATASETS
