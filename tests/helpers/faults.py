"""Fault injection for the reader and prepare tests: damage synthetic raw files the way real
releases are damaged (the synthetic generators in pcseg.readers.synthetic write clean data)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pcseg.io.atomic import atomic_write_bytes


def inject_s3dis_damage(room_dir: Path) -> dict[str, Any]:
    """Damage a written room the way the real release is damaged; returns what was done.

    * ``ceiling_1.txt`` line 3: the space between g and b becomes a NUL byte (repairable);
    * ``floor_1.txt`` line 5: a 0x10 byte inside the x value (``12.3\\x1045``; skipped);
    * ``wall_1.txt`` line 2: the last column is dropped (skipped);
    * ``Annotations/.DS_Store``, ``Annotations/Icon`` (non-.txt), ``wall_1 (1).txt``
      (copy of the damaged wall_1.txt) and ``copy_Room_1.txt`` (misnamed) added.

    Returns {"nul": (file, line), "garbage": (file, line), "columns": (file, line),
    "stray": [names]} with 1-based line numbers.
    """
    ann = Path(room_dir) / "Annotations"

    def edit(name: str, lineno: int, fn) -> None:
        path = ann / name
        lines = path.read_bytes().split(b"\n")
        if len(lines) <= lineno:
            raise ValueError(f"{path} has fewer than {lineno} lines; cannot inject damage")
        lines[lineno - 1] = fn(lines[lineno - 1])
        atomic_write_bytes(path, b"\n".join(lines))

    def nul(line: bytes) -> bytes:
        toks = line.split(b" ")
        return b" ".join(toks[:4]) + b" " + toks[4] + b"\x00" + toks[5]

    def garbage(line: bytes) -> bytes:
        toks = line.split(b" ")
        x = toks[0]
        cut = x.index(b".") + 2 if b"." in x and len(x) > x.index(b".") + 2 else 1
        toks[0] = x[:cut] + b"\x10" + x[cut:]
        return b" ".join(toks)

    edit("ceiling_1.txt", 3, nul)
    edit("floor_1.txt", 5, garbage)
    edit("wall_1.txt", 2, lambda line: b" ".join(line.split(b" ")[:5]))
    atomic_write_bytes(ann / ".DS_Store", b"\x00\x00\x00\x01Bud1\x00\x00\x10\x00")
    atomic_write_bytes(ann / "Icon", b"")
    atomic_write_bytes(ann / "wall_1 (1).txt", (ann / "wall_1.txt").read_bytes())
    atomic_write_bytes(ann / "copy_Room_1.txt", (ann / "wall_1.txt").read_bytes())
    return {
        "nul": ("ceiling_1.txt", 3),
        "garbage": ("floor_1.txt", 5),
        "columns": ("wall_1.txt", 2),
        "stray": [".DS_Store", "Icon", "wall_1 (1).txt", "copy_Room_1.txt"],
    }


# --------------------------------------------------------------------------- damaged inputs
# Helpers of tests/test_damaged_inputs.py and the reader tests: each damages one raw file of a
# synthetic dataset in place (atomically) and returns what it did, so a test can check that
# the message names that file and those points.


def truncate_file(path: Path, drop_bytes: int = 7) -> int:
    """Cut the last ``drop_bytes`` bytes of ``path`` (a download cut short); returns the
    new size."""
    data = Path(path).read_bytes()
    atomic_write_bytes(path, data[: max(0, len(data) - drop_bytes)])
    return max(0, len(data) - drop_bytes)


def empty_file(path: Path) -> None:
    """Make ``path`` a 0-byte file (an empty scan / object file)."""
    atomic_write_bytes(path, b"")


def kitti_nan_points(bin_path: Path, indices: list[int], value: float = float("nan")) -> None:
    """Set x of the points ``indices`` (0-based, file order) of a ``.bin`` scan to ``value``."""
    import numpy as np

    pts = np.fromfile(bin_path, dtype="<f4").reshape(-1, 4)
    pts[list(indices), 0] = value
    atomic_write_bytes(bin_path, pts.tobytes())


def kitti_relabel(label_path: Path, indices: list[int], raw_id: int) -> None:
    """Give the points ``indices`` of a ``.label`` file the raw semantic id ``raw_id``
    (e.g. one that is not in the learning map: a mislabelled scan)."""
    import numpy as np

    lab = np.fromfile(label_path, dtype="<u4")
    lab[list(indices)] = (lab[list(indices)] & 0xFFFF0000) | raw_id
    atomic_write_bytes(label_path, lab.tobytes())


def s3dis_nan_line(obj_file: Path, lineno: int, token: bytes = b"nan") -> None:
    """Replace the x value of 1-based line ``lineno`` of an S3DIS object file by ``token``."""
    lines = Path(obj_file).read_bytes().split(b"\n")
    toks = lines[lineno - 1].split(b" ")
    toks[0] = token
    lines[lineno - 1] = b" ".join(toks)
    atomic_write_bytes(obj_file, b"\n".join(lines))


def s3dis_empty_room(room_dir: Path) -> list[str]:
    """Empty every annotation file of a room (0 points in all of them); returns their names."""
    names = sorted(p.name for p in (Path(room_dir) / "Annotations").glob("*.txt"))
    for n in names:
        empty_file(Path(room_dir) / "Annotations" / n)
    return names


def add_split_line(list_file: Path, line: str, position: int = 1) -> int:
    """Insert ``line`` into a ScanNet split list before 0-based line ``position``; returns
    its 1-based line number."""
    lines = Path(list_file).read_text().splitlines()
    lines.insert(position, line)
    atomic_write_bytes(list_file, ("\n".join(lines) + "\n").encode())
    return position + 1


def ply_vertices(ply: Path, fn) -> None:
    """Rewrite a PLY mesh (binary, all elements kept) after ``fn(vertex structured array)``
    returned the new vertex array (it may change dtypes, e.g. float colours)."""
    from plyfile import PlyData, PlyElement

    data = PlyData.read(str(ply))
    verts = fn(data["vertex"].data.copy())
    elements = [PlyElement.describe(verts, "vertex")]
    elements += [e for e in data.elements if e.name != "vertex"]
    import io

    buf = io.BytesIO()
    PlyData(elements, text=False).write(buf)
    atomic_write_bytes(ply, buf.getvalue())


def ply_nan_vertices(ply: Path, indices: list[int]) -> None:
    """Set x of vertices ``indices`` (0-based, file order) of a PLY mesh to NaN."""

    def fn(v):
        v["x"][list(indices)] = float("nan")
        return v

    ply_vertices(ply, fn)


def ply_float_colours(ply: Path, scale: float = 255.0) -> None:
    """Store a PLY mesh's red/green/blue as float32 holding 0..``scale`` (a 0-255 float
    export instead of uchar)."""
    import numpy as np

    def fn(v):
        names = v.dtype.names
        dt = [(n, "<f4" if n in ("red", "green", "blue") else v.dtype[n].str) for n in names]
        out = np.empty(len(v), dtype=dt)
        for n in names:
            out[n] = v[n] * (scale / 255.0) if n in ("red", "green", "blue") else v[n]
        return out

    ply_vertices(ply, fn)


# --------------------------------------------------------------------------- disk full
@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. ``'256k'``) on the folder ``mountpoint`` for the
    block, then unmount it: a real full disk. Skips the test with the reason where this
    process may not mount one (not root, no ``mount``, a container without the right)."""
    import pytest

    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip(f"a real full disk needs a tmpfs mount: not root (uid {os.geteuid()})")
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("a real full disk needs a tmpfs mount: no 'mount' command")
    cmd = [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(
            f"a real full disk needs a tmpfs mount: {' '.join(cmd)}: "
            f"{done.stderr.strip() or done.returncode}"
        )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=30)


