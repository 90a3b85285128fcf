"""Raw dataset readers (raw files -> :class:`pcseg.data.scene.Scene`), synthetic raw data and
the conversion of a raw folder into a processed one (:mod:`pcseg.readers.prepare`).

Each reader module (``s3dis``, ``scannet``, ``semantickitti``) is a
:class:`~pcseg.readers.common.Reader`: it exposes its typed options ``Options`` (a pydantic
model, unknown names rejected), ``list_scenes(raw, split, options=None) -> list[str]``,
``read_scene(raw, scene_id, options=None) -> Scene`` and ``SPLITS``; damaged-but-survivable
input is reported with :class:`DataWarning`, bad input raises ``ValueError`` naming the
file. ``synthetic`` writes small datasets in the same raw formats (``pcseg synthetic
{s3dis,semantickitti,scannet} --out DIR``).
"""

from __future__ import annotations

from pcseg.readers import s3dis, scannet, semantickitti
from pcseg.readers.common import DataWarning, Reader

#: Reader module of each benchmark dataset.
READERS: dict[str, Reader] = {
    "s3dis": s3dis,
    "scannet": scannet,
    "semantickitti": semantickitti,
}
DATASETS: tuple[str, ...] = tuple(READERS)

__all__ = ["DATASETS", "READERS", "DataWarning", "get_reader"]


def get_reader(dataset: str) -> Reader:
    """The reader module of ``dataset`` ('s3dis' | 'scannet' | 'semantickitti')."""
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(DATASETS)}")
    return READERS[dataset]
