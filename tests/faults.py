"""Fault injection for the reader and prepare tests: damage synthetic raw files the way real
releases are damaged (the synthetic generators in pcseg.datasets.synthetic write clean data)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pcseg.utils.io import atomic_write_bytes


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


