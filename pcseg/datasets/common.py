"""Helpers shared by the raw-dataset readers: warnings, split expressions, name checks."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Iterable

SCENE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class DataWarning(UserWarning):
    """Raised (as a warning) for damaged or unexpected raw data that a reader survived."""


def warn(message: str) -> None:
    """Emit a :class:`DataWarning` attributed to the reader's caller."""
    warnings.warn(message, DataWarning, stacklevel=3)


def check_scene_name(name: str) -> str:
    """Return ``name`` if it is a file-stem safe scene id, else raise ``ValueError``."""
    if not SCENE_NAME_RE.match(name) or name in {".", ".."}:
        raise ValueError(
            f"scene id {name!r} is not file-stem safe (expected letters, digits, '_', '-', '.')"
        )
    return name


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded integers numerically (``office_2`` < ``office_10``)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def expand_split(split: str, splits: dict[str, tuple[str, ...]], what: str) -> tuple[str, ...]:
    """Resolve a split expression to a tuple of units (areas / sequences / list files).

    ``split`` is a key of ``splits`` or several keys joined with ``+`` (``"Area_1+Area_2"``);
    duplicates are removed, first occurrence kept. Raises ``ValueError`` naming the
    unknown part and the valid names.
    """
    out: list[str] = []
    for part in split.split("+"):
        part = part.strip()
        if part not in splits:
            raise ValueError(
                f"unknown {what} split {part!r} (in {split!r}); expected one of "
                f"{sorted(splits, key=natural_key)} or several joined with '+'"
            )
        for unit in splits[part]:
            if unit not in out:
                out.append(unit)
    return tuple(out)


def first_existing(candidates: Iterable[Path]) -> Path | None:
    """First path of ``candidates`` that exists, else ``None``."""
    for c in candidates:
        if c.exists():
            return c
    return None
