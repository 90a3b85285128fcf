"""Headless rendering of colour modes to PNG with Open3D's legacy ``Visualizer``.

``Visualizer().create_window(visible=False)`` renders off-screen: through GLX when a display
is reachable, otherwise Open3D falls back to EGL (Mesa). ``OffscreenRenderer`` (Vulkan /
filament) is deliberately not used. Points are drawn unlit (``light_on=False``) so every pixel
of a point has exactly its mode colour.

The camera is fitted to robust bounds (0.5 / 99.5 percentiles) of the visible points; ``top``,
``front`` and ``side`` views are orthographic, ``iso`` is a 40 degree perspective. For indoor
scenes the views from above (``top``, ``iso``) hide the ceiling by default (see
:func:`hidden_mask`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from pcseg.io.atomic import atomic_write_bytes
from pcseg.viz.colors import (
    CONFIDENCE_CMAP,
    DARK_COLOR,
    ENTROPY_CMAP,
    LABEL_MODES,
    RIGHT_COLOR,
    WRONG_COLOR,
    entropy_vmax,
    mode_colors,
    mode_summary,
)
from pcseg.viz.data import ViewData
from pcseg.viz.errors import DisplayUnavailable, ViewError
from pcseg.viz.palettes import IGNORE_COLOR, UNLABELLED_COLOR, legend_image, load_font

VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # name: (front = direction from the scene centre to the camera, up)
    "top": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "iso": ((-0.55, -0.75, 0.65), (0.0, 0.0, 1.0)),
    "front": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "side": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
}
ORTHO_VIEWS = ("top", "front", "side")
PERSPECTIVE_FOV = 40.0
INDOOR_DATASETS = ("s3dis", "scannet")
MODE_TITLES = {
    "rgb": "input colour",
    "gt": "ground truth",
    "weak": "weak labels",
    "pred": "prediction",
    "pseudo": "pseudo-labels",
    "confidence": "confidence",
    "entropy": "entropy",
    "error": "errors (violet = wrong)",
    "pseudo_error": "pseudo-label errors",
}
TITLE_HEIGHT = 44
LEGEND_ROW_HEIGHT = 22
#: at most this many tiles in a row of a panel (more modes wrap onto further rows)
MAX_COLUMNS = 3


def private_runtime_dir() -> str:
    """Give the headless render a valid ``XDG_RUNTIME_DIR`` (Mesa prints ``error:
    XDG_RUNTIME_DIR is invalid or not set`` on every successful EGL render otherwise).

    Kept when set to a folder owned by this user with mode 0700; else a private folder
    (``<tmp>/pcseg-runtime-<uid>``, mode 0700) is created and exported. Returns the path.
    """
    import tempfile

    cur = os.environ.get("XDG_RUNTIME_DIR")
    if cur and _is_private_dir(cur):
        return cur
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"pcseg-runtime-{uid}")
    if not _is_private_dir(path):
        path = tempfile.mkdtemp(prefix="pcseg-runtime-")  # mode 0700, ours
    os.environ["XDG_RUNTIME_DIR"] = path
    return path


def _is_private_dir(path: str) -> bool:
    import stat

    try:
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError:
        return False
    own = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return stat.S_ISDIR(st.st_mode) and own and stat.S_IMODE(st.st_mode) == 0o700


def legend_extras(
    view: ViewData, modes: Sequence[str], visible: np.ndarray
) -> list[tuple[str, tuple[int, int, int]]]:
    """The legend entries besides the classes: the light grey of points without a weak
    label (``weak`` mode), the grey of ignored points (label -1 shown in a label mode) and
    the error modes' wrong / right / ignored colours."""
    out: list[tuple[str, tuple[int, int, int]]] = []
    arrays = {"gt": view.semantic, "pred": view.pred, "pseudo": view.pseudo}
    if "weak" in modes and view.labelled is not None:
        out.append(("unlabelled", UNLABELLED_COLOR))
        arrays["weak"] = np.where(view.labelled, view.semantic, 0)
    shown = [arrays.get(m) for m in modes if m in LABEL_MODES]
    if any(a is not None and bool((np.asarray(a)[visible] < 0).any()) for a in shown):
        out.append(("ignored (no label)", IGNORE_COLOR))
    if any(m in ("error", "pseudo_error") for m in modes):
        out += [("wrong", WRONG_COLOR), ("right", RIGHT_COLOR), ("ignored / none", DARK_COLOR)]
    return out


