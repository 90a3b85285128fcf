"""Browser front end of ``pcseg annotate`` (viser: a Python web server, the client in a browser).

Why a browser front end first: the scans live on headless GPU servers without a display; a
desktop window (Open3D) needs X forwarding or a virtual screen, which is slow and fragile
over SSH. viser serves a three.js client over HTTP + websocket from the server itself, so the
user runs ``pcseg annotate ...`` there and opens ``http://localhost:8080`` on their own
machine through an SSH tunnel (``ssh -L 8080:localhost:8080 server``). Clicks arrive in Python
as a ray (origin, direction) which :func:`pcseg.annotate.state.pick_point` intersects with the
points: the front-most point within ``pick_px`` pixels of the ray (tolerance = pixels x the
camera's vertical field of view / image height, per metre of depth).

Controls (panel on the right; hotkeys via viser's command palette, no modifier):

* class: the dropdown, or the number keys 0-9 (classes 0..9); the legend lists names/colours;
* tool (dropdown, or keys p / b / r / s / x): ``point`` (one point), ``brush`` (all points
  within the brush radius of the picked point; it starts at :data:`BRUSH_SPACINGS` median
  point spacings of the scene, :func:`default_brush_radius`), ``region`` (grow the connected
  region of similar colour / normal from the picked point, see :mod:`pcseg.annotate.state`; shown
  highlighted; Accept (Enter) labels it, Reject (Escape) drops it), ``superpoint`` (shows,
  highlighted, the superpoint of the picked point: the points one click there labels when
  training with ``data.superpoints``; Accept labels them all, Reject drops it), ``erase``
  (clears the labels within the brush radius);
* Undo (z) / Redo (y); per-class counts and the labelled fraction are shown live;
* colour mode: rgb, labels (the user's labels over dimmed RGB), gt (when the scene has ground
  truth), pred / pseudo / entropy / confidence (when a run is given);
* suggestions (with a run): k spread-out uncertain spots (:mod:`pcseg.annotate.suggest`),
  shown as large red markers; "Next spot" moves the camera to the next one.

Every change is saved atomically to ``labels/<spec>/<scene>.npy`` right away.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.annotate.session import Session
from pcseg.annotate.state import AnnotationError, pick_point
from pcseg.annotate.suggest import Spot, suggest_spots, uncertainty

TOOLS = ("point", "brush", "region", "superpoint", "erase")
HIGHLIGHT = (255, 0, 255)
SPOT_COLOR = (255, 30, 30)


class ViserMissing(ImportError):
    """viser (the ``pcseg[annotate]`` extra) is not installed; the message says how to."""


def import_viser():
    """The viser module, or :class:`ViserMissing` with the install hint."""
    try:
        import viser
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ViserMissing(
            f"pcseg annotate needs viser: pip install 'pcseg[annotate]' (or pip install viser): {e}"
        ) from None
    return viser


def default_camera(coords: np.ndarray) -> dict[str, Any]:
    """An oblique view of the whole scene: position, look_at, up (+z), vertical fov (rad)."""
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    centre = (lo + hi) / 2
    ext = float(np.linalg.norm(hi - lo)) or 1.0
    fov = math.radians(50.0)
    direction = np.array([-0.55, -0.75, 0.65])
    direction /= np.linalg.norm(direction)
    dist = 0.5 * ext / math.tan(fov / 2) * 1.1
    return {
        "position": (centre + direction * dist).tolist(),
        "look_at": centre.tolist(),
        "up": [0.0, 0.0, 1.0],
        "fov": fov,
    }


#: the default brush radius, in median point spacings of the scene
BRUSH_SPACINGS = 3.0


def default_point_size(coords: np.ndarray) -> float:
    """World-unit point size: ~1.5x the median nearest-neighbour spacing (on a sample)."""
    from pcseg.readers.common import median_spacing

    if len(coords) < 2:
        return 0.02
    return float(max(median_spacing(coords, sample=2000) * 1.5, 1e-3))


def default_brush_radius(coords: np.ndarray, spacings: float = BRUSH_SPACINGS) -> float:
    """The brush radius a session starts with (metres): ``spacings`` median nearest-neighbour
    spacings of ``coords`` (cKDTree on a seeded sample of 2000 points,
    :func:`pcseg.readers.common.median_spacing`), so that a brush stroke takes a few points
    whatever the density (0.05 m indoors, 0.5 m and more airborne), rounded to 3 decimals and
    at most a quarter of the scene's diagonal (the slider's end)."""
    from pcseg.readers.common import median_spacing

    ext = float(np.linalg.norm(np.ptp(coords, axis=0))) if len(coords) else 1.0
    radius = spacings * median_spacing(coords, sample=2000) if len(coords) >= 2 else 0.1
    return round(min(max(radius, 0.001), (ext or 1.0) / 4), 3)


def _reported(method):
    """GUI callbacks: an AnnotationError (e.g. the label file became unwritable) is shown in
    the status line instead of dying in viser's thread; the labels stay in memory."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except AnnotationError as e:
            self._say(f"error: {e}")
            return None

    return wrapper


