"""pcseg.viz.palettes: the class palettes, their customary values, the SemanticKITTI YAML
palette, legends, and an error colour no palette uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.viz import (
    _count,
)

from pcseg.data.classes import S3DIS_CLASSES, SCANNET_CLASSES, SEMANTICKITTI_CLASSES
from pcseg.viz import colors as C
from pcseg.viz import palettes as P


# ----------------------------------------------------------------------------- palettes
@pytest.mark.timeout(60)
def test_palettes_distinct_and_sized():
    for dataset, names in (
        ("s3dis", S3DIS_CLASSES),
        ("scannet", SCANNET_CLASSES),
        ("semantickitti", SEMANTICKITTI_CLASSES),
    ):
        pal = P.get_palette(dataset)
        assert pal.shape == (len(names), 3) and pal.dtype == np.uint8
        assert len({tuple(c) for c in pal}) == len(names), f"{dataset}: duplicate class colours"
        for reserved in (P.IGNORE_COLOR, P.UNLABELLED_COLOR, (255, 255, 255)):
            assert tuple(reserved) not in {tuple(int(v) for v in c) for c in pal}
    gen = P.generic_palette(70)
    dist = np.abs(gen[:, None].astype(int) - gen[None].astype(int)).max(-1)
    assert (dist + 999 * np.eye(70, dtype=int)).min() >= 12
    assert all(
        np.abs(gen.astype(int) - np.asarray(r)).max(-1).min() >= 12 for r in P.RESERVED_COLORS
    )


@pytest.mark.timeout(60)
def test_palette_values_from_the_customary_tables():
    s3dis = {
        "ceiling": (0, 255, 0),
        "floor": (0, 0, 255),
        "wall": (0, 255, 255),
        "beam": (255, 255, 0),
        "column": (255, 0, 255),
        "window": (100, 100, 255),
        "door": (200, 200, 100),
        "table": (170, 120, 200),
        "chair": (255, 0, 0),
        "sofa": (200, 100, 100),
        "bookcase": (10, 200, 100),
        "board": (200, 200, 200),
        "clutter": (50, 50, 50),
    }
    scannet = {
        "wall": (174, 199, 232),
        "floor": (152, 223, 138),
        "cabinet": (31, 119, 180),
        "bed": (255, 187, 120),
        "chair": (188, 189, 34),
        "sofa": (140, 86, 75),
        "table": (255, 152, 150),
        "door": (214, 39, 40),
        "window": (197, 176, 213),
        "bookshelf": (148, 103, 189),
        "picture": (196, 156, 148),
        "counter": (23, 190, 207),
        "desk": (247, 182, 210),
        "curtain": (219, 219, 141),
        "refrigerator": (255, 127, 14),
        "shower curtain": (158, 218, 229),
        "toilet": (44, 160, 44),
        "sink": (112, 128, 144),
        "bathtub": (227, 119, 194),
        "otherfurniture": (82, 84, 163),
    }
    for dataset, table, names in (
        ("s3dis", s3dis, S3DIS_CLASSES),
        ("scannet", scannet, SCANNET_CLASSES),
    ):
        pal = P.get_palette(dataset)
        for i, n in enumerate(names):
            assert tuple(int(v) for v in pal[i]) == table[n], (dataset, n)
    # custom class list: known names keep their colour, new names get distinct new colours
    pal = P.get_palette("s3dis", ["floor", "robot", "chair", "plant"])
    assert tuple(pal[0]) == (0, 0, 255) and tuple(pal[2]) == (255, 0, 0)
    assert len({tuple(c) for c in pal}) == 4
    # explicit colours (a CLASSES.yaml's) win over the canonical and the generic ones
    pal2 = P.get_palette(
        "s3dis",
        ["floor", "robot", "chair", "plant"],
        colors={"floor": [1, 2, 3], "plant": [9, 8, 7]},
    )
    assert tuple(pal2[0]) == (1, 2, 3) and tuple(pal2[3]) == (9, 8, 7)
    np.testing.assert_array_equal(pal2[1:3], pal[1:3])
    with pytest.raises(ValueError, match=r"robot: expected \[r, g, b\] in 0..255"):
        P.get_palette("custom", ["robot"], colors={"robot": [300, 0, 0]})


@pytest.mark.timeout(60)
def test_semantickitti_palette_bgr_yaml(tmp_path: Path):
    # a yaml whose learning_map_inv points every learning id at a raw id with a known BGR colour
    cmap = {0: [0, 0, 0]}
    inv = {0: 0}
    expected = np.zeros((19, 3), np.uint8)
    for i in range(1, 20):
        raw = 100 + 3 * i
        b, g, r = i, 10 * i, 255 - i
        cmap[raw] = [b, g, r]
        inv[i] = raw
        expected[i - 1] = (r, g, b)
    y = tmp_path / "sk.yaml"
    y.write_text(yaml.safe_dump({"color_map": cmap, "learning_map_inv": inv}))
    np.testing.assert_array_equal(P.semantickitti_palette(y), expected)
    np.testing.assert_array_equal(P.get_palette("semantickitti", kitti_yaml=y), expected)
    del inv[7]
    y.write_text(yaml.safe_dump({"color_map": cmap, "learning_map_inv": inv}))
    with pytest.raises(ValueError, match="learning id 7"):
        P.semantickitti_palette(y)


@pytest.mark.timeout(60)
def test_semantickitti_fallback_equals_official_yaml(real_data: Path):
    y = real_data / "semantickitti" / "semantic-kitti.yaml"
    np.testing.assert_array_equal(P.semantickitti_palette(y), P.semantickitti_palette(None))
    # hand check: car raw 10 is BGR [245, 150, 100] in the yaml
    assert tuple(P.semantickitti_palette(y)[0]) == (100, 150, 245)


@pytest.mark.timeout(60)
def test_legend_text_and_image():
    pal = P.get_palette("s3dis")
    txt = P.legend_text(S3DIS_CLASSES, pal, counts=[5] + [0] * 12, only_present=True)
    assert txt.splitlines() == ["  0  ceiling   (  0, 255,   0)           5"]  # names padded to 8
    img = P.legend_image(S3DIS_CLASSES, pal, width=400, present=[1, 8], row_height=22, header="hdr")
    assert img.shape == (44, 400, 3)  # header row + one row of two entries
    assert _count(img, pal[1], 0) > 20 and _count(img, pal[8], 0) > 20
    assert _count(img, pal[0], 0) == 0


def test_error_colour_is_in_no_palette():
    """Wrong points are drawn in a colour no class palette uses (red was SemanticKITTI's
    traffic-sign and S3DIS's chair)."""
    pals = {
        name: np.asarray(v)
        for name, v in vars(P).items()
        if isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[1] == 3
    }
    pals.update({f"get_palette({d})": P.get_palette(d) for d in P.DATASET_PALETTES})
    pals["generic_palette(80)"] = P.generic_palette(80)
    assert {"S3DIS_COLORS", "SCANNET_COLORS", "SEMANTICKITTI_COLORS"} <= set(pals)
    assert tuple(C.WRONG_COLOR) == tuple(P.ERROR_COLOR)
    for name, pal in pals.items():
        dist = np.sqrt(((pal.astype(float) - np.asarray(C.WRONG_COLOR, float)) ** 2).sum(1))
        assert dist.min() > 60, (name, pal[dist.argmin()])
    err = C.error_colors(np.array([0, 1, -1]), np.array([0, 2, 1]))
    assert tuple(err[1]) == tuple(P.ERROR_COLOR)
