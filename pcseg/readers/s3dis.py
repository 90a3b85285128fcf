"""S3DIS reader (Stanford3dDataset_v1.2, aligned and non-aligned releases).

Raw layout (``RAW`` is the release folder holding ``Area_1`` .. ``Area_6``, or its parent)::

    RAW/Area_N/<room>/<room>.txt                 whole room (not read: the annotations are)
    RAW/Area_N/<room>/Annotations/<class>_<i>.txt  one object instance per file
    RAW/Area_N/Area_N_alignmentAngle.txt         non-aligned release only

Every line of an object file is ``x y z r g b`` (metres, 0-255 integers). A room is the
concatenation of its *valid* object files in Python ``sorted()`` order of their file
names (byte order, so ``chair_10.txt`` comes before ``chair_2.txt``; this is the order
Pointcept's ``sorted(glob(...))`` gives when no stray file is present). The instance id
of a point is the position of its object file in that list (0-based); the semantic id is
the class of the file name in :data:`pcseg.data.classes.S3DIS_CLASSES` order, with
``stairs`` mapped to ``clutter``.

Ignored with a :class:`~pcseg.readers.common.DataWarning`: non-``.txt`` files (``.DS_Store``,
``Icon``), hidden files, Finder-style duplicates (``wall_3 (1).txt``), and misnamed files
that do not match ``<class>_<integer>.txt`` (``copy_Room_1.txt``). A well-formed name with
an unknown class raises ``ValueError`` unless ``on_unknown_class`` says otherwise.

Damaged lines (each reported with the file and 1-based line number):
  * a NUL byte between numbers (``185\\x00187``) is a separator: the line is repaired;
  * any other byte that cannot be part of a number is repaired only when removing it and
    reading it as a separator give the same six numbers (it touches whitespace);
    otherwise (``103.0\\x100000``) the line is skipped;
  * a line with a column count other than 6, or a token that is not a number, is skipped;
  * a line with NaN / inf values is refused (the file and its first such lines are named;
    the room fails) or, with ``nonfinite='drop'`` (``pcseg prepare --nonfinite drop``),
    skipped with one warning: :func:`pcseg.readers.common.check_points`.

Scene ids are ``<Area_N>_<room>`` (``Area_1_office_1``). Coordinates are returned as
stored (no re-centring); ``read_scene(..., align=True)`` rotates a non-aligned room by
``-angle`` degrees about +z around its bounding-box centre (Pointcept's convention).
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from pcseg.data.classes import S3DIS_CLASSES
from pcseg.data.scene import Scene
from pcseg.readers.common import (
    ReaderOptions,
    check_points,
    check_scene_name,
    expand_split,
    natural_key,
    normalise_features,
    warn,
)

DATASET = "s3dis"
AREAS: tuple[str, ...] = tuple(f"Area_{i}" for i in range(1, 7))

#: Standard split name -> areas: ``train`` = Areas 1-4 and 6, ``val``/``test`` = Area 5,
#: ``all`` = the six areas. :func:`resolve_split` also accepts ``Area_k`` (that area),
#: ``foldk`` (the test area of 6-fold cross-validation, Area k), ``foldk_train`` (the
#: other five areas) and several names joined with ``+`` (``"Area_1+Area_2"``).
SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("Area_1", "Area_2", "Area_3", "Area_4", "Area_6"),
    "val": ("Area_5",),
    "test": ("Area_5",),
    "all": AREAS,
}
_ALL_SPLITS: dict[str, tuple[str, ...]] = {
    **SPLITS,
    **{a: (a,) for a in AREAS},
    **{f"fold{k}": (f"Area_{k}",) for k in range(1, 7)},
    **{f"fold{k}_train": tuple(a for a in AREAS if a != f"Area_{k}") for k in range(1, 7)},
}


def resolve_split(split: str) -> tuple[str, ...]:
    """Split expression -> area names (see :data:`SPLITS`); ``ValueError`` if unknown."""
    return expand_split(split, _ALL_SPLITS, "S3DIS")


#: File-name classes that are folded into one of the 13 classes.
CLASS_ALIASES: dict[str, str] = {"stairs": "clutter"}
CLASS_TO_INDEX: dict[str, int] = {c: i for i, c in enumerate(S3DIS_CLASSES)}

RELEASE_DIRS = ("Stanford3dDataset_v1.2_Aligned_Version", "Stanford3dDataset_v1.2")
_OBJECT_RE = re.compile(r"^(?P<cls>[a-z]+)_(?P<idx>\d+)\.txt$")
_DUPLICATE_RE = re.compile(r"^(?P<base>.+) \((?P<copy>\d+)\)\.txt$")
_SCENE_RE = re.compile(r"^(?P<area>Area_\d+)_(?P<room>.+)$")

# Byte classes for the vectorised line checks.
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 13, 32]] = True
_ALLOWED = _WS.copy()
_ALLOWED[np.frombuffer(b"0123456789.eE+-", dtype=np.uint8)] = True


# --------------------------------------------------------------------------- parsing


@dataclass
class ParseReport:
    """What :func:`parse_numeric_table` did to damaged lines (1-based line numbers)."""

    repaired: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def _floats(line: bytes, ncols: int) -> list[float] | None:
    toks = line.split()
    if len(toks) != ncols:
        return None
    try:
        return [float(t) for t in toks]
    except ValueError:
        return None


def _repair_line(line: bytes, ncols: int) -> tuple[list[float] | None, str]:
    """Parse one suspicious line. Returns (values or None if skipped, description)."""
    notes: list[str] = []
    if b"\x00" in line:
        line = line.replace(b"\x00", b" ")
        notes.append("NUL byte read as a separator")
    bad = [i for i, c in enumerate(line) if not _ALLOWED[c]]
    if bad:
        shown = ", ".join(f"0x{line[i]:02x} at column {i + 1}" for i in bad[:3])
        removed = bytes(c for c in line if _ALLOWED[c])
        spaced = bytes(c if _ALLOWED[c] else 32 for c in line)
        a, b = _floats(removed, ncols), _floats(spaced, ncols)
        if a is None or b is None or a != b:
            return None, f"garbage byte ({shown}) not unambiguously repairable"
        notes.append(f"stray byte ({shown}) next to whitespace dropped")
        line = spaced
    toks = line.split()
    if len(toks) != ncols:
        prefix = "; ".join(notes) + "; " if notes else ""
        return None, f"{prefix}expected {ncols} values, found {len(toks)}"
    try:
        vals = [float(t) for t in toks]
    except ValueError:
        bad_tok = next(t for t in toks if not _is_float(t))
        return None, f"not a number: {bad_tok[:40]!r}"
    return vals, "; ".join(notes) or "re-parsed"


def _is_float(tok: bytes) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def parse_numeric_table(
    data: bytes, ncols: int, source: str, max_warnings: int = 20, nonfinite: str = "refuse"
) -> tuple[np.ndarray, ParseReport]:
    """Parse whitespace-separated numbers, ``ncols`` per line, surviving damaged lines.

    Args:
        data: the file's bytes (LF or CRLF lines, or old-Mac CR-only lines; blank lines
            are ignored).
        ncols: expected values per line.
        source: file name used in warnings.
        max_warnings: damaged lines reported one by one; the rest in one summary warning.
        nonfinite: lines with NaN / inf: ``'refuse'`` raises ``ValueError`` naming
            ``source``, the count and the first line numbers; ``'drop'`` skips them with
            one warning (both by :func:`pcseg.readers.common.check_points`, the first
            three values of a row being its coordinates).

    Returns:
        (M, ncols) float64 array of the good (and repaired) lines in file order, and a
        :class:`ParseReport`.

    Fast path: numpy's C text parser (``np.loadtxt``, strict: it raises on any malformed
    line) reads the whole buffer; with numpy >= 1.23 it is as fast as ``np.fromstring``
    (about 1 s per million lines). If that fails, byte-class and per-line token-count
    checks are vectorised to find the damaged lines, the clean stretches between them are
    parsed in bulk with ``np.fromstring``, and only the damaged lines (or, if a stretch
    still fails, each of its lines) go through the per-line repair.
    """
    report = ParseReport()
    if b"\r" in data and b"\n" not in data:  # CR-only line endings: one line per CR
        data = data.replace(b"\r", b"\n")
    arr = np.frombuffer(data, dtype=np.uint8)
    n = arr.size
    if n == 0:
        return np.zeros((0, ncols), dtype=np.float64), report
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data"
            vals = np.loadtxt(io.BytesIO(data), dtype=np.float64, comments=None, ndmin=2)
        if vals.shape[1] == ncols and np.isfinite(vals).all():
            return vals, report
    except ValueError:
        pass
    starts, ends, counts, suspicious = _scan_lines(arr, ncols)
    if suspicious.size == 0:
        try:
            vals = np.fromstring(data, dtype=np.float64, sep=" ")
            good = np.flatnonzero(counts == ncols)
            if vals.size == good.size * ncols:
                return _finite_rows(vals.reshape(-1, ncols), good, source, report, nonfinite)
        except ValueError:
            pass

    # Slow path: parse the clean stretches between suspicious lines in bulk, repair the rest.
    rows = _SlowParse(ncols, source, report)
    bounds = np.concatenate(([-1], suspicious, [len(starts)]))
    for k in range(len(bounds) - 1):
        lo, hi = int(bounds[k]) + 1, int(bounds[k + 1])  # clean lines lo..hi-1
        if hi > lo:
            seg_lines = np.arange(lo, hi)[counts[lo:hi] == ncols]
            rows.stretch(data, starts, ends, lo, hi, seg_lines)
        if k < len(bounds) - 2:
            li = int(bounds[k + 1])
            rows.suspicious(data[starts[li] : ends[li]], li)
    _emit(rows.messages, source, max_warnings)
    if not rows.pieces:
        return np.zeros((0, ncols), dtype=np.float64), report
    vals = np.concatenate(rows.pieces, axis=0)
    return _finite_rows(vals, np.concatenate(rows.lines), source, report, nonfinite)


def _scan_lines(
    arr: np.ndarray, ncols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised line index of a file's bytes ``arr`` (uint8): ``(starts, ends,
    counts, suspicious)``, the byte span and token count of every line and the sorted
    indices of the lines holding a byte outside numbers / whitespace or a token count other
    than 0 and ``ncols``."""
    n = arr.size
    nl = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [n]))
    if starts[-1] >= n:  # file ends with a newline: no last line
        starts, ends = starts[:-1], ends[:-1]
    ws = _WS[arr]
    tokstart = ~ws
    tokstart[1:] &= ws[:-1]
    ts = np.flatnonzero(tokstart)  # byte positions where tokens start
    counts = np.searchsorted(ts, ends) - np.searchsorted(ts, starts)
    bad_bytes = np.flatnonzero(~_ALLOWED[arr])
    suspicious = np.union1d(
        np.searchsorted(nl, bad_bytes, side="left"),
        np.flatnonzero((counts != ncols) & (counts != 0)),
    ).astype(np.int64)
    return starts, ends, counts, suspicious