def no_space_after(nbytes: int):
    """A stand-in for a writer given an open file (``torch.save(obj, fh)``, ``save(fh)``):
    it writes ``nbytes`` to the first argument that has ``write``, then fails as a full disk
    does (``OSError(ENOSPC)``)."""

    def write(*args, **kwargs) -> None:
        fh = next(a for a in args if hasattr(a, "write"))
        fh.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


# --------------------------------------------------------------------------- user mistakes
def lonlat_las(path: Path, n: int = 2000, seed: int = 0) -> Path:
    """A LAS tile whose x / y are longitude / latitude degrees (scale 1e-7, about 8.5 E
    47.3 N, a 40 m square) but which has no CRS: a file exported without reprojection."""
    import laspy
    import numpy as np

    from pcseg.benchmarks.predict import synthetic_outdoor

    d = synthetic_outdoor(n, seed, side=40.0)
    h = laspy.LasHeader(point_format=3, version="1.2")
    h.scales = np.array([1e-7, 1e-7, 0.01])
    h.offsets = np.array([8.0, 47.0, 0.0])
    las = laspy.LasData(h)
    las.x = 8.5 + d["xyz"][:, 0] / 75_000.0  # about 75 km per degree of longitude at 47 N
    las.y = 47.3 + d["xyz"][:, 1] / 111_000.0
    las.z = 400.0 + d["xyz"][:, 2]
    las.classification = d["classification"]
    las.intensity = d["intensity"].astype(np.uint16)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    las.write(str(path))
    return Path(path)


