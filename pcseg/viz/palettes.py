"""Class colour palettes of the supported datasets and class-name legends.

Every palette is an (K, 3) uint8 RGB array in the training class order of
``pcseg.data.classes``. Sources:

* S3DIS: the colours the common S3DIS visualizers use (ceiling green, floor blue, ...).
* ScanNet: the ScanNet / NYU40 benchmark palette for the 20 evaluated classes.
* SemanticKITTI: ``color_map`` of ``semantic-kitti.yaml`` (stored **BGR** there) looked up
  through ``learning_map_inv`` (learning id 1..19 -> raw id); the built-in table below is
  that result for the official yaml and is used when no yaml is given.

Points without a class (label -1) are drawn in :data:`IGNORE_COLOR`; unlabelled points of
the ``weak`` mode in :data:`UNLABELLED_COLOR`. Neither occurs in any palette.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pcseg.data.classes import (
    S3DIS_CLASSES,
    SCANNET_CLASSES,
    SEMANTICKITTI_CLASSES,
)
from pcseg.viz.errors import ViewError

IGNORE_COLOR: tuple[int, int, int] = (128, 128, 128)
"""Grey for points whose label is -1 (ignored / no prediction)."""

UNLABELLED_COLOR: tuple[int, int, int] = (225, 225, 225)
"""Light grey for points without a weak label in the ``weak`` mode."""

ERROR_COLOR: tuple[int, int, int] = (150, 0, 255)
"""Violet for wrong predictions in the error modes: no dataset palette uses a colour near it
(Euclidean distance > 100 from every S3DIS, ScanNet and SemanticKITTI class colour; red,
the obvious choice, is SemanticKITTI's traffic-sign and S3DIS's chair)."""

ERROR_MARGIN = 64.0
"""Generated palettes keep at least this Euclidean RGB distance from :data:`ERROR_COLOR`."""

RESERVED_COLORS: tuple[tuple[int, int, int], ...] = (
    IGNORE_COLOR,
    UNLABELLED_COLOR,
    ERROR_COLOR,
    (255, 255, 255),
    (0, 0, 0),
)
"""Colours a generated palette never uses (ignore, unlabelled, error, white/black)."""

S3DIS_COLORS = np.array(
    [
        [0, 255, 0],  # ceiling
        [0, 0, 255],  # floor
        [0, 255, 255],  # wall
        [255, 255, 0],  # beam
        [255, 0, 255],  # column
        [100, 100, 255],  # window
        [200, 200, 100],  # door
        [170, 120, 200],  # table
        [255, 0, 0],  # chair
        [200, 100, 100],  # sofa
        [10, 200, 100],  # bookcase
        [200, 200, 200],  # board
        [50, 50, 50],  # clutter
    ],
    dtype=np.uint8,
)

SCANNET_COLORS = np.array(
    [
        [174, 199, 232],  # wall
        [152, 223, 138],  # floor
        [31, 119, 180],  # cabinet
        [255, 187, 120],  # bed
        [188, 189, 34],  # chair
        [140, 86, 75],  # sofa
        [255, 152, 150],  # table
        [214, 39, 40],  # door
        [197, 176, 213],  # window
        [148, 103, 189],  # bookshelf
        [196, 156, 148],  # picture
        [23, 190, 207],  # counter
        [247, 182, 210],  # desk
        [219, 219, 141],  # curtain
        [255, 127, 14],  # refrigerator
        [158, 218, 229],  # shower curtain
        [44, 160, 44],  # toilet
        [112, 128, 144],  # sink
        [227, 119, 194],  # bathtub
        [82, 84, 163],  # otherfurniture
    ],
    dtype=np.uint8,
)

# RGB of the official semantic-kitti.yaml: color_map[learning_map_inv[i]][::-1], i = 1..19.
SEMANTICKITTI_COLORS = np.array(
    [
        [100, 150, 245],  # car (10)
        [100, 230, 245],  # bicycle (11)
        [30, 60, 150],  # motorcycle (15)
        [80, 30, 180],  # truck (18)
        [0, 0, 255],  # other-vehicle (20)
        [255, 30, 30],  # person (30)
        [255, 40, 200],  # bicyclist (31)
        [150, 30, 90],  # motorcyclist (32)
        [255, 0, 255],  # road (40)
        [255, 150, 255],  # parking (44)
        [75, 0, 75],  # sidewalk (48)
        [175, 0, 75],  # other-ground (49)
        [255, 200, 0],  # building (50)
        [255, 120, 50],  # fence (51)
        [0, 175, 0],  # vegetation (70)
        [135, 60, 0],  # trunk (71)
        [150, 240, 80],  # terrain (72)
        [255, 240, 150],  # pole (80)
        [255, 0, 0],  # traffic-sign (81)
    ],
    dtype=np.uint8,
)

DATASET_PALETTES: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
    "s3dis": (S3DIS_CLASSES, S3DIS_COLORS),
    "scannet": (SCANNET_CLASSES, SCANNET_COLORS),
    "semantickitti": (SEMANTICKITTI_CLASSES, SEMANTICKITTI_COLORS),
}


def semantickitti_palette(yaml_path: str | os.PathLike | None = None) -> np.ndarray:
    """SemanticKITTI palette (19, 3) uint8 RGB for learning ids 1..19 (our classes 0..18).

    With ``yaml_path`` (a ``semantic-kitti.yaml``) the colours are read from its
    ``color_map`` (BGR, converted to RGB) via ``learning_map_inv``; without it the
    built-in table of the official yaml is returned. Raises ValueError naming the file
    and key when the yaml lacks an entry or a colour is malformed.
    """
    if yaml_path is None:
        return SEMANTICKITTI_COLORS.copy()
    import yaml

    path = Path(yaml_path)
    if not path.is_file():
        raise FileNotFoundError(f"SemanticKITTI label config {path} not found")
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise ViewError(f"{path}: expected a YAML mapping at the top level")
    for key in ("color_map", "learning_map_inv"):
        if not isinstance(cfg.get(key), dict):
            raise ViewError(f"{path}: missing mapping {key!r}")
    inv, cmap = cfg["learning_map_inv"], cfg["color_map"]
    out = np.zeros((len(SEMANTICKITTI_CLASSES), 3), dtype=np.uint8)
    for i in range(1, len(SEMANTICKITTI_CLASSES) + 1):
        if i not in inv:
            raise ViewError(f"{path}: learning_map_inv has no entry for learning id {i}")
        raw = inv[i]
        if raw not in cmap:
            raise ViewError(
                f"{path}: color_map has no entry for raw id {raw} (learning_map_inv[{i}])"
            )
        bgr = cmap[raw]
        if (
            not isinstance(bgr, (list, tuple))
            or len(bgr) != 3
            or not all(isinstance(c, int) and 0 <= c <= 255 for c in bgr)
        ):
            raise ViewError(f"{path}: color_map[{raw}] = {bgr!r}; expected [b, g, r] ints 0..255")
        out[i - 1] = bgr[::-1]
    return out


def generic_palette(num: int, avoid: np.ndarray | Sequence[Sequence[int]] = ()) -> np.ndarray:
    """``num`` distinct colours (num, 3) uint8: matplotlib's tab20/tab20b/tab20c, then
    golden-ratio hues; skips :data:`RESERVED_COLORS`, colours in ``avoid``, colours
    within 12 (max-channel distance) of an already chosen one and colours within
    :data:`ERROR_MARGIN` (Euclidean) of :data:`ERROR_COLOR`."""
    from matplotlib import colormaps

    taken = [np.asarray(c, dtype=int) for c in RESERVED_COLORS]
    taken += [np.asarray(c, dtype=int) for c in np.asarray(avoid, dtype=int).reshape(-1, 3)]

    def candidates():
        for name in ("tab20", "tab20b", "tab20c"):
            for rgba in colormaps[name].colors:
                yield np.round(np.asarray(rgba[:3]) * 255).astype(int)
        i = 0
        while True:
            h = (i * 0.618033988749895) % 1.0
            s = 0.55 + 0.4 * ((i // 7) % 2)
            v = 0.65 + 0.3 * ((i // 3) % 2)
            yield np.round(np.asarray(colorsys.hsv_to_rgb(h, s, v)) * 255).astype(int)
            i += 1

    chosen: list[np.ndarray] = []
    gen = candidates()
    tries = 0
    while len(chosen) < num:
        c = next(gen)
        tries += 1
        if tries > 100000 + 100 * num:
            raise RuntimeError(f"could not generate {num} distinct colours")
        near_error = np.sqrt(((c - np.asarray(ERROR_COLOR)) ** 2).sum()) <= ERROR_MARGIN
        if not near_error and all(np.abs(c - t).max() >= 12 for t in taken + chosen):
            chosen.append(c)
    return np.asarray(chosen, dtype=np.uint8).reshape(num, 3)


def get_palette(
    dataset: str,
    class_names: Sequence[str] | None = None,
    kitti_yaml: str | os.PathLike | None = None,
    colors: Mapping[str, Sequence[int]] | None = None,
) -> np.ndarray:
    """Palette (K, 3) uint8 for ``class_names`` of ``dataset``.

    ``colors`` (``{name: [r, g, b]}``, 0-255, e.g. a CLASSES.yaml's ``colors``) wins; other
    classes named as in the dataset's canonical list get its customary colour (for
    SemanticKITTI from ``kitti_yaml`` when given); the rest (a custom or synthetic dataset)
    get distinct :func:`generic_palette` colours. ``class_names=None`` means the canonical
    list of ``dataset``.
    """
    known = DATASET_PALETTES.get(dataset)
    if class_names is None:
        if known is None:
            raise ViewError(
                f"unknown dataset {dataset!r} and no class names given; "
                f"known datasets: {sorted(DATASET_PALETTES)}"
            )
        class_names = known[0]
    class_names = list(class_names)
    if known is not None:
        names, canonical = known
        if dataset == "semantickitti" and kitti_yaml is not None:
            canonical = semantickitti_palette(kitti_yaml)
        lookup = {n: canonical[i] for i, n in enumerate(names)}
    else:
        lookup = {}
    for name, rgb in (colors or {}).items():
        if len(rgb) != 3 or not all(0 <= int(c) <= 255 for c in rgb):
            raise ViewError(f"colors: {name}: expected [r, g, b] in 0..255, got {list(rgb)}")
        lookup[name] = np.asarray(rgb, dtype=np.uint8)
    out = np.zeros((len(class_names), 3), dtype=np.uint8)
    missing = [i for i, n in enumerate(class_names) if n not in lookup]
    for i, n in enumerate(class_names):
        if n in lookup:
            out[i] = lookup[n]
    if missing:
        used = out[[i for i in range(len(class_names)) if i not in missing]]
        out[missing] = generic_palette(len(missing), avoid=used)
    return out


def _ansi_swatch(rgb: Sequence[int]) -> str:
    r, g, b = (int(c) for c in rgb)
    return f"\x1b[48;2;{r};{g};{b}m    \x1b[0m"


def legend_text(
    class_names: Sequence[str],
    palette: np.ndarray,
    counts: Sequence[int] | np.ndarray | None = None,
    ansi: bool = False,
    only_present: bool = False,
) -> str:
    """Multi-line legend: ``index  name  (r, g, b)  [count]`` per class.

    ``counts`` (K,) adds a point count column; ``only_present`` drops classes whose count
    is 0; ``ansi`` prefixes a true-colour terminal swatch.
    """
    palette = np.asarray(palette)
    if len(palette) < len(class_names):
        raise ValueError(f"palette has {len(palette)} colours for {len(class_names)} classes")
    width = max((len(n) for n in class_names), default=4)
    lines = []
    for i, name in enumerate(class_names):
        if only_present and counts is not None and int(counts[i]) == 0:
            continue
        rgb = tuple(int(c) for c in palette[i])
        line = f"{i:3d}  {name:<{width}}  ({rgb[0]:3d}, {rgb[1]:3d}, {rgb[2]:3d})"
        if counts is not None:
            line += f"  {int(counts[i]):>10,d}"
        if ansi:
            line = _ansi_swatch(rgb) + " " + line
        lines.append(line)
    return "\n".join(lines)


def load_font(size: int = 14):
    """A PIL font of roughly ``size`` px (PIL's built-in scalable font, else its bitmap font)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def legend_image(
    class_names: Sequence[str],
    palette: np.ndarray,
    width: int = 800,
    present: Sequence[int] | np.ndarray | None = None,
    row_height: int = 22,
    font_size: int = 14,
    background: Sequence[int] = (255, 255, 255),
    header: str | None = None,
    extra: Sequence[tuple[str, Sequence[int]]] = (),
) -> np.ndarray:
    """Legend strip (H, width, 3) uint8: a colour swatch and the name of each class,
    wrapped into rows of ``row_height`` px. ``present`` (class indices) restricts the
    entries; ``extra`` appends (name, rgb) entries after the classes (the greys of
    unlabelled / ignored points, the error colours); ``header`` adds a first text line.
    The height is ``row_height * (rows + (header is not None))``.
    """
    from PIL import Image, ImageDraw

    palette = np.asarray(palette)
    idx = list(range(len(class_names))) if present is None else [int(i) for i in present]
    font = load_font(font_size)
    sw = row_height - 8
    pad = 8
    # lay out entries left to right, wrapping when the row is full
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    colours = [tuple(int(c) for c in palette[i]) for i in idx]
    items = [(class_names[i], colours[k]) for k, i in enumerate(idx)]
    items += [(name, tuple(int(c) for c in rgb)) for name, rgb in extra]
    entries = []
    for k, (text, _) in enumerate(items):
        tw = int(np.ceil(probe.textlength(text, font=font)))
        entries.append((k, text, sw + 4 + tw + 2 * pad))
    rows: list[list[tuple[int, str, int]]] = [[]]
    x = pad
    for e in entries:
        if rows[-1] and x + e[2] > width:
            rows.append([])
            x = pad
        rows[-1].append(e)
        x += e[2]
    n_rows = len(rows) if entries else 0
    top = row_height if header is not None else 0
    img = Image.new(
        "RGB", (width, max(1, top + row_height * n_rows)), tuple(int(c) for c in background)
    )
    if top + row_height * n_rows == 0:
        return np.asarray(img)[:0]
    draw = ImageDraw.Draw(img)
    text_color = (0, 0, 0) if np.mean(background) > 127 else (255, 255, 255)
    if header is not None:
        draw.text((pad, (row_height - font_size) // 2), header, fill=text_color, font=font)
    for r, row in enumerate(rows[:n_rows]):
        x = pad
        y0 = top + r * row_height
        for i, text, w in row:
            y = y0 + (row_height - sw) // 2
            draw.rectangle([x, y, x + sw - 1, y + sw - 1], fill=items[i][1], outline=(90, 90, 90))
            draw.text(
                (x + sw + 4, y0 + (row_height - font_size) // 2), text, fill=text_color, font=font
            )
            x += w
    return np.asarray(img).copy()