@dataclass
class _SlowParse:
    """The slow path of :func:`parse_numeric_table`: blocks of parsed rows, the 0-based
    line of each row, and the warning messages, collected in file order."""

    ncols: int
    source: str
    report: ParseReport
    pieces: list[np.ndarray] = field(default_factory=list)
    lines: list[np.ndarray] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def _add(self, vals: np.ndarray, lines: np.ndarray) -> None:
        self.pieces.append(vals)
        self.lines.append(lines)

    def stretch(
        self,
        data: bytes,
        starts: np.ndarray,
        ends: np.ndarray,
        lo: int,
        hi: int,
        seg_lines: np.ndarray,
    ) -> None:
        """Lines ``lo..hi-1`` of ``data`` (byte spans ``starts`` / ``ends``), none of them
        suspicious, ``seg_lines`` those with ``ncols`` tokens: in bulk, or line by line
        through the repair when the bulk parse fails."""
        try:
            vals = np.fromstring(data[starts[lo] : ends[hi - 1]], dtype=np.float64, sep=" ")
            if vals.size != seg_lines.size * self.ncols:
                raise ValueError("count mismatch")
            self._add(vals.reshape(-1, self.ncols), seg_lines)
            return
        except ValueError:
            pass
        vals_rows, ok_lines = [], []
        for li in seg_lines:
            v, why = _repair_line(data[starts[li] : ends[li]], self.ncols)
            if v is None:
                self.report.skipped.append(int(li) + 1)
                self.messages.append(f"{self.source}:{li + 1}: {why}; line skipped")
            else:
                vals_rows.append(v)
                ok_lines.append(li)
        if vals_rows:
            self._add(np.asarray(vals_rows, dtype=np.float64), np.asarray(ok_lines, np.int64))

    def suspicious(self, line: bytes, li: int) -> None:
        """One suspicious line (0-based ``li``): numbers after all (nan / inf, judged later
        by :func:`_finite_rows`), repaired, or skipped."""
        v = _floats(line, self.ncols)
        if v is not None:
            self._add(np.asarray([v], dtype=np.float64), np.asarray([li], dtype=np.int64))
            return
        v, why = _repair_line(line, self.ncols)
        if v is None:
            self.report.skipped.append(li + 1)
            self.messages.append(f"{self.source}:{li + 1}: {why}; line skipped")
        else:
            self.report.repaired.append(li + 1)
            self.messages.append(f"{self.source}:{li + 1}: {why}; line repaired")
            self._add(np.asarray([v], dtype=np.float64), np.asarray([li], dtype=np.int64))