def is_indoor(view: ViewData) -> bool:
    """True for S3DIS / ScanNet scenes and any dataset with a 'ceiling' class."""
    return view.dataset in INDOOR_DATASETS or "ceiling" in view.class_names


def hidden_mask(
    view: ViewData,
    view_name: str = "iso",
    hide_classes: Sequence[str] = (),
    hide_ceiling: bool | None = None,
    ceiling_frac: float = 0.9,
) -> np.ndarray:
    """(N,) bool mask of points to leave out of a render.

    ``hide_classes``: class names whose ground-truth points are hidden (ValueError for an
    unknown name). ``hide_ceiling`` (None = automatic: True for indoor scenes viewed from above,
    i.e. ``top`` / ``iso``) hides the ground-truth ceiling class when there is one and every
    point above ``z_lo + ceiling_frac * (z_hi - z_lo)`` where z_lo / z_hi are the 0.5 / 99.5
    percentiles of z (so unlabelled scans lose their ceiling too).
    """
    n = view.num_points
    mask = np.zeros(n, dtype=bool)
    for name in hide_classes:
        if name not in view.class_names:
            raise ViewError(
                f"--hide-classes: unknown class {name!r} for {view.dataset} "
                f"(classes: {', '.join(view.class_names)})"
            )
        mask |= view.semantic == view.class_names.index(name)
    if hide_ceiling is None:
        hide_ceiling = is_indoor(view) and view_name in ("top", "iso")
    if hide_ceiling and n:
        if "ceiling" in view.class_names:
            mask |= view.semantic == view.class_names.index("ceiling")
        z = view.coords[:, 2]
        z_lo, z_hi = np.percentile(z, [0.5, 99.5])
        mask |= z > z_lo + ceiling_frac * (z_hi - z_lo)
    if mask.all():
        raise ViewError(f"scene {view.name}: every point would be hidden")
    return mask


