"""The one harness every benchmark of :mod:`pcseg.benchmarks` measures with.

* timing: :func:`time_repeats` (``warmup`` untimed calls, then ``repeats`` timed ones;
  min / median / every time in seconds), :func:`timed_ms` (one call in milliseconds with
  CUDA synchronisation around it), :func:`summarize`;
* memory: :func:`rss_mib` (current and high-water RSS), :func:`reset_rss_hwm` (reset the
  high-water mark), :class:`PeakMemory` (peak over a block: RSS high-water above the RSS at
  its start, on CUDA ``max_memory_allocated`` above the allocation at its start),
  :func:`tracemalloc_peak_mib` (peak of numpy / Python allocations of one call),
  :func:`max_rss_mib`;
* isolation: :func:`run_worker` runs ``module:function(spec)`` in a fresh interpreter
  (``python -m pcseg.benchmarks._worker SPEC``) under a timeout and returns the JSON it
  wrote, or ``{"error": ...}``;
* reporting: :func:`ratio`, :func:`ratios_to`, :class:`Column` / :func:`format_table` /
  :func:`print_table`, :func:`write_json`.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pcseg
from pcseg.io.atomic import atomic_write_json

if TYPE_CHECKING:
    from typing_extensions import Self

#: folder holding the ``pcseg`` package the parent imported (put first on the worker's
#: PYTHONPATH, so that the worker measures the same checkout)
PACKAGE_ROOT = Path(pcseg.__file__).resolve().parents[1]


# ----------------------------------------------------------------- timing
def summarize(times: Sequence[float]) -> dict[str, Any]:
    """``{"min", "median", "times"}`` of a non-empty sequence of measurements."""
    if not times:
        raise ValueError("summarize: no measurements")
    return {"min": min(times), "median": statistics.median(times), "times": list(times)}


def time_repeats(
    fn: Callable[[], Any],
    repeats: int,
    warmup: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; returns
    :func:`summarize` of the timed calls in seconds (``min_s`` / ``median_s`` / ``times_s``)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(
            f"time_repeats: repeats >= 1 and warmup >= 0 required, got {repeats}, {warmup}"
        )
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    s = summarize(times)
    return {"min_s": s["min"], "median_s": s["median"], "times_s": s["times"]}


def sync(dev: Any) -> None:
    """Wait for the CUDA device ``dev`` (a torch.device); no-op elsewhere."""
    if getattr(dev, "type", None) == "cuda":
        import torch

        torch.cuda.synchronize(dev)


def timed_ms(fn: Callable[[], Any], dev: Any = None) -> tuple[float, Any]:
    """(milliseconds, result) of ``fn()`` with device synchronisation around it."""
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    return (time.perf_counter() - t0) * 1e3, out


# ----------------------------------------------------------------- memory
def max_rss_mib() -> float:
    """ru_maxrss of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> tuple[float, float]:
    """(current RSS, high-water RSS) of this process in MiB (Linux /proc, else ru_maxrss)."""
    cur = hwm = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    ru = max_rss_mib()
    return (cur if cur is not None else ru), (hwm if hwm is not None else ru)


def reset_rss_hwm() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory of a ``with`` block, in MiB, above the level at its start.

    CPU: the RSS high-water mark (reset on entry) minus the RSS on entry; ``peak_mib`` is
    None where the mark cannot be reset. CUDA (``device`` a cuda torch.device):
    ``torch.cuda.max_memory_allocated`` minus the allocation on entry, and
    ``cuda_peak_allocated_mib`` the absolute peak. ``baseline_rss_mib`` / ``peak_rss_mib``
    are always the raw RSS figures.
    """

    def __init__(self, device: Any = None) -> None:
        self.device = device
        self.baseline_rss_mib = 0.0
        self.peak_rss_mib = 0.0
        self.peak_mib: float | None = None
        self.cuda_peak_allocated_mib: float | None = None
        self._hwm_ok = False
        self._base_cuda = 0

    def __enter__(self) -> Self:
        self.baseline_rss_mib, _ = rss_mib()
        self._hwm_ok = reset_rss_hwm()
        if getattr(self.device, "type", None) == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            self._base_cuda = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        _, self.peak_rss_mib = rss_mib()
        self.peak_mib = self.peak_rss_mib - self.baseline_rss_mib if self._hwm_ok else None
        if getattr(self.device, "type", None) == "cuda":
            import torch

            peak = torch.cuda.max_memory_allocated(self.device)
            self.peak_mib = (peak - self._base_cuda) / 2**20
            self.cuda_peak_allocated_mib = peak / 2**20

    def as_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready mapping (CUDA key only on CUDA)."""
        d: dict[str, Any] = {
            "baseline_rss_mib": self.baseline_rss_mib,
            "peak_rss_mib": self.peak_rss_mib,
            "peak_mib": self.peak_mib,
        }
        if self.cuda_peak_allocated_mib is not None:
            d["cuda_peak_allocated_mib"] = self.cuda_peak_allocated_mib
        return d