def _finite_rows(
    vals: np.ndarray, lines: np.ndarray, source: str, report: ParseReport, nonfinite: str
) -> tuple[np.ndarray, ParseReport]:
    """Rows of ``vals`` (0-based ``lines``) after the shared NaN/inf check."""
    if len(vals) == 0:
        return vals, report
    keep = check_points(
        vals[:, :3],
        source,
        feats=vals[:, 3:],
        nonfinite=nonfinite,
        positions=lines + 1,
        position_name="line",
    )
    if keep is None:
        return vals, report
    report.skipped.extend(int(b) + 1 for b in lines[~keep])
    report.skipped.sort()
    return vals[keep], report


def _emit(messages: list[str], source: str, max_warnings: int) -> None:
    for m in messages[:max_warnings]:
        warn(m)
    if len(messages) > max_warnings:
        warn(f"{source}: {len(messages) - max_warnings} more damaged lines not listed")


def read_object_file(
    path: Path, max_warnings: int = 20, nonfinite: str = "refuse"
) -> tuple[np.ndarray, ParseReport]:
    """Read one ``x y z r g b`` file -> ((M, 6) float64, :class:`ParseReport`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read S3DIS object file {path}: {e}") from e
    return parse_numeric_table(data, 6, str(path), max_warnings=max_warnings, nonfinite=nonfinite)


# --------------------------------------------------------------------------- layout


def find_root(raw: Path) -> Path:
    """The folder holding ``Area_N`` folders: ``raw`` itself or a known release folder in it."""
    raw = Path(raw)
    if any(p.is_dir() and re.fullmatch(r"Area_\d+", p.name) for p in raw.glob("Area_*")):
        return raw
    for name in RELEASE_DIRS:
        if (raw / name).is_dir():
            return raw / name
    raise ValueError(
        f"{raw}: no Area_N folders found (expected RAW/Area_1 .. RAW/Area_6, "
        f"or RAW/{RELEASE_DIRS[0]}/Area_N)"
    )


def list_rooms(area_dir: Path) -> list[str]:
    """Room folder names of one area (folders with an ``Annotations`` folder), natural order."""
    rooms = []
    for p in sorted(area_dir.iterdir(), key=lambda q: natural_key(q.name)):
        if not p.is_dir() or p.name.startswith("."):
            continue
        if not (p / "Annotations").is_dir():
            warn(f"{p}: room folder without Annotations/; skipped")
            continue
        rooms.append(p.name)
    return rooms


def list_scenes(raw: Path, split: str, options: Options | None = None) -> list[str]:
    """Scene ids (``Area_N_<room>``) of ``split`` (see :func:`resolve_split`); ``options``
    change nothing here (the reader interface passes them).

    Areas of the split that are missing on disk are skipped with a warning; a split
    with no room at all raises ``ValueError``.
    """
    root = find_root(raw)
    areas = resolve_split(split)
    scenes: list[str] = []
    missing = []
    for area in areas:
        area_dir = root / area
        if not area_dir.is_dir():
            missing.append(area)
            continue
        scenes += [f"{area}_{room}" for room in list_rooms(area_dir)]
    if missing:
        warn(f"{root}: areas {missing} of split {split!r} not found; skipped")
    if not scenes:
        raise ValueError(f"{root}: split {split!r} (areas {list(areas)}) has no rooms")
    return [check_scene_name(s) for s in scenes]


def parse_scene_id(scene_id: str) -> tuple[str, str]:
    """``'Area_1_office_1'`` -> ``('Area_1', 'office_1')``."""
    m = _SCENE_RE.match(scene_id)
    if not m:
        raise ValueError(f"S3DIS scene id {scene_id!r} is not of the form Area_<N>_<room>")
    return m.group("area"), m.group("room")


def read_alignment_angles(area_dir: Path) -> dict[str, float] | None:
    """``Area_N_alignmentAngle.txt`` of the non-aligned release -> {room: degrees}, or None.

    Lines starting with ``#`` and blank lines are skipped; others are ``<room> <angle>``.
    """
    path = area_dir / f"{area_dir.name}_alignmentAngle.txt"
    if not path.is_file():
        return None
    angles: dict[str, float] = {}
    text = path.read_bytes().decode("utf-8", errors="replace")
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            angles[parts[0]] = float(parts[1])
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: expected '<room> <angle in degrees>', got {line!r}"
            ) from None
    return angles


@dataclass
class ObjectFile:
    """One valid annotation file of a room."""

    path: Path
    class_name: str  # name as written in the file name (e.g. 'stairs')
    semantic: int  # class index, or -1 (unknown class kept as ignored)


def list_object_files(
    room_dir: Path, on_unknown_class: Literal["error", "ignore", "skip"] = "error"
) -> list[ObjectFile]:
    """The room's valid annotation files in instance order (``sorted()`` of names).

    Stray files are dropped with a warning (see the module docstring). A file
    ``<cls>_<i>.txt`` whose ``cls`` is neither one of the 13 classes nor an alias:
    ``on_unknown_class='error'`` raises ``ValueError``; ``'ignore'`` keeps its points with
    semantic -1; ``'skip'`` drops the file; the last two warn.
    """
    ann = room_dir / "Annotations"
    if not ann.is_dir():
        raise ValueError(f"{room_dir}: no Annotations/ folder")
    names = sorted(p.name for p in ann.iterdir() if p.is_file())
    name_set = set(names)
    out: list[ObjectFile] = []
    for name in names:
        path = ann / name
        if name.startswith("."):
            warn(f"{path}: hidden file ignored")
            continue
        if not name.endswith(".txt"):
            warn(f"{path}: not a .txt annotation file; ignored")
            continue
        dup = _DUPLICATE_RE.match(name)
        if dup:
            orig = f"{dup.group('base')}.txt"
            if orig in name_set:
                same = _same_content(path, ann / orig)
                what = "identical to" if same else "DIFFERENT from"
                warn(f"{path}: duplicate copy ({what} {orig}); ignored")
            else:
                warn(f"{path}: looks like a duplicate copy but {orig} is absent; ignored")
            continue
        m = _OBJECT_RE.match(name)
        if not m:
            warn(f"{path}: misnamed annotation file (expected <class>_<integer>.txt); ignored")
            continue
        cls = m.group("cls")
        target = CLASS_ALIASES.get(cls, cls)
        if target in CLASS_TO_INDEX:
            out.append(ObjectFile(path, cls, CLASS_TO_INDEX[target]))
            continue
        msg = (
            f"{path}: unknown S3DIS class {cls!r} (known: {list(S3DIS_CLASSES)}, "
            f"aliases {CLASS_ALIASES})"
        )
        if on_unknown_class == "error":
            raise ValueError(
                msg + "; `pcseg prepare s3dis --s3dis-unknown-class ignore` (keep "
                "its points unlabelled) or `skip` (drop the file) goes on"
            )
        if on_unknown_class == "ignore":
            warn(msg + "; points kept with semantic -1")
            out.append(ObjectFile(path, cls, -1))
        elif on_unknown_class == "skip":
            warn(msg + "; file skipped")
        else:
            raise ValueError(
                f"on_unknown_class must be 'error', 'ignore' or 'skip', got {on_unknown_class!r}"
            )
    return out


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return a.read_bytes() == b.read_bytes()


def rotate_about_z(coords: np.ndarray, degrees: float, center: np.ndarray) -> np.ndarray:
    """Rotate (N, 3) points counter-clockwise by ``degrees`` about +z through ``center``."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return (coords - center) @ rot.T + center