def fit_camera(
    coords: np.ndarray, view_name: str, width: int, height: int, margin: float = 1.08
) -> dict:
    """Camera fitted to ``coords`` (M, 3): dict(front, up, lookat, zoom, ortho, view_ratio).

    Open3D's legacy camera shows a half-height of ``view_ratio = zoom * max_extent(bbox)``
    at the look-at point; zoom is chosen so the robust (0.5 .. 99.5 percentile) box,
    projected on the camera's right / up axes, fits the window with ``margin``.
    """
    if view_name not in VIEWS:
        raise ViewError(f"unknown view {view_name!r}; expected one of {', '.join(VIEWS)}")
    coords = np.asarray(coords, dtype=np.float64)
    front = np.asarray(VIEWS[view_name][0], dtype=np.float64)
    front /= np.linalg.norm(front)
    up = np.asarray(VIEWS[view_name][1], dtype=np.float64)
    up = up - front * float(up @ front)
    up /= np.linalg.norm(up)
    right = np.cross(up, front)
    lo, hi = np.percentile(coords, [0.5, 99.5], axis=0)
    center = (lo + hi) / 2.0
    corners = (
        np.array(
            [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        - center
    )
    aspect = width / height
    ortho = view_name in ORTHO_VIEWS
    need = _half_height_needed(
        corners, right, up, front, aspect, None if ortho else PERSPECTIVE_FOV
    )
    need = max(need, 1e-3) * margin
    full_extent = float((coords.max(0) - coords.min(0)).max()) or 1.0
    zoom = float(np.clip(need / full_extent, 0.02, 2.0))
    return {
        "front": front,
        "up": up,
        "lookat": center,
        "zoom": zoom,
        "ortho": ortho,
        "view_ratio": zoom * full_extent,
    }


def _half_height_needed(
    corners: np.ndarray,
    right: np.ndarray,
    up: np.ndarray,
    front: np.ndarray,
    aspect: float,
    fov_deg: float | None,
) -> float:
    """Smallest half-height v (world units at the look-at point) that shows every corner
    (relative to the look-at point) in a window of ``aspect``: orthographic when ``fov_deg``
    is None, else a perspective camera at distance v / tan(fov / 2) (found by bisection;
    the fit improves monotonically as v grows)."""
    x = np.abs(corners @ right)
    y = np.abs(corners @ up)
    depth = corners @ front  # towards the camera
    v_ortho = float(max(y.max(), x.max() / aspect))
    if fov_deg is None:
        return v_ortho
    t = np.tan(np.radians(fov_deg) / 2.0)

    def fits(v: float) -> bool:
        dist = v / t
        d = dist - depth
        if (d <= 1e-6).any():
            return False
        s = dist / d  # magnification relative to the look-at plane
        return bool((y * s).max() <= v and (x * s).max() <= aspect * v)

    lo, hi = v_ortho, max(v_ortho, 1e-6)
    while not fits(hi):
        hi *= 2.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def apply_camera(vis, cam: dict) -> None:
    """Set an Open3D legacy visualizer's view to a :func:`fit_camera` result."""
    ctr = vis.get_view_control()
    # field of view: PERSPECTIVE_FOV, or the minimum (5 deg), which Open3D renders orthographic
    ctr.change_field_of_view(step=-90.0 if cam["ortho"] else 90.0)
    if not cam["ortho"]:
        ctr.change_field_of_view(step=(PERSPECTIVE_FOV - ctr.get_field_of_view()) / 5.0)
    ctr.set_lookat(cam["lookat"])
    ctr.set_front(cam["front"])
    ctr.set_up(cam["up"])
    ctr.set_zoom(cam["zoom"])


def auto_point_size(num_visible: int, width: int, height: int) -> float:
    """Point size (px) so ``num_visible`` points roughly tile half of a width x height image."""
    spacing = np.sqrt(0.5 * width * height / max(num_visible, 1))
    return float(np.clip(np.round(spacing * 1.3), 2, 10))


def marker_mesh(
    centres: np.ndarray, colors: np.ndarray, radius: float, max_markers: int = 100000, seed: int = 0
):
    """Open3D TriangleMesh of small spheres (octahedra) at ``centres`` (M, 3) coloured
    ``colors`` (M, 3) uint8; more than ``max_markers`` are subsampled (seeded)."""
    import open3d as o3d

    centres = np.asarray(centres, dtype=np.float64)
    colors = np.asarray(colors)
    if len(centres) > max_markers:
        keep = np.sort(np.random.default_rng(seed).choice(len(centres), max_markers, replace=False))
        centres, colors = centres[keep], colors[keep]
    tmpl = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=3)
    tv = np.asarray(tmpl.vertices)
    tt = np.asarray(tmpl.triangles)
    m = len(centres)
    verts = (centres[:, None, :] + radius * tv[None]).reshape(-1, 3)
    tris = (tt[None] + (len(tv) * np.arange(m))[:, None, None]).reshape(-1, 3)
    vcol = np.repeat(colors[:, None, :].astype(np.float64) / 255.0, len(tv), axis=1).reshape(-1, 3)
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(verts), o3d.utility.Vector3iVector(tris)
    )
    mesh.vertex_colors = o3d.utility.Vector3dVector(vcol)
    return mesh


def weak_marker_mesh(view: ViewData, visible: np.ndarray, radius: float):
    """Markers at the visible weakly labelled points of ``view`` (class colours), or None."""
    if view.labelled is None:
        return None
    sel = view.labelled & visible
    if not sel.any() or sel.sum() > 0.2 * max(1, visible.sum()):
        return None  # nothing to mark / dense labels: the point colours already show them
    colors = mode_colors(view, "weak")[sel]
    return marker_mesh(view.coords[sel], colors, radius)


