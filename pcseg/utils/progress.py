"""Progress bars that suit a terminal and a log file alike.

:func:`progress_bar` takes tqdm's arguments. When the bar's stream (stderr unless ``file=``)
is a terminal it is a plain tqdm bar. Otherwise (a log file, a pipe, a batch job) it writes
one full line about every ``100 / lines`` % of the total, about ``lines + 1`` lines in all
(the 0 % line included), instead of a carriage-return update per step; ``set_postfix`` and
``set_description`` then only change what the next line shows. With no known total it
writes a line at most every ``interval_s`` seconds.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm


class _Lines:
    """A stream wrapper that drops tqdm's bare ``\\r`` / ``\\n`` writes (cursor moves and
    clears), so only the bar's own lines reach a log."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if text.strip():
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class LogBar(tqdm):
    """A tqdm that writes whole lines (one per refresh, at most one per count) for logs."""

    _logged_n: float | None = None

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        """Write the bar as one line, unless ``msg`` is a clear or the count is unchanged."""
        if msg is not None or self.n == self._logged_n:
            return
        self._logged_n = self.n
        self.fp.write(self.__str__().rstrip() + "\n")
        self.fp.flush()

    def set_postfix(
        self, ordered_dict: Any = None, refresh: bool | None = True, **kwargs: Any
    ) -> None:
        """Change the postfix the next line shows (no extra line)."""
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool | None = True) -> None:
        """Change the description the next line shows (no extra line)."""
        super().set_description(desc, refresh=False)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed or detached stream
        return False


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    lines: int = 10,
    interval_s: float = 60.0,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand) with tqdm's keyword arguments
    (``total``, ``initial``, ``desc``, ``unit``, ``disable``, ``leave``, ``file``, ...).

    On a terminal: ``tqdm(iterable, **kwargs)``. Elsewhere: a :class:`LogBar` writing about
    ``lines`` lines over the remaining ``total - initial`` steps (the total taken from
    ``len(iterable)`` when not given), or one line per ``interval_s`` seconds when the
    total is unknown.
    """
    stream = kwargs.get("file") or sys.stderr
    if kwargs.get("disable") or _is_terminal(stream):
        return tqdm(iterable, **kwargs)
    total = kwargs.get("total")
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    kwargs.pop("dynamic_ncols", None)
    kwargs["file"] = _Lines(stream)
    if total is not None:
        steps = max(1.0, float(total) - float(kwargs.get("initial") or 0))
        kwargs.update(miniters=max(1, math.ceil(steps / max(1, lines))), mininterval=0.0)
    else:
        kwargs.update(miniters=1, mininterval=interval_s)
    # the monitor thread lowers miniters to 1 after maxinterval s without a line: never
    kwargs["maxinterval"] = math.inf
    return LogBar(iterable, **kwargs)
