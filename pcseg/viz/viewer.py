"""Interactive Open3D viewer (legacy ``VisualizerWithKeyCallback``) with colour-mode keys.

Keys: 1 rgb, 2 gt, 3 weak, 4 pred, 5 pseudo, 6 confidence, 7 entropy, 8 error, 9 pseudo_error;
N / P next / previous scene; V cycle the camera (iso, top, front, side); C toggle hiding the
ceiling; S screenshot (PNG, atomic); H or L print the legend, the current mode and this help;
Q or Esc quit. Open3D's own mouse controls stay (drag rotate, wheel zoom,
ctrl-drag pan, +/- point size, R reset view).

Without a reachable display Open3D's ``create_window`` silently falls back to an off-screen
EGL context and ``run()`` would then spin forever with no window: :func:`display_problem`
checks first, and the window creation itself is checked for that fallback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from pcseg.viz.colors import MODES, ModeUnavailable, available_modes, mode_colors, mode_summary
from pcseg.viz.data import SceneSource, ViewData
from pcseg.viz.errors import DisplayUnavailable, ViewError
from pcseg.viz.palettes import legend_text
from pcseg.viz.render import (
    apply_camera,
    fit_camera,
    hidden_mask,
    marker_mesh,
    private_runtime_dir,
    save_png,
)

MODE_KEYS: dict[str, str] = {str(i + 1): m for i, m in enumerate(MODES)}
HELP = (
    "keys: "
    + ", ".join(f"{k} {m}" for k, m in MODE_KEYS.items())
    + " | N/P next/previous scene | V camera iso/top/front/side | C hide/show ceiling"
    " | S screenshot | H/L legend+help | Q/Esc quit"
)
NO_DISPLAY_HINT = (
    "render a PNG instead, e.g.\n"
    "  pcseg view PATH --render out.png --modes gt,weak,pred,error --view top\n"
    "or run under a virtual display: xvfb-run -s '-screen 0 1280x1024x24' pcseg view PATH"
)


def display_problem(env: dict[str, str] | None = None) -> str | None:
    """None when an X11 display is reachable, else a message saying why not.

    ``DISPLAY`` must be set and ``XOpenDisplay`` must succeed (checked through libX11 when it
    can be loaded). Open3D's viewer uses GLFW/X11: a Wayland session needs XWayland, which sets
    ``DISPLAY``.
    """
    env = os.environ if env is None else env
    disp = env.get("DISPLAY", "")
    if not disp:
        if env.get("WAYLAND_DISPLAY"):
            return (
                "WAYLAND_DISPLAY is set but DISPLAY is not: Open3D's viewer needs an X11 "
                "display (XWayland)"
            )
        return "no display: DISPLAY and WAYLAND_DISPLAY are unset"
    lib = ctypes.util.find_library("X11")
    if lib is None:
        return None  # cannot check; trust DISPLAY (window creation is still checked)
    try:
        x11 = ctypes.CDLL(lib)
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        handle = x11.XOpenDisplay(disp.encode())
    except OSError:
        return None
    if not handle:
        return f"cannot open X display {disp!r} (DISPLAY is set but no X server answers)"
    x11.XCloseDisplay(handle)
    return None


def _call_capturing_output(fn: Callable[[], object]) -> tuple[object, str]:
    """Run ``fn`` with the process's fds 1 and 2 redirected to a temp file (C++ logs too);
    returns (result, captured text). The captured text is echoed back to stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            result = fn()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace")
    if text:
        sys.stderr.write(text)
    return result, text


