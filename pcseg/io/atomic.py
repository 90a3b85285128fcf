"""Atomic file writes: write to a temp file in the same folder, fsync, then rename.

An interrupted run therefore never leaves a half-written file under the final name,
which is what makes every long job here resumable (a file that exists is complete).
Every writer of the package goes through :func:`atomic_path` (the point-file writers of
:mod:`pcseg.io` through :func:`atomic_save_with`, with the target's own suffix on the
temporary file where the writing library picks the format from it, e.g. ``.laz``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: the errors of a write that ran out of space (a full disk, a full quota)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(RuntimeError):
    """A write that ran out of space: the message names the file, what was written and the
    space left; the file under the final name is unchanged (the temporary is removed)."""


def ran_out_of_space(e: BaseException | None) -> bool:
    """Whether ``e`` or an exception it was raised from / while handling is an ``OSError``
    of a full disk or quota (a writer such as torch's zip writer may raise its own error
    while cleaning up after the ``OSError(ENOSPC)``)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno in _NO_SPACE:
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 2**20 else f"{n / 2**20:,.1f} MiB"


def disk_full_message(path: Path, written: int) -> str:
    """The one line of a :class:`DiskFullError` for ``path`` after ``written`` bytes."""
    try:
        usage = shutil.disk_usage(path.parent)
        space = f"{_size(usage.free)} free of {_size(usage.total)} on its file system"
    except OSError:
        space = "free space unknown"
    kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written"
    return (
        f"no space left on the device writing {path} ({_size(written)} written before the "
        f"disk was full, {space}); {kept}"
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path (``.<name>.<random><suffix>``) next to ``path``; on success
    fsync it and rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched; a full
    disk or quota (``ENOSPC`` / ``EDQUOT``) becomes a :class:`DiskFullError` naming the file
    and the space left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        if e.errno in _NO_SPACE:
            raise DiskFullError(disk_full_message(path, 0)) from e
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; use the normal mode
        os.replace(tmp_path, path)
    except BaseException as e:
        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if ran_out_of_space(e):
            raise DiskFullError(disk_full_message(path, written)) from e
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (numpy scalars/arrays converted)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def atomic_save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` to ``path`` atomically (``path`` should end in ``.npz``)."""
    buf = io.BytesIO()
    # recent numpy stubs match **arrays against savez_compressed's allow_pickle: bool; older
    # numpy (>= 1.23 is supported) has no such parameter, so it is not passed explicitly
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically."""
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_with(
    path: str | os.PathLike[str], save: Callable[[Path], Any], suffix: str = ".tmp"
) -> None:
    """Call ``save(tmp_path)`` (e.g. ``lambda p: torch.save(obj, p)``) and rename atomically;
    ``suffix``: the temporary file's (for writers that pick the format from it)."""
    with atomic_path(path, suffix) as tmp:
        save(tmp)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


#: the temporaries pcseg leaves when killed: ``.NAME.<8 random><suffix>`` of
#: :func:`atomic_path` (suffix ``.tmp`` or that of NAME) and ``.STEM.stream.<8 random>``
#: folders of a streamed predict (``tempfile``'s random part: 8 of ``[a-z0-9_]``)
_ATOMIC_TMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?")
_STREAM_TMP = re.compile(r"\..+\.stream\.[a-z0-9_]{8}")


def is_pcseg_temporary(path: Path) -> bool:
    """Whether ``path`` is named like a temporary of :func:`atomic_path` (a file) or of a
    streamed predict (a folder)."""
    if path.is_dir():
        return _STREAM_TMP.fullmatch(path.name) is not None
    m = _ATOMIC_TMP.fullmatch(path.name)
    if m is None or not m["suffix"]:
        return False
    return m["suffix"] == ".tmp" or m["suffix"] == Path(m["name"]).suffix


def remove_stale_temporaries(
    folder: str | Path, before: float, recursive: bool = False
) -> list[Path]:
    """Remove pcseg's own temporaries (:func:`is_pcseg_temporary`) in ``folder`` (and its
    subfolders when ``recursive``) last modified before the time ``before`` (``time.time()``
    of the run's start): the leftovers of a killed run. Returns the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    for p in sorted(folder.rglob(".*") if recursive else folder.glob(".*")):
        try:
            if not is_pcseg_temporary(p) or p.stat().st_mtime >= before:
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:
            continue  # removed meanwhile (or inside a folder removed just before)
        removed.append(p)
    return removed
