"""PNG panels of one image of the 2D path (``pcseg view RUN --render out.png`` on image data).

Tiles, left to right, each with its caption above it and one legend strip below them all::

    image    the RGB image
    gt       the ground truth in the class colours (dark: no label)
    weak     the weak labels in the class colours over the dimmed image
    pseudo   the method's pseudo-labels (test/predictions/<id>.npz ``pseudo``)
    pred     the prediction
    error    prediction vs ground truth: wrong violet, right grey, no label dark
             (pcseg.viz.colors.error_colors)

Arrays come in as loaded by the caller (``pcseg.cli.view``): labels are (H, W) int64 with
-1 for "none"; tiles are scaled up by the largest integer factor that keeps them at most
``tile`` pixels wide (nearest neighbour, so every pixel stays visible).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pcseg.io.atomic import atomic_write_bytes
from pcseg.viz.colors import DARK_COLOR, RIGHT_COLOR, WRONG_COLOR, error_colors
from pcseg.viz.errors import ViewError
from pcseg.viz.palettes import legend_image, load_font

#: the tiles a panel can show, in their order
IMAGE_MODES: tuple[str, ...] = ("image", "gt", "weak", "pseudo", "pred", "error")


def label_colours(
    labels: np.ndarray, palette: np.ndarray, under: np.ndarray | None = None
) -> np.ndarray:
    """(H, W, 3) uint8: the class colour of each labelled pixel; pixels with label -1 show
    ``under`` dimmed to a third when given, else dark grey."""
    pal = np.asarray(palette, dtype=np.uint8)
    out = np.empty((*labels.shape, 3), dtype=np.uint8)
    none = labels < 0
    out[~none] = pal[labels[~none]]
    if under is None:
        out[none] = np.asarray(DARK_COLOR, dtype=np.uint8)
    else:
        out[none] = (np.asarray(under, dtype=np.float32)[none] / 3).astype(np.uint8)
    return out


def mode_tile(mode: str, arrays: dict[str, np.ndarray | None], palette: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 tile of ``mode`` from ``arrays`` (keys image, gt, weak, pseudo,
    pred); ViewError when the mode's array is missing."""
    need = {"error": ("pred", "gt")}.get(mode, (mode,))
    missing = [k for k in need if arrays.get(k) is None]
    if missing:
        raise ViewError(f"image panel: no {missing[0]} for mode {mode!r}")
    if mode == "image":
        return np.asarray(arrays["image"], dtype=np.uint8)
    if mode == "error":
        pred, gt = arrays["pred"], arrays["gt"]
        assert pred is not None and gt is not None
        return error_colors(pred.reshape(-1), gt.reshape(-1)).reshape(*gt.shape, 3)
    under = arrays["image"] if mode == "weak" else None
    labels = arrays[mode]
    assert labels is not None
    return label_colours(labels, palette, under)


def render_image_panel(
    arrays: dict[str, np.ndarray | None],
    modes: Sequence[str],
    class_names: Sequence[str],
    palette: np.ndarray,
    out: str | Path | None = None,
    tile: int = 320,
    title: str | None = None,
) -> np.ndarray:
    """The panel (H, W, 3) uint8 of ``modes`` (see :data:`IMAGE_MODES`) side by side, with
    captions and a legend; written to ``out`` as PNG when given."""
    from PIL import Image, ImageDraw

    bad = [m for m in modes if m not in IMAGE_MODES]
    if bad or not modes:
        raise ViewError(f"image modes: {bad or 'none'}; choose from {', '.join(IMAGE_MODES)}")
    tiles = [mode_tile(m, arrays, palette) for m in modes]
    h, w = tiles[0].shape[:2]
    scale = max(1, tile // max(w, 1))
    tiles = [np.kron(t, np.ones((scale, scale, 1), dtype=np.uint8)) for t in tiles]
    cap, gap = 22, 6
    width = len(tiles) * (w * scale + gap) + gap
    top = cap + (cap if title else 0)
    canvas = Image.new("RGB", (width, top + h * scale + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = load_font(14)
    if title:
        draw.text((gap, 3), title, fill=(0, 0, 0), font=font)
    for i, (m, t) in enumerate(zip(modes, tiles)):
        x = gap + i * (w * scale + gap)
        draw.text((x, top - cap + 3), m, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(t), (x, top))
    extra = [("no label", DARK_COLOR)]
    if "error" in modes:
        extra += [("right", RIGHT_COLOR), ("wrong", WRONG_COLOR)]
    legend = legend_image(list(class_names), np.asarray(palette), width=width, extra=extra)
    panel = np.concatenate([np.asarray(canvas), legend], axis=0)
    if out is not None:
        import io

        buf = io.BytesIO()
        Image.fromarray(panel).save(buf, format="PNG")
        atomic_write_bytes(out, buf.getvalue())
    return panel


__all__ = ["IMAGE_MODES", "label_colours", "mode_tile", "render_image_panel"]