class WebAnnotator:
    """The viser GUI around a :class:`Session` (module docstring)."""

    def __init__(
        self,
        session: Session,
        host: str = "127.0.0.1",
        port: int = 8080,
        pick_px: float = 8.0,
        point_size: float | None = None,
        debug_json: str | Path | None = None,
        brush_radius: float | None = None,
    ) -> None:
        viser = import_viser()
        self.session = session
        self.state = session.state
        self.view = session.view
        self.pick_px = float(pick_px)
        self.debug_json = None if debug_json is None else Path(debug_json)
        self.lock = threading.RLock()
        self.preview: np.ndarray | None = None
        self.spots: list[Spot] = []
        self.spot_i = -1
        self.last_message = session.start_message()
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.server.gui.configure_theme(control_width="medium")
        self.server.scene.set_up_direction("+z")
        cam = default_camera(self.view.coords)
        ic = self.server.initial_camera
        ic.position, ic.look_at, ic.up = cam["position"], cam["look_at"], cam["up"]
        ic.fov = cam["fov"]
        self.point_size = point_size or default_point_size(self.view.coords)
        self.brush_radius = brush_radius or default_brush_radius(self.view.coords)
        self._build_gui()
        self._drawn_mode = "labels"
        self.cloud = self.server.scene.add_point_cloud(
            "/scene",
            self.view.coords,
            self._base_colors("labels"),
            point_size=self.point_size,
            point_shape="circle",
            precision="float32",
        )
        self.label_cloud = None
        self._draw_labels()
        self.preview_cloud = None
        self.spot_cloud = None
        self.server.scene.on_click()(self._on_click)
        self.server.on_client_connect(self._on_connect)
        self._refresh_text()

    # ------------------------------------------------------------------ GUI
    def _build_gui(self) -> None:
        gui = self.server.gui
        names = self.session.classes.names
        gui.add_markdown(
            f"**{self.session.scene}** ({self.view.num_points:,d} points)  \n"
            f"labels: `{self.session.spec}`"
        )
        self.class_options = [f"{i} {n}" for i, n in enumerate(names)]
        self.g_class = gui.add_dropdown(
            "Class", self.class_options, initial_value=self.class_options[0]
        )
        self.g_tool = gui.add_dropdown("Tool", TOOLS, initial_value="point")
        ext = float(np.linalg.norm(np.ptp(self.view.coords, axis=0))) or 1.0
        self.g_brush = gui.add_slider(
            "Brush radius (m)", 0.0, round(ext / 4, 3), 0.005, self.brush_radius
        )
        with gui.add_folder("Region growing", expand_by_default=False):
            self.g_grow_r = gui.add_slider(
                "Step radius (m)",
                0.005,
                round(ext / 10, 3),
                0.005,
                round(max(2.5 * self.point_size / 1.5, 0.01), 3),
            )
            self.g_grow_c = gui.add_slider("Colour tolerance", 0.0, 1.0, 0.01, 0.15)
            self.g_grow_n = gui.add_slider("Normal angle (deg, 90=off)", 1, 90, 1, 30)
            self.g_accept = gui.add_button("Accept region", disabled=True)
            self.g_reject = gui.add_button("Reject region", disabled=True)
        row = gui.add_button_group("Edit", ("Undo", "Redo"))
        modes = ["rgb", "labels"]
        if (self.view.semantic >= 0).any():
            modes.append("gt")
        if self.session.has_predictions:
            modes += [
                m
                for m in ("pred", "pseudo", "entropy", "confidence")
                if getattr(self.view, m) is not None
            ]
        self.g_mode = gui.add_dropdown("Colours", modes, initial_value="labels")
        self.g_psize = gui.add_slider(
            "Point size",
            self.point_size / 4,
            self.point_size * 4,
            self.point_size / 20,
            self.point_size,
        )
        if self.session.has_predictions:
            with gui.add_folder("Suggestions"):
                self.g_k = gui.add_slider("Spots", 1, 50, 1, 10)
                self.g_suggest = gui.add_button("Suggest where to label")
                self.g_next = gui.add_button("Next spot")
                self.g_suggest.on_click(lambda _: self.suggest())
                self.g_next.on_click(lambda _: self.next_spot())
        self.g_counts = gui.add_markdown("")
        self.g_status = gui.add_markdown("")
        swatches = "  \n".join(
            f"<span style='color:rgb({c[0]},{c[1]},{c[2]})'>&#9632;</span> {i} {n}"
            for i, (n, c) in enumerate(zip(names, self.session.classes.colors))
        )
        with gui.add_folder("Legend"):
            gui.add_markdown(swatches)
        # hotkeys
        for i in range(10):  # a key outside the list says so in the status line
            label = f"Class {i}: {names[i]}" if i < len(names) else f"Class {i} (not in the list)"
            cmd = gui.add_command(label, hotkey=str(i))  # type: ignore[arg-type]
            cmd.on_trigger(lambda _, i=i: self.set_class(i))
        for key, tool in (
            ("P", "point"),
            ("B", "brush"),
            ("R", "region"),
            ("S", "superpoint"),
            ("X", "erase"),
        ):
            cmd = gui.add_command(f"Tool: {tool}", hotkey=key)  # type: ignore[arg-type]
            cmd.on_trigger(lambda _, tool=tool: self.set_tool(tool))
        gui.add_command("Undo", hotkey="Z").on_trigger(lambda _: self.undo())
        gui.add_command("Redo", hotkey="Y").on_trigger(lambda _: self.redo())
        gui.add_command("Accept region", hotkey="enter").on_trigger(lambda _: self.accept())
        gui.add_command("Reject region", hotkey="escape").on_trigger(lambda _: self.reject())
        row.on_click(lambda ev: self.undo() if ev.target.value == "Undo" else self.redo())
        self.g_accept.on_click(lambda _: self.accept())
        self.g_reject.on_click(lambda _: self.reject())
        self.g_mode.on_update(lambda _: self._redraw())
        self.g_psize.on_update(lambda _: self._set_point_size(float(self.g_psize.value)))

    # ------------------------------------------------------------------ actions
    @property
    def current_class(self) -> int:
        return self.class_options.index(self.g_class.value)

    @_reported
    def set_class(self, cls: int) -> None:
        """Make ``cls`` the current class (AnnotationError when outside the list)."""
        c = self.session.classes.check(cls)
        self.g_class.value = self.class_options[c]
        self._say(f"class {self.class_options[c]}")

    @_reported
    def set_tool(self, tool: str) -> None:
        """Switch to ``tool`` (one of :data:`TOOLS`)."""
        if tool not in TOOLS:
            raise AnnotationError(f"unknown tool {tool!r}; expected one of {TOOLS}")
        self.g_tool.value = tool
        self._say(f"tool {tool}")

    def click_point(self, idx: int) -> None:
        """What a click on point ``idx`` does with the current tool and class."""
        with self.lock:
            tool = self.g_tool.value
            if tool == "point":
                n = self.state.add([idx], self.current_class)
                self._say(f"labelled point {idx} as {self.g_class.value} ({n} changed)")
            elif tool == "brush":
                sel = self.state.brush(idx, float(self.g_brush.value))
                n = self.state.add(sel, self.current_class)
                self._say(f"brushed {len(sel)} points as {self.g_class.value} ({n} changed)")
            elif tool == "erase":
                sel = self.state.brush(idx, float(self.g_brush.value))
                n = self.state.erase(sel)
                self._say(f"erased {n} labels")
            elif tool == "superpoint":
                self.preview = self.session.superpoint_of(idx)
                self._show_preview()
                self._say(
                    f"superpoint of {len(self.preview):,d} points (what a click here spreads to "
                    f"with data.superpoints): Accept (Enter) labels it {self.g_class.value}, "
                    "Reject (Escape) drops it"
                )
                return
            else:
                ang = float(self.g_grow_n.value)
                self.preview = self.state.grow_region(
                    idx,
                    radius=float(self.g_grow_r.value),
                    color_tol=float(self.g_grow_c.value),
                    normal_deg=None if ang >= 90 else ang,
                )
                self._show_preview()
                self._say(
                    f"region of {len(self.preview):,d} points: Accept (Enter) labels it "
                    f"{self.g_class.value}, Reject (Escape) drops it"
                )
                return
            self._redraw()

    @_reported
    def accept(self) -> None:
        with self.lock:
            if self.preview is None:
                return
            n = self.state.add(self.preview, self.current_class)
            self._say(f"region: {n} points labelled {self.g_class.value}")
            self.preview = None
            self._show_preview()
            self._redraw()

    @_reported
    def reject(self) -> None:
        with self.lock:
            self.preview = None
            self._show_preview()
            self._say("region dropped")

    @_reported
    def undo(self) -> None:
        with self.lock:
            self._say("undone" if self.state.undo() else "nothing to undo")
            self._redraw()

    @_reported
    def redo(self) -> None:
        with self.lock:
            self._say("redone" if self.state.redo() else "nothing to redo")
            self._redraw()

    @_reported
    def suggest(self) -> None:
        v = self.view
        u = uncertainty(
            v.entropy, v.num_classes, pred=v.pred, pseudo=v.pseudo, confidence=v.confidence
        )
        ext = float(np.linalg.norm(np.ptp(v.coords, axis=0))) or 1.0
        self.spots = suggest_spots(
            v.coords,
            u,
            k=int(self.g_k.value),
            cell=max(ext / 40, 0.05),
            labelled=self.state.labels >= 0,
        )
        self.spot_i = -1
        pts = np.stack([s.position for s in self.spots]) if self.spots else np.zeros((0, 3))
        self.spot_cloud = self.server.scene.add_point_cloud(
            "/suggestions",
            pts.astype(np.float32),
            SPOT_COLOR,
            point_size=self.point_size * 6,
            point_shape="circle",
        )
        self._say(f"{len(self.spots)} suggested spots (red); Next spot flies there")

    @_reported
    def next_spot(self) -> None:
        if not self.spots:
            self.suggest()
        if not self.spots:
            return
        self.spot_i = (self.spot_i + 1) % len(self.spots)
        p = self.spots[self.spot_i].position.astype(np.float64)
        for client in self.server.get_clients().values():
            cam = client.camera
            offset = np.asarray(cam.position) - np.asarray(cam.look_at)
            offset *= min(1.0, 2.0 / max(float(np.linalg.norm(offset)), 1e-6))
            with client.atomic():
                cam.look_at = p
                cam.position = p + offset
        self._say(
            f"spot {self.spot_i + 1}/{len(self.spots)} at point {self.spots[self.spot_i].point}"
        )

    # ------------------------------------------------------------------ events
    def _on_click(self, event: Any) -> None:
        cam = event.client.camera
        height = max(int(getattr(cam, "image_height", 0) or 0), 1)
        tol = self.pick_px * float(cam.fov) / height
        idx = pick_point(self.view.coords, event.ray_origin, event.ray_direction, tol)
        if idx is None:
            self._say("no point under the cursor")
            return
        try:
            self.click_point(idx)
        except AnnotationError as e:
            self._say(f"error: {e}")
        self._debug({"last_pick": idx, "screen_pos": list(event.screen_pos)})

    def _on_connect(self, client: Any) -> None:
        client.camera.on_update(lambda cam: self._debug({}))

    # ------------------------------------------------------------------ drawing
    # In the labels mode the scene cloud keeps its (dimmed RGB) colours and the labelled
    # points are drawn as a second, slightly larger cloud: an edit sends only the labelled
    # points to the browser, not N colours (large scans over an SSH tunnel).
    def _base_colors(self, mode: str) -> np.ndarray:
        from pcseg.viz.colors import label_colors, mode_colors, rgb_colors

        pal = self.session.classes.colors
        if mode == "labels":
            base = rgb_colors(self.view.feats, self.view.feat_kind).astype(np.float32)
            return (base * 0.45 + 110).astype(np.uint8)
        if mode in ("gt", "pred", "pseudo"):
            arr = {"gt": self.view.semantic, "pred": self.view.pred, "pseudo": self.view.pseudo}[
                mode
            ]
            if arr is not None:
                return label_colors(arr, pal)
        return mode_colors(self.view, mode)  # also names a mode the scene lacks

    def _colors(self) -> np.ndarray:
        """(N, 3) uint8 colours as shown in the current mode (labels drawn over the base)."""
        mode = self.g_mode.value
        out = self._base_colors(mode)
        if mode == "labels":
            lab = self.state.labels >= 0
            out[lab] = self.session.classes.colors[self.state.labels[lab]]
        return out

    def _draw_labels(self) -> None:
        if self.label_cloud is not None:
            self.label_cloud.remove()
            self.label_cloud = None
        lab = np.flatnonzero(self.state.labels >= 0)
        if self._drawn_mode == "labels" and lab.size:
            colors = self.session.classes.colors[self.state.labels[lab]]
            self.label_cloud = self.server.scene.add_point_cloud(
                "/labels",
                self.view.coords[lab],
                colors,
                point_size=self.point_size * 1.3,
                point_shape="circle",
                precision="float32",
            )

    def _set_point_size(self, size: float) -> None:
        self.point_size = size
        self.cloud.point_size = size
        self._draw_labels()

    def _redraw(self) -> None:
        mode = self.g_mode.value
        if mode != self._drawn_mode:
            self._drawn_mode = mode
            self.cloud.colors = self._base_colors(mode)
        self._draw_labels()
        self._refresh_text()

    def _show_preview(self) -> None:
        if self.preview_cloud is not None:
            self.preview_cloud.remove()
            self.preview_cloud = None
        has = self.preview is not None and len(self.preview) > 0
        if has:
            self.preview_cloud = self.server.scene.add_point_cloud(
                "/preview",
                self.view.coords[self.preview],
                HIGHLIGHT,
                point_size=self.point_size * 1.6,
                point_shape="circle",
                precision="float32",
            )
        self.g_accept.disabled = not has
        self.g_reject.disabled = not has

    def _refresh_text(self) -> None:
        st = self.state
        rows = "\n".join(
            f"| {i} {n} | {int(c):,d} |"
            for i, (n, c) in enumerate(zip(st.classes.names, st.counts()))
            if c
        )
        self.g_counts.content = (
            f"**{st.num_labelled:,d} / {st.num_points:,d} labelled "
            f"({100 * st.labelled_fraction:.3f}%)**\n\n| class | points |\n|---|---|\n{rows}"
        )
        self.g_status.content = self.last_message

    def _say(self, msg: str) -> None:
        self.last_message = msg
        self._refresh_text()
        self._debug({"message": msg})

    def _debug(self, extra: dict[str, Any]) -> None:
        """Test hook: the clients' cameras and the last message as JSON (atomic write)."""
        if self.debug_json is None:
            return
        from pcseg.io.atomic import atomic_write_json

        cams = {}
        for cid, client in self.server.get_clients().items():
            c = client.camera
            cams[str(cid)] = {
                "position": np.asarray(c.position).tolist(),
                "wxyz": np.asarray(c.wxyz).tolist(),
                "fov": float(c.fov),
                "image_height": int(c.image_height),
                "image_width": int(c.image_width),
            }
        info = {
            "cameras": cams,
            "message": self.last_message,
            "labelled": self.state.num_labelled,
            **extra,
        }
        try:
            atomic_write_json(self.debug_json, info)
        except OSError:
            pass

    def serve_forever(self, exit_after: float | None = None) -> None:
        """Block until interrupted (or ``exit_after`` seconds); the labels are already saved."""
        url = f"http://localhost:{self.server.get_port()}"
        print(
            f"pcseg annotate: {self.session.scene} at {url} (from another machine: "
            f"ssh -L {self.server.get_port()}:localhost:{self.server.get_port()} THIS_HOST, "
            f"then open {url}); labels autosave to {self.session.label_path}",
            flush=True,
        )
        self._debug({"ready": True, "port": self.server.get_port()})
        t0 = time.monotonic()
        try:
            while exit_after is None or time.monotonic() - t0 < exit_after:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.server.stop()
        print(
            f"saved {self.state.num_labelled:,d} labelled points to {self.session.label_path}",
            flush=True,
        )
