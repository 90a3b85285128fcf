"""pcseg.viz.viewer: no display is a clean exit; the keys under Xvfb."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.paths import REPO
from helpers.viz import (
    CLS,
    PY,
    VIEW,
    _count,
    _headless_env,
    _read_png,
    _run_tool,
)

from pcseg.viz import palettes as P


# ----------------------------------------------------------------------------- viewer
@pytest.mark.timeout(60)
def test_viewer_without_display_exits_cleanly(room: dict):
    from pcseg.viz.viewer import display_problem

    assert "unset" in display_problem({})
    assert "XWayland" in display_problem({"WAYLAND_DISPLAY": "wayland-0"})
    import ctypes.util

    if ctypes.util.find_library("X11"):
        assert "cannot open X display" in display_problem({"DISPLAY": ":987654"})
    t = time.monotonic()
    r = _run_tool([room["run"]], env=_headless_env(), timeout=50)
    assert r.returncode == 2
    assert "--render" in r.stderr and "DISPLAY" in r.stderr
    assert time.monotonic() - t < 50


def _wait_for(cond, timeout: float, what: str):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(180)
@pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")), reason="Xvfb and xdotool not installed"
)
def test_viewer_keys_under_xvfb(room: dict, tmp_path: Path):
    r_fd, w_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w_fd), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(w_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(w_fd)
    viewer = None
    try:
        num = b""
        t = time.monotonic()
        while not num.endswith(b"\n") and time.monotonic() - t < 30:
            if not select.select([r_fd], [], [], 1.0)[0]:
                continue
            chunk = os.read(r_fd, 16)
            if not chunk:
                break
            num += chunk
        if not num.strip():
            pytest.skip("Xvfb is installed but did not start (no display number reported)")
        env = _headless_env()
        env["DISPLAY"] = f":{int(num.strip())}"
        shots = tmp_path / "shots"
        log = open(tmp_path / "viewer.log", "w")
        viewer = subprocess.Popen(
            [
                PY,
                *VIEW,
                str(room["run"]),
                "--scene",
                "room_1",
                "--screenshot-dir",
                str(shots),
                "--exit-after",
                "90",
                "--point-size",
                "4",
            ],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def xdo(*args: str) -> str:
            return subprocess.run(
                ["xdotool", *args], env=env, capture_output=True, text=True, timeout=20
            ).stdout

        wid: list[str] = []

        def found() -> bool:
            assert viewer.poll() is None, (tmp_path / "viewer.log").read_text()
            wid[:] = xdo("search", "--name", "pcseg viewer").split()
            return bool(wid)

        _wait_for(found, 60, "the viewer window")
        xdo("windowfocus", "--sync", wid[0])

        def press(key: str, pattern: str, mode: str | None = None) -> Path:
            """Press ``mode`` (a direct mode key, idempotent) then ``key`` until a file
            matching ``pattern`` appears: on a loaded machine a key sent while the window
            is still busy can be lost, so the keys are sent again (up to 4 times)."""
            for _ in range(4):
                xdo("windowfocus", "--sync", wid[0])
                if mode is not None:
                    xdo("key", "--clearmodifiers", mode)
                xdo("key", "--clearmodifiers", key)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 10:
                    if any(shots.glob(pattern)):
                        return next(shots.glob(pattern))
                    time.sleep(0.1)
            raise AssertionError(f"timed out waiting for {pattern}")

        time.sleep(0.5)
        rgb_png = press("s", "room_1_rgb_*.png")
        gt_png = press("s", "room_1_gt_*.png", mode="2")  # -> gt mode
        a, b = _read_png(rgb_png), _read_png(gt_png)
        assert a.shape == b.shape and (a != b).any()
        pal = P.get_palette("s3dis")
        for name in ("floor", "wall", "ceiling"):  # the viewer shows the whole room
            assert _count(b, pal[CLS[name]]) >= 50, name
        assert _count(b, pal[CLS["sofa"]]) == 0
        pred_png = press("s", "room_1_pred_*.png", mode="4")  # -> pred: the chair is a sofa
        c = _read_png(pred_png)
        assert _count(c, pal[CLS["sofa"]]) >= 10 and _count(c, pal[CLS["chair"]]) == 0
        for _ in range(3):  # a key can be lost on a loaded machine: send q again
            xdo("key", "q")
            try:
                viewer.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        viewer.wait(timeout=30)
        assert viewer.returncode == 0
        text = (tmp_path / "viewer.log").read_text()
        assert "mode gt" in text and "mode pred" in text
    finally:
        for proc in (viewer, xvfb):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        os.close(r_fd)
