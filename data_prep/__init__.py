"""Raw dataset readers (raw files -> :class:`pcseg.data.scene.Scene`) and synthetic raw data.

Each reader module (``s3dis``, ``scannet``, ``semantickitti``) exposes
``list_scenes(raw, split) -> list[str]``, ``read_scene(raw, scene_id) -> Scene`` and
``SPLITS``; damaged-but-survivable input is reported with :class:`DataWarning`, bad input
raises ``ValueError`` naming the file. ``synthetic`` writes small datasets in the same
raw formats (``python -m data_prep.synthetic {s3dis,semantickitti,scannet} --out DIR``).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from data_prep.common import DataWarning

DATASETS: tuple[str, ...] = ("s3dis", "scannet", "semantickitti")

__all__ = ["DATASETS", "DataWarning", "get_reader"]


def get_reader(dataset: str) -> ModuleType:
    """The reader module of ``dataset`` ('s3dis' | 'scannet' | 'semantickitti')."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(DATASETS)}")
    return importlib.import_module(f"data_prep.{dataset}")
