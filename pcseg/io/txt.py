"""Text point files (``.txt``, ``.csv``, ``.xyz``, ``.pts``): columns from a header line or a
column spec; write-back appends columns to the original lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pcseg.io.atomic import atomic_save_with
from pcseg.io.point_file import PointFile, PointFileError, flat_columns, reason, xyz_from


def _split(line: str, delim: str | None) -> list[str]:
    return [t for t in (line.split(delim) if delim else line.split())]


def _bad_row(path: Path, body: Sequence[tuple[int, str]], delim: str | None) -> PointFileError:
    """The error naming the first line (1-based, in the file) of ``body`` ((line number,
    line) pairs) that is not numeric or has another number of values than the first."""
    ncol, first = len(_split(body[0][1], delim)), body[0][0]
    for n, ln in body:
        toks = _split(ln, delim)
        for t in toks:
            try:
                float(t)
            except ValueError:
                return PointFileError(f"{path} line {n}: non-numeric value {t.strip()!r}")
        if len(toks) != ncol:
            return PointFileError(
                f"{path} line {n}: {len(toks)} values, but line {first} has {ncol}"
            )
    return PointFileError(f"{path}: unreadable rows")  # pragma: no cover - caller saw one


def read_txt(path: str | Path, columns: Sequence[str] | None = None) -> PointFile:
    """Whitespace- or comma-separated text. Column names: the first line when it is not
    numeric (a header, e.g. ``x,y,z,intensity,label`` or ``//X Y Z`` as CloudCompare
    writes), else ``columns``, else ``x y z`` + ``f3``, ``f4``... Values are float64
    (integer-valued columns become int64)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise PointFileError(f"{path}: not a readable text file: {reason(e)}") from e
    numbered = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    lines = [ln for _, ln in numbered]
    if not lines:
        raise PointFileError(f"{path}: empty file (no lines)")
    delim = "," if "," in lines[0] else (";" if ";" in lines[0] else None)
    first = [t.strip() for t in _split(lines[0].lstrip("/#"), delim)]
    header = None
    try:
        [float(t) for t in first]
    except ValueError:
        header = first
    body = lines[1:] if header else lines
    if not body:
        raise PointFileError(f"{path}: the file holds no points (header only)")
    try:
        vals = np.array([[float(t) for t in _split(ln, delim)] for ln in body], dtype=np.float64)
    except ValueError as e:
        raise _bad_row(path, numbered[len(lines) - len(body) :], delim) from e
    ncol = vals.shape[1]
    names = list(header or columns or ["x", "y", "z"] + [f"f{i}" for i in range(3, ncol)])
    if len(names) != ncol:
        raise PointFileError(
            f"{path}: {ncol} columns but the column names are {names} "
            f"({'header' if header else 'columns spec'})"
        )
    names = [n.lower() if n.lower() in ("x", "y", "z") else n for n in names]
    cols: dict[str, np.ndarray] = {}
    for i, n in enumerate(names):
        c = vals[:, i]
        cols[n] = c.astype(np.int64) if n not in "xyz" and np.all(c == np.round(c)) else c
    return PointFile(
        path,
        "txt",
        xyz_from(path, cols),
        cols,
        {"lines": body, "header": lines[0] if header else None, "delim": delim},
    )


def write_txt(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    """The original lines, byte for byte, with the ``extra`` columns appended."""
    delim = pf.native.get("delim")
    sep = delim or " "
    fmts = {
        k: ("{:d}" if np.issubdtype(v.dtype, np.integer) else "{:.6g}") for k, v in extra.items()
    }
    lines = list(pf.native.get("lines") or [])
    if not lines:  # conversion from another format
        cols = flat_columns(pf, extra)
        arr = np.stack([np.asarray(v, dtype=np.float64) for v in cols.values()], axis=1)
        atomic_save_with(
            out,
            lambda p: np.savetxt(p, arr, fmt="%.17g", header=" ".join(cols), comments="//"),
            suffix=out.suffix,
        )
        return
    keys = list(extra)
    body = [
        ln + sep + sep.join(fmts[k].format(extra[k][i].item()) for k in keys)
        for i, ln in enumerate(lines)
    ]
    head = pf.native.get("header")
    if head is not None:
        body.insert(0, head + sep + sep.join(keys))
    atomic_save_with(out, lambda p: Path(p).write_text("\n".join(body) + "\n"), suffix=out.suffix)
