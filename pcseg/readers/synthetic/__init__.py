"""Synthetic raw datasets in the exact on-disk formats of S3DIS, SemanticKITTI and ScanNet v2.

They feed the demo and the reader tests: every writer knows the per-point labels it wrote,
so a reader can be checked point for point. Everything is drawn from one seed.

* :func:`write_synthetic_s3dis` (``rooms``) -- rooms scanned like S3DIS: floor, ceiling, four walls,
  a door, windows and a board on the walls, bookcases against walls, tables with chairs
  around them, clutter on tables and floor, optionally a beam, a column and a sofa.
  Surfaces are sampled on a jittered grid (``spacing``, default 4 cm: real S3DIS is ~1 cm,
  the coarser default keeps a 4x5 m room near 60k points), occluded parts (wall behind a
  bookcase, floor under it, wall behind door/window/board) are left out, colours are
  class-typical with per-object and per-point variation, and positions carry 5 mm
  Gaussian sensor noise before rounding to millimetres as the release does.
* :func:`write_synthetic_semantickitti` (``kitti``) -- a street (road with lane markings, kerbed
  sidewalks, terrain, parking, buildings, fences, trees, poles with signs, parked and
  moving cars, people, bicycles, bins) ray-cast with a 64-ring rotating lidar (elevation
  -24.8..+2 deg, 80 m range, return probability falling with range, 1.5 cm range noise),
  with remission from class reflectivity and incidence angle; labels carry raw ids in
  the low 16 bits and instance ids in the high 16; plus a generated ``semantic-kitti.yaml``
  with the official structure.
* :func:`write_synthetic_scannet` (``scannet``) -- small meshed rooms with over-segmentation,
  ``segs.json``, ``aggregation.json``, ``<scene>.txt`` axis alignment, split lists and a
  label tsv in a chosen line-ending style.

Command line: ``pcseg synthetic {s3dis,semantickitti,scannet} --out DIR [--seed N]``.
"""

from __future__ import annotations

from pcseg.readers.synthetic.kitti import (
    KittiWorld,
    make_kitti_scan,
    make_kitti_world,
    semantic_kitti_config,
    write_semantic_kitti_yaml,
    write_synthetic_semantickitti,
)
from pcseg.readers.synthetic.rooms import (
    ROOM_TYPES,
    S3DIS_COLOURS,
    SyntheticObject,
    SyntheticRooms,
    expected_s3dis_labels,
    make_s3dis_room,
    write_s3dis_room,
    write_synthetic_s3dis,
)
from pcseg.readers.synthetic.scannet import (
    SCANNET_CATEGORIES,
    TSV_HEADER,
    SyntheticScanNetScene,
    make_scannet_scene,
    write_scannet_label_tsv,
    write_scannet_scene,
    write_synthetic_scannet,
)

__all__ = [
    "KittiWorld",
    "ROOM_TYPES",
    "S3DIS_COLOURS",
    "SCANNET_CATEGORIES",
    "SyntheticObject",
    "SyntheticRooms",
    "SyntheticScanNetScene",
    "TSV_HEADER",
    "expected_s3dis_labels",
    "make_kitti_scan",
    "make_kitti_world",
    "make_s3dis_room",
    "make_scannet_scene",
    "semantic_kitti_config",
    "write_s3dis_room",
    "write_scannet_label_tsv",
    "write_scannet_scene",
    "write_semantic_kitti_yaml",
    "write_synthetic_s3dis",
    "write_synthetic_scannet",
    "write_synthetic_semantickitti",
]
