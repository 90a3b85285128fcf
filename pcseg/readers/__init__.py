"""Raw dataset readers (raw files -> :class:`pcseg.data.scene.Scene`), synthetic raw data and
the conversion of a raw folder into a processed one (:mod:`pcseg.readers.prepare`).

Each reader module (``s3dis``, ``scannet``, ``semantickitti``) exposes
``list_scenes(raw, split) -> list[str]``, ``read_scene(raw, scene_id) -> Scene`` and
``SPLITS``; damaged-but-survivable input is reported with :class:`DataWarning`, bad input
raises ``ValueError`` naming the file. ``synthetic`` writes small datasets in the same
raw formats (``pcseg synthetic {s3dis,semantickitti,scannet} --out DIR``).
"""

from __future__ import annotations

from types import ModuleType

from pcseg.readers import s3dis, scannet, semantickitti
from pcseg.readers.common import DataWarning

#: Reader module of each benchmark dataset.
READERS: dict[str, ModuleType] = {
    "s3dis": s3dis,
    "scannet": scannet,
    "semantickitti": semantickitti,
}
DATASETS: tuple[str, ...] = tuple(READERS)

__all__ = ["DATASETS", "READERS", "DataWarning", "get_reader"]


def get_reader(dataset: str) -> ModuleType:
    """The reader module of ``dataset`` ('s3dis' | 'scannet' | 'semantickitti')."""
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(DATASETS)}")
    return READERS[dataset]