class Viewer:
    """Browse the scenes of a source (:func:`pcseg.viz.data.open_source`) in an Open3D window.

    Args:
        source: scenes to browse; scene: the first one shown (default: the first).
        mode: the initial colour mode; point_size: pixels per point.
        hide_classes / hide_ceiling: points left out (see ``render.hidden_mask``).
        screenshot_dir: where S writes ``<scene>_<mode>_<k>.png``.
        exit_after: close the window after this many seconds (tests / scripted demos).
        out: where messages go (default stdout).
    """

    def __init__(
        self,
        source: SceneSource,
        scene: str | None = None,
        mode: str = "rgb",
        point_size: float = 3.0,
        hide_classes: Sequence[str] = (),
        hide_ceiling: bool = False,
        screenshot_dir: str | os.PathLike = ".",
        width: int = 1280,
        height: int = 900,
        background: Sequence[float] = (1.0, 1.0, 1.0),
        exit_after: float | None = None,
        out: TextIO | None = None,
    ) -> None:
        if mode not in MODES:
            raise ViewError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.source = source
        self.index = 0 if scene is None else source.index(scene)
        self.mode = mode
        self.point_size = float(point_size)
        self.hide_classes = tuple(hide_classes)
        self.hide_ceiling = hide_ceiling
        self.screenshot_dir = Path(screenshot_dir)
        self.width, self.height = int(width), int(height)
        self.background = np.asarray(background, dtype=np.float64)
        self.exit_after = exit_after
        self.out = out or sys.stdout
        self.view: ViewData | None = None
        self.visible: np.ndarray | None = None
        self.vis = None
        self.pcd = None
        self.markers = None
        self.shots = 0
        self.camera = "iso"

    # ----------------------------------------------------------------- messages
    def say(self, msg: str) -> None:
        """Print ``msg`` to the viewer's output, flushed."""
        print(msg, file=self.out, flush=True)

    def describe(self) -> str:
        """Scene, mode, statistic and available modes as one block of text."""
        v = self.view
        stat = mode_summary(v, self.mode, self.visible)
        return (
            f"scene {self.index + 1}/{len(self.source.scenes)}: {v.name} ({v.dataset}, "
            f"{v.num_points:,d} points) | mode [{self.mode}]"
            + (f" {stat}" if stat else "")
            + f"\navailable modes: {', '.join(available_modes(v))}"
        )

    def print_legend(self) -> None:
        """Print the class legend (with point counts of the current label mode) and help."""
        v = self.view
        labels = {
            "gt": v.semantic,
            "pred": v.pred,
            "pseudo": v.pseudo,
            "weak": None if v.labelled is None else np.where(v.labelled, v.semantic, -1),
        }.get(self.mode, v.semantic)
        lab = labels[self.visible]
        counts = np.bincount(lab[lab >= 0], minlength=v.num_classes)
        self.say(self.describe())
        self.say(legend_text(v.class_names, v.palette, counts=counts, ansi=self.out.isatty()))
        self.say(HELP)

    # ----------------------------------------------------------------- scene/mode
    def _load(self) -> None:
        self.view = self.source.load(self.source.scenes[self.index])
        for note in self.view.notes:
            self.say(f"warning: {note}")
        self._build()

    def _build(self) -> None:
        import open3d as o3d

        self.visible = ~hidden_mask(self.view, "free", self.hide_classes, self.hide_ceiling)
        pts = self.view.coords[self.visible].astype(np.float64)
        self.pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
        self.markers = None
        if self.mode not in available_modes(self.view):
            self.say(f"mode {self.mode} unavailable for {self.view.name}; showing rgb")
            self.mode = "rgb"

    def _marker_geometry(self):
        v = self.view
        if v.labelled is None:
            return None
        sel = v.labelled & self.visible
        if not sel.any() or sel.sum() > 0.2 * self.visible.sum():
            return None
        lo, hi = np.percentile(v.coords[self.visible], [0.5, 99.5], axis=0)
        radius = 0.004 * float(np.linalg.norm(hi - lo))
        return marker_mesh(v.coords[sel], mode_colors(v, "weak")[sel], radius)

    def set_mode(self, mode: str) -> bool:
        """Recolour the cloud with ``mode``; False (and a message) when unavailable."""
        import open3d as o3d

        try:
            colors = mode_colors(self.view, mode)
        except ModeUnavailable as e:
            self.say(str(e))
            return False
        self.mode = mode
        self.pcd.colors = o3d.utility.Vector3dVector(
            colors[self.visible].astype(np.float64) / 255.0
        )
        if self.vis is not None:
            self.vis.update_geometry(self.pcd)
            if self.markers is not None:
                self.vis.remove_geometry(self.markers, reset_bounding_box=False)
                self.markers = None
            if mode == "weak":
                self.markers = self._marker_geometry()
                if self.markers is not None:
                    self.vis.add_geometry(self.markers, reset_bounding_box=False)
        stat = mode_summary(self.view, mode, self.visible)
        self.say(f"[{self.view.name}] mode {mode}" + (f": {stat}" if stat else ""))
        return True

    def step_scene(self, delta: int) -> bool:
        """Show the scene ``delta`` positions away (wrapping around)."""
        if len(self.source.scenes) < 2:
            self.say("only one scene")
            return False
        self.index = (self.index + delta) % len(self.source.scenes)
        self._reload_geometry()
        self.say(self.describe())
        return True

    def _reload_geometry(self, reload_scene: bool = True) -> None:
        self.vis.clear_geometries()
        self.markers = None
        if reload_scene:
            self._load()
        else:
            self._build()
        self.vis.add_geometry(self.pcd, reset_bounding_box=True)
        self.set_mode(self.mode)
        self.set_camera(self.camera)

    def set_camera(self, name: str) -> bool:
        """Fit the camera to the visible points from view ``name`` (``render.VIEWS``)."""
        self.camera = name
        pts = self.view.coords[self.visible]
        w, h = self.width, self.height
        try:  # the window may have been resized
            intr = self.vis.get_view_control().convert_to_pinhole_camera_parameters().intrinsic
            w, h = (intr.width, intr.height) if intr.width > 0 and intr.height > 0 else (w, h)
        except RuntimeError:
            pass
        apply_camera(self.vis, fit_camera(pts, name, w, h))
        return True

    def cycle_camera(self) -> bool:
        """Switch to the next camera of iso -> top -> front -> side."""
        order = ["iso", "top", "front", "side"]
        nxt = order[(order.index(self.camera) + 1) % len(order)] if self.camera in order else "iso"
        self.say(f"camera {nxt}")
        return self.set_camera(nxt)

    def toggle_ceiling(self) -> bool:
        """Hide / show the ceiling (ground-truth class and the top of the height range)."""
        self.hide_ceiling = not self.hide_ceiling
        self._reload_geometry(reload_scene=False)
        self.say(
            f"ceiling {'hidden' if self.hide_ceiling else 'shown'}: "
            f"{int((~self.visible).sum()):,d} points hidden"
        )
        return True

    def screenshot(self) -> Path:
        """Save the current window as ``<scene>_<mode>_<k>.png`` (atomic) and return its path."""
        buf = np.asarray(self.vis.capture_screen_float_buffer(do_render=True))
        img = np.round(np.clip(buf, 0, 1) * 255).astype(np.uint8)
        path = self.screenshot_dir / f"{self.view.name}_{self.mode}_{self.shots:03d}.png"
        self.shots += 1
        save_png(path, img)
        self.say(f"saved screenshot {path}")
        return path

    # ----------------------------------------------------------------- main loop
    def run(self) -> None:
        """Open the window and block until it is closed. RuntimeError without a display."""
        import open3d as o3d

        problem = display_problem()
        if problem is not None:
            raise DisplayUnavailable(f"{problem}\n{NO_DISPLAY_HINT}")
        self._load()
        private_runtime_dir()  # else Mesa prints "error: XDG_RUNTIME_DIR is invalid ..."
        vis = o3d.visualization.VisualizerWithKeyCallback()
        verbosity = o3d.utility.get_verbosity_level()
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Info)
        try:
            ok, log = _call_capturing_output(
                lambda: vis.create_window(
                    window_name="pcseg viewer", width=self.width, height=self.height, visible=True
                )
            )
        finally:
            o3d.utility.set_verbosity_level(verbosity)
        if not ok or "falling back to EGL" in log or "No display detected" in log:
            vis.destroy_window()
            raise DisplayUnavailable(
                f"Open3D could not open a window on DISPLAY="
                f"{os.environ.get('DISPLAY', '')!r}\n{NO_DISPLAY_HINT}"
            )
        self.vis = vis
        vis.add_geometry(self.pcd)
        opt = vis.get_render_option()
        opt.light_on = False
        opt.point_size = self.point_size
        opt.background_color = self.background
        self.set_mode(self.mode)
        self.set_camera(self.camera)

        def on_mode(mode: str):
            return lambda _vis: self.set_mode(mode)

        for key, mode in MODE_KEYS.items():
            vis.register_key_callback(ord(key), on_mode(mode))
        vis.register_key_callback(ord("N"), lambda _v: self.step_scene(+1))
        vis.register_key_callback(ord("P"), lambda _v: self.step_scene(-1))
        vis.register_key_callback(ord("V"), lambda _v: self.cycle_camera())
        vis.register_key_callback(ord("C"), lambda _v: self.toggle_ceiling())
        vis.register_key_callback(ord("S"), lambda _v: (self.screenshot(), False)[1])
        vis.register_key_callback(ord("H"), lambda _v: (self.print_legend(), False)[1])
        vis.register_key_callback(ord("L"), lambda _v: (self.print_legend(), False)[1])
        vis.register_key_callback(ord("Q"), lambda _v: (_v.close(), False)[1])
        if self.exit_after is not None:
            deadline = time.monotonic() + float(self.exit_after)

            def watchdog(v) -> bool:
                if time.monotonic() > deadline:
                    self.say("exit-after reached; closing")
                    v.close()
                time.sleep(0.02)
                return False

            vis.register_animation_callback(watchdog)
        self.say(self.describe())
        self.say(HELP)
        try:
            vis.run()
        finally:
            vis.destroy_window()
            self.vis = None
