"""Progress bars that suit a terminal and a log file alike.

:func:`progress_bar` takes tqdm's arguments. When the bar's stream (stderr unless ``file=``)
is a terminal it is a plain tqdm bar. Otherwise (a log file, a pipe, a batch job) it writes
one full line about every ``100 / lines`` % of the total, about ``lines + 1`` lines in all
(the 0 % line included), instead of a carriage-return update per step; ``set_postfix`` and
``set_description`` then only change what the next line shows. With no known total it
writes a line at most every ``interval_s`` seconds.

:class:`RateMeter` measures a loop's iterations per second and its time to finish, for the
one line a training prints after its first iterations and the plain log lines it writes when
the bar is off; :func:`format_duration` writes a number of seconds for people.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
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


def format_duration(seconds: float) -> str:
    """``seconds`` for people: ``'42 s'``, ``'12 min 05 s'``, ``'3 h 20 min'``, ``'7.5 days'``
    (``'?'`` for a value that is not finite)."""
    if not math.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 2 * 86400:
        m = round(seconds / 60)
        return f"{m // 60} h {m % 60:02d} min"
    return f"{seconds / 86400:.1f} days"


class RateMeter:
    """Iterations per second and time to finish of a loop of ``total`` iterations resumed at
    ``start`` (0: a fresh run).

    Call :meth:`mark` with the iteration count after every iteration. The rate is measured
    from the end of the first iteration on (it carries the start-up: data workers, first
    allocations) once a second one has finished, else from the start. :meth:`first_report`
    returns one line, once, when ``first_its`` iterations are done or ``first_s`` seconds
    have passed, whichever comes first. ``clock``: seconds (``time.monotonic``; tests pass
    their own).
    """

    def __init__(
        self,
        total: int,
        start: int = 0,
        first_its: int = 10,
        first_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.start = int(total), int(start)
        self.first_its, self.first_s = int(first_its), float(first_s)
        self.clock = clock
        self.t0 = clock()
        self.first: tuple[int, float] | None = None  # (iteration, time) after the first one
        self.last: tuple[int, float] = (self.start, self.t0)
        self.reported = False

    def mark(self, iteration: int) -> None:
        """Record that ``iteration`` iterations are done (the count, not an index)."""
        now = self.clock()
        if self.first is None:
            self.first = (int(iteration), now)
        self.last = (int(iteration), now)

    def rate(self) -> float:
        """Iterations per second so far (0.0 before any; see the class docstring)."""
        it, now = self.last
        if self.first is not None and it > self.first[0] and now > self.first[1]:
            return (it - self.first[0]) / (now - self.first[1])
        return (it - self.start) / (now - self.t0) if now > self.t0 else 0.0

    def remaining_s(self) -> float:
        """Estimated seconds to ``total`` at :meth:`rate` (inf without a rate yet)."""
        r = self.rate()
        return (self.total - self.last[0]) / r if r > 0 else math.inf

    def status(self) -> str:
        """``'0.77 it/s (1.3 s/it), 12 min 05 s to go'``."""
        r = self.rate()
        per = f" ({1 / r:.3g} s/it)" if r > 0 else ""
        return f"{r:.3g} it/s{per}, {format_duration(self.remaining_s())} to go"

    def first_report(self) -> str | None:
        """The one line announcing speed and time to finish, the first time ``first_its``
        iterations are done or ``first_s`` seconds have passed (None otherwise, and ever
        after that)."""
        it, now = self.last
        done = it - self.start
        if self.reported or done <= 0:
            return None
        if done < self.first_its and now - self.t0 < self.first_s:
            return None
        self.reported = True
        return (
            f"{done} iteration(s) in {format_duration(now - self.t0)}: {self.rate():.3g} it/s; "
            f"about {format_duration(self.remaining_s())} to finish {self.total} iterations"
        )
