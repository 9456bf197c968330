"""
What sod2's benchmark tools share: one timer and one result-table writer.

    from sod2.utils.benchmark import ResultTable, environment_line, time_callable

    t = time_callable(lambda: model(inputs), iters=20, warmup=3)   # Timing: t.median, t.spread
    table = ResultTable(["model", "eager (ms)", "runtime (ms)"], header=environment_line(torch_threads=4))
    table.add_row(["YOLOX-S", f"{1e3 * t.median:.1f}", "..."])
    table.write("speed.md")                # the Markdown table on stdout and in the file

* :func:`time_callable` runs ``fn`` ``warmup`` times untimed, then ``iters`` times, each call
  timed alone between two reads of the clock (``time.perf_counter`` unless a ``clock`` is given,
  e.g. a fake one in tests); ``synchronize`` (e.g. ``torch.cuda.synchronize``) runs before each
  read, so that asynchronous device work is inside the call that queued it.
* :class:`Timing` holds the per-call times (seconds) and gives their median and spread (the
  interquartile range, p75 - p25, quartiles by linear interpolation between order statistics,
  NumPy's default ``percentile``), plus min and max.
* :class:`ResultTable` writes a Markdown table: an optional header line (the machine and library
  versions: :func:`environment_line`), a blank line, the table. :meth:`ResultTable.write` prints it
  and writes it to a file atomically (no half-written file on an error); :func:`write_tables`
  does the same for a report of several tables (one blank line between them).
* :func:`ratio` formats ``b / a`` as ``"1.23x"`` (``"-"`` without a baseline); :func:`peak_rss_mb`
  is the process's peak resident set so far; :func:`run_report` is the top level of a benchmark
  tool (tables on stdout and ``--output``; a :class:`~sod2.errors.UserError` is one line, exit 2).
"""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from ..errors import UserError