def render_tiles(
    view: ViewData,
    modes: Sequence[str],
    view_name: str = "iso",
    width: int = 640,
    height: int = 480,
    point_size: float | None = None,
    hide_classes: Sequence[str] = (),
    hide_ceiling: bool | None = None,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    weak_markers: bool = True,
    marker_px: float | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Render each mode of ``view`` off-screen: returns (list of (height, width, 3) uint8
    images, (N,) bool mask of the points drawn). See :func:`render_modes` for the options."""
    import open3d as o3d

    hidden = hidden_mask(view, view_name, hide_classes, hide_ceiling)
    visible = ~hidden
    colors = {m: mode_colors(view, m) for m in modes}  # fails early on an unavailable mode
    pts = view.coords[visible].astype(np.float64)
    cam = fit_camera(pts, view_name, width, height)
    ps = auto_point_size(len(pts), width, height) if point_size is None else float(point_size)
    radius = (
        0.5
        * (marker_px if marker_px is not None else max(7.0, 2.2 * ps))
        * (2.0 * cam["view_ratio"] / height)
    )

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    private_runtime_dir()  # else Mesa's EGL prints "error: XDG_RUNTIME_DIR ..." on success
    vis = o3d.visualization.Visualizer()
    verbosity = o3d.utility.get_verbosity_level()
    o3d.utility.set_verbosity_level(
        o3d.utility.VerbosityLevel.Error
    )  # quiet the EGL-fallback notes
    try:
        created = vis.create_window(
            window_name="pcseg render", width=width, height=height, visible=False
        )
    finally:
        o3d.utility.set_verbosity_level(verbosity)
    if not created:
        raise DisplayUnavailable(
            "Open3D could not create an off-screen window (no GLX display and no "
            "EGL); install libegl1 and libgl1-mesa-dri (tools/install_system_deps.sh)"
        )
    images = []
    try:
        pcd.colors = o3d.utility.Vector3dVector(
            colors[modes[0]][visible].astype(np.float64) / 255.0
        )
        vis.add_geometry(pcd)
        opt = vis.get_render_option()
        opt.light_on = False
        opt.point_size = ps
        opt.background_color = np.asarray(background, dtype=np.float64)
        for mode in modes:
            pcd.colors = o3d.utility.Vector3dVector(
                colors[mode][visible].astype(np.float64) / 255.0
            )
            vis.update_geometry(pcd)
            markers = (
                weak_marker_mesh(view, visible, radius)
                if (mode == "weak" and weak_markers)
                else None
            )
            if markers is not None:
                vis.add_geometry(markers, reset_bounding_box=False)
            apply_camera(vis, cam)
            buf = np.asarray(vis.capture_screen_float_buffer(do_render=True))
            img = np.round(np.clip(buf, 0.0, 1.0) * 255.0).astype(np.uint8)
            if img.shape[:2] != (height, width):  # e.g. HiDPI framebuffers
                from PIL import Image

                img = np.asarray(Image.fromarray(img).resize((width, height), Image.NEAREST))
            images.append(img)
            if markers is not None:
                vis.remove_geometry(markers, reset_bounding_box=False)
    finally:
        vis.destroy_window()
    return images, visible


def _colorbar(draw, x0: int, y0: int, w: int, h: int, cmap: str, lo: str, hi: str, font) -> None:
    from matplotlib import colormaps

    cols = np.asarray(colormaps[cmap](np.linspace(0, 1, w), bytes=True))[:, :3]
    tw = int(draw.textlength(lo, font=font))
    x = x0 + tw + 4
    for i in range(w):
        draw.line([(x + i, y0), (x + i, y0 + h - 1)], fill=tuple(int(c) for c in cols[i]))
    draw.text((x0, y0 - 2), lo, fill=(0, 0, 0), font=font)
    draw.text((x + w + 4, y0 - 2), hi, fill=(0, 0, 0), font=font)


def grid_shape(n: int, columns: int = MAX_COLUMNS) -> tuple[int, int]:
    """(rows, columns) of a panel of ``n`` tiles, at most ``columns`` a row."""
    if n < 1 or columns < 1:
        raise ValueError(f"need at least one tile and one column, got {n} and {columns}")
    cols = min(n, columns)
    return -(-n // cols), cols


def tile_grid(
    images: Sequence[np.ndarray], columns: int = MAX_COLUMNS, fill: int = 255
) -> np.ndarray:
    """(H, W, 3) tiles in rows of at most ``columns``, left to right, top to bottom:
    (rows * H, cols * W, 3) uint8, the empty cells of the last row ``fill``."""
    h, w = images[0].shape[:2]
    for im in images:
        if im.shape != (h, w, 3):
            raise ValueError(f"tile shapes differ: {im.shape} vs {(h, w, 3)}")
    rows, cols = grid_shape(len(images), columns)
    out = np.full((rows * h, cols * w, 3), fill, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
    return out


def compose_panel(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    subtitles: Sequence[str] | None = None,
    legend: np.ndarray | None = None,
    colorbars: Sequence[tuple[str, str, str] | None] | None = None,
    title_height: int = TITLE_HEIGHT,
    columns: int = MAX_COLUMNS,
) -> np.ndarray:
    """Tiles in rows of at most ``columns``, each under its title region, legend strip below.

    ``images``: n arrays (H, W, 3) uint8 of one size, laid out as :func:`grid_shape` says
    (rows x cols). Output (rows * (title_height + H) + Lh, cols * W, 3) uint8 where Lh is the
    legend's height (0 without; its width must be cols * W). Each tile's title region is white
    with the title on the first text line and the subtitle (and an optional colour bar
    ``(cmap, lo_text, hi_text)``) on the second; tiles are separated by 1-px grey lines.
    """
    from PIL import Image, ImageDraw

    if not images:
        raise ValueError("compose_panel needs at least one image")
    h, w = images[0].shape[:2]
    rows, cols = grid_shape(len(images), columns)
    cell = title_height + h
    lh = 0 if legend is None else legend.shape[0]
    if legend is not None and legend.shape[1] != cols * w:
        raise ValueError(f"legend width {legend.shape[1]} != panel width {cols * w}")
    blank = np.full((title_height, w, 3), 255, dtype=np.uint8)
    cells = [np.concatenate([blank, im], axis=0) for im in images]
    canvas = np.full((rows * cell + lh, cols * w, 3), 255, dtype=np.uint8)
    canvas[: rows * cell] = tile_grid(cells, cols)
    if legend is not None and lh:
        canvas[rows * cell :] = legend
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    big, small = load_font(16), load_font(12)
    grey = (160, 160, 160)
    for i in range(len(images)):
        r, c = divmod(i, cols)
        x0, y0 = c * w, r * cell
        draw.text((x0 + 8, y0 + 4), titles[i], fill=(0, 0, 0), font=big)
        sub = subtitles[i] if subtitles else ""
        sx = x0 + 8
        if sub:
            draw.text((sx, y0 + 25), sub, fill=(70, 70, 70), font=small)
            sx += int(draw.textlength(sub, font=small)) + 12
        cb = colorbars[i] if colorbars else None
        if cb is not None:
            bar_w = max(20, min(100, x0 + w - sx - 60))
            _colorbar(draw, sx, y0 + 28, bar_w, 10, cb[0], cb[1], cb[2], small)
        if c > 0:
            draw.line([(x0, y0), (x0, y0 + cell - 1)], fill=grey)
        if r > 0:
            draw.line([(x0, y0), (x0 + w - 1, y0)], fill=grey)
    return np.asarray(pil).copy()


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write (H, W, 3) uint8 ``image`` as PNG to ``path`` atomically."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3|4) uint8 image, got {image.shape} {image.dtype}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _panel_legend(
    vd: ViewData, modes: list[str], visible: np.ndarray, view: str, width: int
) -> np.ndarray:
    """The legend strip of :func:`render_modes`: scene header, the classes present among the
    visible points of the label modes, and the modes' extras."""
    present: set[int] = set()
    for m in modes:
        arr = (
            {
                "gt": vd.semantic,
                "pred": vd.pred,
                "pseudo": vd.pseudo,
                "weak": None if vd.labelled is None else np.where(vd.labelled, vd.semantic, -1),
            }.get(m)
            if m in LABEL_MODES
            else None
        )
        if arr is not None:
            present.update(int(c) for c in np.unique(arr[visible]) if c >= 0)
    hidden_n = int((~visible).sum())
    header = (
        f"{vd.name}  ({vd.dataset}, {vd.num_points:,d} points"
        + (f", {hidden_n:,d} hidden" if hidden_n else "")
        + f", view {view})"
    )
    return legend_image(
        vd.class_names,
        vd.palette,
        width=grid_shape(len(modes))[1] * width,
        present=sorted(present),
        row_height=LEGEND_ROW_HEIGHT,
        header=header,
        extra=legend_extras(vd, modes, visible),
    )


def _panel_titles(
    vd: ViewData, modes: list[str], visible: np.ndarray
) -> tuple[list[str], list[str], list[tuple[str, str, str] | None]]:
    """Per-mode tile titles, statistics (:func:`mode_summary`) and colour bars (confidence,
    entropy; None for the others) of :func:`render_modes`."""
    names = [MODE_TITLES.get(m, m) for m in modes]
    if "weak" in modes and vd.label_spec:
        names[modes.index("weak")] = f"weak labels ({vd.label_spec})"
    if "rgb" in modes and vd.feat_kind in ("remission", "intensity", "height"):
        names[modes.index("rgb")] = vd.feat_kind
    subs = [mode_summary(vd, m, visible) for m in modes]
    bars = [
        (CONFIDENCE_CMAP, "0", "1")
        if m == "confidence"
        else (ENTROPY_CMAP, "0", f"{entropy_vmax(vd.num_classes):.2f}")
        if m == "entropy"
        else None
        for m in modes
    ]
    return names, subs, bars


def render_modes(
    view_data: ViewData,
    modes: Sequence[str],
    out_png: str | os.PathLike | None = None,
    view: str = "iso",
    width: int = 640,
    height: int = 480,
    point_size: float | None = None,
    hide_classes: Sequence[str] = (),
    hide_ceiling: bool | None = None,
    legend: bool = True,
    titles: bool = True,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    weak_markers: bool = True,
) -> np.ndarray:
    """Render ``modes`` of one scene, at most :data:`MAX_COLUMNS` a row, and (optionally)
    save the panel as PNG.

    Args:
        view_data: a loaded scene (:func:`pcseg.viz.data.load_view_data`).
        modes: colour modes (``pcseg.viz.colors.MODES``), e.g. ``['gt', 'weak', 'pred', 'error']``.
        out_png: where to write the panel (atomic); None = only return it.
        view: ``top | iso | front | side``.
        width, height: size of each rendered tile in pixels.
        point_size: pixels per point (None = from the point density).
        hide_classes: ground-truth classes to leave out; hide_ceiling: see :func:`hidden_mask`.
        legend: add a strip with scene info and the classes present in the label modes.
        titles: add the title region (mode name + statistic); without titles and legend the
            result is the bare tiles, (rows * height, cols * width, 3) (:func:`grid_shape`).
        background: RGB in [0, 1]; weak_markers: draw weakly labelled points as larger spheres.
    Returns: the panel, (rows * (title + height) + legend, cols * width, 3) uint8 with
        rows x cols = :func:`grid_shape` of the number of modes (6 modes: 2 x 3).
    """
    modes = list(modes)
    if not modes:
        raise ValueError("render_modes needs at least one mode")
    tiles, visible = render_tiles(
        view_data,
        modes,
        view,
        width,
        height,
        point_size,
        hide_classes,
        hide_ceiling,
        background,
        weak_markers,
    )
    if not titles and not legend:
        panel = tile_grid(tiles)
    else:
        leg = _panel_legend(view_data, modes, visible, view, width) if legend else None
        names, subs, bars = _panel_titles(view_data, modes, visible)
        panel = compose_panel(
            tiles,
            names if titles else [""] * len(modes),
            subs if titles else None,
            leg,
            bars if titles else None,
            TITLE_HEIGHT if titles else 0,
        )
    if out_png is not None:
        save_png(out_png, panel)
    return panel