def tracemalloc_peak_mib(fn: Callable[[], Any]) -> float:
    """Peak of the Python / numpy allocations (tracemalloc) during one ``fn()``, in MiB."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


# ----------------------------------------------------------------- worker processes
def run_worker(
    target: str,
    spec: Mapping[str, Any],
    tmp: Path,
    timeout: float,
    tag: str = "worker",
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``target`` (``"package.module:function"``, called with the spec dict and returning
    a JSON-ready dict) in a fresh ``python -m pcseg.benchmarks._worker`` process.

    ``spec`` is written to ``tmp/spec_<tag>.json``, the result read from ``tmp/res_<tag>.json``;
    ``env`` entries are added to this process's environment. Returns the result, or
    ``{"error": ...}`` on a timeout, a non-zero exit (with the last lines of its output) or a
    missing result.
    """
    spec_path = tmp / f"spec_{tag}.json"
    out = tmp / f"res_{tag}.json"
    out.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({"target": target, "out": str(out), "spec": dict(spec)}))
    full_env = dict(os.environ)
    full_env.update(env or {})
    old = full_env.get("PYTHONPATH")
    full_env["PYTHONPATH"] = str(PACKAGE_ROOT) + (os.pathsep + old if old else "")
    cmd = [sys.executable, "-m", "pcseg.benchmarks._worker", str(spec_path)]
    try:
        p = subprocess.run(
            cmd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    if p.returncode != 0 or not out.exists():
        tail = (p.stderr or p.stdout or "").strip().splitlines()[-6:]
        return {"error": f"worker exit code {p.returncode}: " + " | ".join(tail)}
    return json.loads(out.read_text())


def resolve(target: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The function named by ``"package.module:function"``."""
    mod, _, fn = target.partition(":")
    if not mod or not fn:
        raise ValueError(f"worker target must be 'module:function', got {target!r}")
    return getattr(importlib.import_module(mod), fn)


def worker_main(argv: Sequence[str]) -> int:
    """Entry point of a worker process: ``python -m pcseg.benchmarks._worker SPEC_JSON``."""
    if len(argv) != 1:
        print("usage: python -m pcseg.benchmarks._worker SPEC_JSON", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    res = resolve(job["target"])(job["spec"])
    Path(job["out"]).write_text(json.dumps(res))
    return 0


# ----------------------------------------------------------------- reporting
def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is 0 (no ratio invented)."""
    return a / b if a is not None and b else None


def ratios_to(
    values: Mapping[str, float | None], reference: str, invert: bool = False
) -> dict[str, float | None]:
    """Every value over ``values[reference]`` (``invert``: reference over every value, e.g. a
    speed-up from times); None where a value is missing."""
    ref = values.get(reference)
    if invert:
        return {k: ratio(ref, v) for k, v in values.items()}
    return {k: ratio(v, ref) for k, v in values.items()}


@dataclass(frozen=True)
class Column:
    """One table column: ``title``, ``width`` and a format spec (``"9.1f"``, ``",d"``, ``"s"``)
    applied to the cell; a None or non-finite float cell prints as ``nan``."""

    title: str
    width: int
    fmt: str = "s"


def _cell(v: Any, c: Column) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return f"{'nan':>{c.width}s}"
    return f"{v:>{c.width}{c.fmt}}"


def format_table(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Header, rule and one line per row (a row given as a ``str`` is printed as is)."""
    hdr = " ".join(f"{c.title:>{c.width}s}" for c in columns)
    lines = [hdr, "-" * len(hdr)]
    for row in rows:
        if isinstance(row, str):
            lines.append(row)
        else:
            lines.append(" ".join(_cell(v, c) for v, c in zip(row, columns)))
    return lines


def print_table(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> None:
    """Print :func:`format_table`."""
    print("\n".join(format_table(columns, rows)))


def write_json(path: str | Path, res: Mapping[str, Any]) -> None:
    """Write a result atomically and say so."""
    atomic_write_json(Path(path), dict(res))
    print(f"wrote {path}")