# --------------------------------------------------------------------------- kill -9
#: the line a child process prints when it reached the point it is killed at
PAUSED = "PAUSED-FOR-KILL"


def pause_at_rename(name: str, nth: int = 1) -> str:
    """Python source that makes the ``nth`` atomic rename onto a file called ``name`` (the
    ``os.replace`` of :func:`pcseg.io.atomic.atomic_path`) print :data:`PAUSED` and hang:
    the temporary is complete on disk, the final name not yet written, as in a kill -9 in
    the middle of a save."""
    return (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "_real, _seen = os.replace, [0]\n"
        "def _replace(src, dst, *a, **k):\n"
        f"    if Path(dst).name == {name!r}:\n"
        "        _seen[0] += 1\n"
        f"        if _seen[0] == {nth}:\n"
        f"            print({PAUSED!r}, flush=True)\n"
        "            time.sleep(600)\n"
        "    return _real(src, dst, *a, **k)\n"
        "os.replace = _replace\n"
    )


def kill_at_pause(code: str, timeout: float = 240.0) -> str:
    """Run the Python source ``code`` in a child (this checkout on its path, one thread),
    SIGKILL it as soon as it prints :data:`PAUSED`, and return what it printed. Fails the
    test (with that output) when the child ends or times out before pausing."""
    import signal
    import sys
    import threading

    import pytest

    from helpers.paths import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == PAUSED:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        timer.cancel()
        proc.kill()
        proc.wait(30)
    if not lines or lines[-1].strip() != PAUSED:
        pytest.fail("the child ended before the point it is killed at:\n" + "".join(lines))
    return "".join(lines)


def hidden_entries(root: Path) -> list[str]:
    """Every file or folder under ``root`` whose name starts with ``.`` (relative paths)."""
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob(".*"))


# --------------------------------------------------------------------------- hostile headers
def hostile_las(path: Path) -> Path:
    """The 14 KB LAS of issue 25 whose header claims 1,069,128,089 VLRs (500 points)."""
    import struct

    import laspy
    import numpy as np

    h = laspy.LasHeader(point_format=3, version="1.2")
    las = laspy.LasData(h)
    las.x, las.y, las.z = np.arange(500.0), np.arange(500.0), np.arange(500.0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    las.write(str(path))
    raw = bytearray(Path(path).read_bytes())
    struct.pack_into("<I", raw, 100, 1_069_128_089)  # number of VLRs
    atomic_write_bytes(path, bytes(raw))
    return Path(path)


def hostile_ply(path: Path) -> Path:
    """A binary PLY of 300 vertices whose header claims 10^12 of them."""
    import numpy as np
    from plyfile import PlyData, PlyElement

    v = np.zeros(300, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    v["x"] = np.arange(300)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(v, "vertex")], text=False).write(str(path))
    raw = Path(path).read_bytes().replace(b"element vertex 300\n", b"element vertex %d\n" % 10**12)
    atomic_write_bytes(path, raw)
    return Path(path)


def hostile_pcd(path: Path) -> Path:
    """A binary PCD of 300 points whose header claims 2e9 (WIDTH and POINTS)."""
    import numpy as np

    head = (
        "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
        "WIDTH 2000000000\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2000000000\nDATA binary\n"
    )
    body = np.arange(900, dtype="<f4").tobytes()
    atomic_write_bytes(path, head.encode() + body)
    return Path(path)