class Options(ReaderOptions):
    """What :func:`read_scene` does beyond reading (``pcseg prepare s3dis`` flags)."""

    FAILING_VALUES: ClassVar[dict[str, str]] = {"nonfinite": "refuse", "on_unknown_class": "error"}
    #: rotate by ``-alignmentAngle`` about +z around the bounding-box centre (non-aligned
    #: release only; ``ValueError`` when the angle file is absent)
    align: bool = False
    #: an object file of an unknown class fails the room (``error``), keeps its points
    #: unlabelled (``ignore``) or is dropped (``skip``); see :func:`list_object_files`
    on_unknown_class: Literal["error", "ignore", "skip"] = "error"


def read_scene(raw: Path, scene_id: str, options: Options | None = None) -> Scene:
    """Read one room as a :class:`Scene`.

    Args:
        raw: release folder (or its parent), see :func:`find_root`.
        scene_id: ``Area_N_<room>``.
        options: :class:`Options` (None: the defaults); ``nonfinite``: NaN/inf lines,
            ``'refuse'`` or ``'drop'`` (see :func:`parse_numeric_table`). A room without
            any point is refused.

    Returns:
        Scene with coords (N,3) float32 metres, feats (N,3) float32 RGB/255, semantic
        (N,) int64 in [0,13) (or -1 for ``on_unknown_class='ignore'``), instance (N,)
        int64 = object file position. ``extra``: area, room, alignment_angle_deg
        (None for the aligned release), aligned, objects ([file, class, instance,
        points]), repaired_lines / skipped_lines ({file: [line numbers]}).
    """
    opts = Options() if options is None else options
    align, on_unknown_class, nonfinite = opts.align, opts.on_unknown_class, opts.nonfinite
    area, room = parse_scene_id(scene_id)
    root = find_root(raw)
    room_dir = root / area / room
    if not room_dir.is_dir():
        raise ValueError(f"S3DIS room folder {room_dir} not found (scene {scene_id!r})")
    objects = list_object_files(room_dir, on_unknown_class=on_unknown_class)
    if not objects:
        raise ValueError(f"{room_dir}/Annotations: no valid <class>_<i>.txt object file")

    xyzrgb: list[np.ndarray] = []
    sem: list[np.ndarray] = []
    inst: list[np.ndarray] = []
    listing, repaired, skipped = [], {}, {}
    for idx, obj in enumerate(objects):
        vals, report = read_object_file(obj.path, nonfinite=nonfinite)
        if len(vals) == 0:
            warn(f"{obj.path}: no points")
        xyzrgb.append(vals)
        sem.append(np.full(len(vals), obj.semantic, dtype=np.int64))
        inst.append(np.full(len(vals), idx, dtype=np.int64))
        listing.append([obj.path.name, obj.class_name, idx, len(vals)])
        if report.repaired:
            repaired[obj.path.name] = report.repaired
        if report.skipped:
            skipped[obj.path.name] = report.skipped
    data = np.concatenate(xyzrgb, axis=0)
    check_points(data[:, :3], room_dir / "Annotations", feats=data[:, 3:6], nonfinite=nonfinite)
    coords = data[:, :3]
    rgb = data[:, 3:6]
    out_of_range = (rgb < 0) | (rgb > 255)
    if out_of_range.any():
        warn(
            f"{room_dir}: {int(out_of_range.any(axis=1).sum())} points with rgb outside "
            f"0..255; clipped"
        )
        rgb = np.clip(rgb, 0, 255)

    angles = read_alignment_angles(root / area)
    angle = None
    if angles is not None:
        if room not in angles:
            warn(f"{root / area}/{area}_alignmentAngle.txt: no angle for room {room!r}")
        else:
            angle = angles[room]
    if align:
        if angle is None:
            raise ValueError(
                f"{scene_id}: align=True needs {root / area}/{area}_alignmentAngle.txt "
                "with this room (non-aligned release)"
            )
        center = (coords.max(axis=0) + coords.min(axis=0)) / 2.0
        coords = rotate_about_z(coords, -angle, center)

    return Scene(
        name=check_scene_name(scene_id),
        dataset=DATASET,
        coords=np.ascontiguousarray(coords, dtype=np.float32),
        feats=np.ascontiguousarray(
            normalise_features(rgb, room_dir, expected=255.0), dtype=np.float32
        ),
        semantic=np.concatenate(sem),
        instance=np.concatenate(inst),
        source=str(room_dir),
        extra={
            "area": area,
            "room": room,
            "alignment_angle_deg": angle,
            "aligned": bool(align),
            "objects": listing,
            "repaired_lines": repaired,
            "skipped_lines": skipped,
        },
    )
