"""Class lists of the supported datasets (training order; ignore label is -1).

Sources: the datasets' own releases (S3DIS's 13 annotated classes; the ScanNet v2 benchmark's
20 classes from ``scannetv2-labels.combined.tsv``; SemanticKITTI's 19 evaluated classes in the
``learning_map`` order 1..19 -> 0..18 of the official ``semantic-kitti.yaml``).
"""
from __future__ import annotations

IGNORE_INDEX = -1

S3DIS_CLASSES: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door",
    "table", "chair", "sofa", "bookcase", "board", "clutter",
)

# NYU40 ids of the 20 ScanNet benchmark classes, in training order.
SCANNET_NYU40_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39,
)
SCANNET_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "desk", "curtain", "refrigerator",
    "shower curtain", "toilet", "sink", "bathtub", "otherfurniture",
)

# learning_map ids 1..19 become 0..18 here (learning id 0 = unlabelled -> IGNORE_INDEX).
SEMANTICKITTI_CLASSES: tuple[str, ...] = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
    "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence",
    "vegetation", "trunk", "terrain", "pole", "traffic-sign",
)

DATASET_CLASSES: dict[str, tuple[str, ...]] = {
    "s3dis": S3DIS_CLASSES,
    "scannet": SCANNET_CLASSES,
    "semantickitti": SEMANTICKITTI_CLASSES,
}


def class_names(dataset: str) -> tuple[str, ...]:
    """Class names of ``dataset`` ('s3dis' | 'scannet' | 'semantickitti')."""
    try:
        return DATASET_CLASSES[dataset]
    except KeyError:
        raise ValueError(
            f"unknown dataset {dataset!r}; expected one of {sorted(DATASET_CLASSES)}"
        ) from None