__all__ = ["Timing", "time_callable", "ResultTable", "environment_line", "cpu_count", "percentile", "ratio",
           "peak_rss_mb", "write_tables", "run_report"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by linear interpolation between the sorted
    values at rank ``q / 100 * (n - 1)`` (NumPy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    rank = q / 100.0 * (len(s) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (rank - lo)


@dataclass(frozen=True)
class Timing:
    """Times (seconds) of the timed calls, in call order (the warm-up calls excluded)."""

    times: tuple

    @property
    def median(self) -> float:
        """The median time (the mean of the two middle values for an even count)."""
        return percentile(self.times, 50.0)

    @property
    def spread(self) -> float:
        """The interquartile range p75 - p25 (0 for one call)."""
        return percentile(self.times, 75.0) - percentile(self.times, 25.0)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    def __len__(self) -> int:
        return len(self.times)


def time_callable(fn: Callable[[], object], iters: int, warmup: int = 0,
                  clock: Callable[[], float] = time.perf_counter,
                  synchronize: Optional[Callable[[], object]] = None) -> Timing:
    """Call ``fn`` ``warmup`` times, then time ``iters`` calls one by one.

    Args:
        fn: the work to time (no arguments; its result is discarded).
        iters: timed calls (>= 1).
        warmup: untimed calls before them (>= 0): lazy initialisation, caches, allocator.
        clock: seconds as a float (monotonic).
        synchronize: called before each clock read (e.g. ``torch.cuda.synchronize``).
    Raises:
        UserError: ``iters`` < 1 or ``warmup`` < 0.
        ValueError: the clock went backwards or gave a non-finite time.
    """
    if int(iters) < 1:
        raise UserError(f"--iters must be at least 1, got {iters}")
    if int(warmup) < 0:
        raise UserError(f"--warmup must be 0 or more, got {warmup}")
    sync = synchronize or (lambda: None)
    for _ in range(int(warmup)):
        fn()
    times: List[float] = []
    for _ in range(int(iters)):
        sync()
        start = clock()
        fn()
        sync()
        elapsed = clock() - start
        if not math.isfinite(elapsed) or elapsed < 0:
            raise ValueError(f"the clock gave a time of {elapsed!r} s for one call")
        times.append(elapsed)
    return Timing(tuple(times))


def cpu_count() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_line(**threads: int) -> str:
    """One line naming the machine and the libraries: CPU model, usable cores, OS, Python,
    torch and onnxruntime versions (those importable), and ``threads`` as ``name=count``
    (e.g. ``torch_threads=8, ort_intra_op_threads=8``)."""
    parts = [f"CPU: {_cpu_name()}, {cpu_count()} usable cores", f"{platform.system()} {platform.release()}",
             f"Python {platform.python_version()}"]
    for name in ("torch", "onnxruntime", "openvino"):
        mod = sys.modules.get(name)
        if mod is None:
            try:
                mod = __import__(name)
            except ImportError:
                continue
        parts.append(f"{name} {getattr(mod, '__version__', '?')}")
    if threads:
        parts.append("threads: " + ", ".join(f"{k}={v}" for k, v in threads.items()))
    return "; ".join(parts)


class ResultTable:
    """A Markdown table with an optional header line above it.

    Args:
        columns: the column titles.
        header: a line printed above the table (e.g. :func:`environment_line`), or None.
        notes: lines printed below the table.
    """

    def __init__(self, columns: Sequence[str], header: Optional[str] = None, notes: Sequence[str] = ()):
        if not columns:
            raise ValueError("a table needs at least one column")
        self.columns = [str(c) for c in columns]
        self.header = header
        self.notes = list(notes)
        self.rows: List[List[str]] = []

    def add_row(self, cells: Sequence[object]) -> None:
        """One row, one cell per column (converted with ``str``; ``|`` escaped)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells for {len(self.columns)} columns {self.columns}")
        self.rows.append([str(c).replace("|", "\\|") for c in cells])

    def to_markdown(self) -> str:
        """The text: header line, blank line, table, then the notes (each block ends with a newline)."""
        lines = []
        if self.header:
            lines += [self.header, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            lines += [""] + self.notes
        return "\n".join(lines) + "\n"

    def write(self, path: Optional[str] = None, stream=None) -> str:
        """Print the table to ``stream`` (default stdout) and, when ``path`` is given, write it
        there atomically (temporary name, then rename). Returns the text."""
        return write_tables([self], path, stream)


def write_tables(tables: Sequence[ResultTable], path: Optional[str] = None, stream=None) -> str:
    """Print the tables' Markdown, one blank line between two tables, to ``stream`` (default
    stdout) and, when ``path`` is given, write the same text there atomically. Returns the text."""
    from ..data.io import atomic_write_text

    text = "\n".join(t.to_markdown() for t in tables)
    (stream or sys.stdout).write(text)
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        atomic_write_text(text, path)
    return text


def ratio(b: Optional[float], a: Optional[float]) -> str:
    """``b / a`` as ``"1.23x"``; ``"-"`` when ``a`` is 0 or None or ``b`` is None.

    Raises:
        ValueError: ``a`` or ``b`` is not finite (a broken measurement is never a ratio).
    """
    if a is None or b is None or a == 0:
        return "-"
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"ratio of non-finite measurements {b!r} / {a!r}")
    return f"{b / a:.2f}x"


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MiB.

    On Linux the ``VmHWM`` line of ``/proc/self/status`` (the high-water mark of this process's
    own memory map); elsewhere ``getrusage``'s ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    ``ru_maxrss`` is not used on Linux because it survives ``exec``: a worker started by a
    process that had reached 11 GB reports 11 GB before it allocates anything.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def run_report(build: Callable[[object], Sequence[ResultTable]], args) -> int:
    """The top level of a benchmark tool: ``build(args)`` gives the report's tables, which go to
    stdout and to ``args.output`` when set (atomically). A :class:`~sod2.errors.UserError` is one
    line ``error: <message>`` on stderr, nothing written, and the exit status 2. Returns the exit
    status."""
    try:
        tables = build(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_tables(tables, getattr(args, "output", None))
    return 0
