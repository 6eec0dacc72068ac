"""Shared pieces of the benchmark suite: cases, rows, timing, progress, machine info.

A *case* is one named measurement (``"sharing/beaver-mul/n=1e5"``) with a function that
returns result *rows*; a row is a plain JSON-able dict::

    {"suite": "sharing", "case": "...", "op": "beaver-mul",
     "params": {"n": 100000, "parties": 3}, "metrics": {"seconds": 0.012, ...}, "note": ""}

Timing: :func:`measure` runs a function until both a minimum number of repeats and a minimum
total time are reached (bounded by a maximum), with an untimed ``setup`` before each call,
and reports the median (and min / mean) of the calls.  Wall-clock ``time.perf_counter``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]


@dataclass
class Config:
    """What a run asks for; passed to every suite's ``cases()``."""

    quick: bool = True
    tiny: bool = False           # the smoke test's subset: seconds, not minutes
    workdir: str = ""            # scratch space (federations, data files)
    threads_all: int = field(default_factory=lambda: os.cpu_count() or 1)
    profile_dir: str = ""        # set by --profile: node processes run under cProfile
    scaling_max_rows: int = 10**7  # the scaling sweep's largest rows per party
    engine_max_rows: int = 10**8   # the DuckDB engine sweep's largest rows per party

    def pick(self, tiny: Any, quick: Any, full: Any) -> Any:
        """The value for this run's size."""
        if self.tiny:
            return tiny
        return quick if self.quick else full

    @property
    def mode(self) -> str:
        return "tiny" if self.tiny else ("quick" if self.quick else "full")


@dataclass
class Case:
    """One named measurement.  ``run()`` returns rows; ``weight`` guides the progress bar."""

    name: str
    run: Callable[[], list[Row]]
    weight: float = 1.0
    group: str = ""  # a shared resource (federation) released after the group's last case


class Skip(Exception):
    """Raised by a case that cannot run here (missing optional package...); the reason is
    recorded as a row with ``skipped`` set."""


def row(suite: str, case: str, op: str, params: dict[str, Any], metrics: dict[str, Any],
        note: str = "") -> Row:
    return {"suite": suite, "case": case, "op": op, "params": params,
            "metrics": metrics, "note": note}


# ------------------------------------------------------------------------------ timing


@dataclass
class Timing:
    """Seconds per call of a measured function."""

    median: float
    best: float
    mean: float
    repeats: int

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.median, "best_s": self.best, "mean_s": self.mean,
                "repeats": self.repeats}


def measure(fn: Callable[..., Any], *, setup: Callable[[], Any] | None = None,
            min_repeats: int = 3, min_time: float = 0.1, max_repeats: int = 50,
            max_time: float | None = None, warmup: int = 0) -> Timing:
    """Time ``fn`` (called with ``setup()``'s result if ``setup`` is given, untimed).

    Runs at least ``min_repeats`` calls and until ``min_time`` seconds were measured, at
    most ``max_repeats`` calls (and stops early once ``max_time`` total measured seconds
    are exceeded after ``min_repeats``).
    """
    times: list[float] = []
    for _ in range(warmup):
        arg = setup() if setup is not None else None
        fn(arg) if setup is not None else fn()
    total = 0.0
    while True:
        arg = setup() if setup is not None else None
        t0 = time.perf_counter()
        if setup is not None:
            fn(arg)
        else:
            fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
        n = len(times)
        if n >= max_repeats:
            break
        if n >= min_repeats and total >= min_time:
            break
        if max_time is not None and n >= min_repeats and total >= max_time:
            break
    return Timing(statistics.median(times), min(times), statistics.fmean(times), len(times))


def measure_interleaved(fns: list[Callable[[], Any]], *, min_repeats: int = 3,
                        min_time: float = 0.1, max_repeats: int = 50, warmup: int = 1
                        ) -> list[list[float]]:
    """Time several functions in turns (a, b, c, a, b, c, ...) so that a change in machine
    load hits all of them alike; returns each one's list of seconds per call."""
    for _ in range(warmup):
        for f in fns:
            f()
    times: list[list[float]] = [[] for _ in fns]
    total = 0.0
    while True:
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            dt = time.perf_counter() - t0
            times[i].append(dt)
            total += dt
        n = len(times[0])
        if n >= max_repeats or (n >= min_repeats and total >= min_time):
            return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-turn ratios a_i / b_i (robust to load drifting during the run)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def load_averages() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def git_commit() -> dict[str, Any] | None:
    """The commit of the checkout the suite runs from and whether it has local changes
    (None outside a git checkout, e.g. an installed wheel)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def finite_positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


# ----------------------------------------------------------------------------- progress


class Progress:
    """tqdm if installed, otherwise one line per case on stderr."""

    def __init__(self, total: float, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None
        self._done = 0.0
        self._total = total
        self._start = time.perf_counter()
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, file=sys.stderr, dynamic_ncols=True,
                                 bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")
            except ImportError:
                self._bar = None

    def start(self, name: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(name[-60:], refresh=True)
        else:
            pct = 100.0 * self._done / self._total if self._total else 100.0
            print(f"[{pct:5.1f}% {time.perf_counter() - self._start:6.1f}s] {name} ...",
                  file=sys.stderr, flush=True)

    def advance(self, weight: float) -> None:
        step = min(weight, self._total - self._done)
        self._done += step
        if self._bar is not None and step > 0:
            self._bar.update(step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ------------------------------------------------------------------------- machine info


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in open("/proc/meminfo", encoding="utf-8"):  # noqa: SIM115
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python and the versions of the libraries that matter."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_bytes": _ram_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in (
            "smpc", "numpy", "tenseal", "grpcio", "protobuf", "cryptography", "mpyc",
            "gmpy2", "matplotlib", "tqdm", "pyinstrument", "crypten", "torch", "duckdb",
            "pyarrow")},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_1min": load_average(),
    }


# ---------------------------------------------------------------------------- resources


class Resources:
    """Expensive shared set-ups (federations, key holders), made once and closed at the end."""

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._closers: dict[str, Callable[[], None]] = {}

    def get(self, key: str, factory: Callable[[], Any],
            closer: Callable[[Any], None] | None = None) -> Any:
        if key not in self._items:
            value = factory()
            self._items[key] = value
            if closer is not None:
                self._closers[key] = lambda v=value: closer(v)
        return self._items[key]

    def release(self, key: str) -> None:
        """Close and forget one item (no-op if it was never made)."""
        self._items.pop(key, None)
        closer = self._closers.pop(key, None)
        if closer is not None:
            with contextlib.suppress(Exception):
                closer()

    def close(self) -> None:
        for key in list(reversed(self._closers)):
            self.release(key)
        self._items.clear()


def human_seconds(s: float | None) -> str:
    if s is None or not isinstance(s, (int, float)) or math.isnan(s):
        return "—"
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def human_bytes(b: float | None) -> str:
    if b is None or not isinstance(b, (int, float)):
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{int(b)} B"


def human_rate(r: float | None, unit: str = "/s") -> str:
    if r is None or not isinstance(r, (int, float)) or not math.isfinite(r):
        return "—"
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if r >= size:
            return f"{r / size:.3g}{suffix}{unit}"
    return f"{r:.3g}{unit}"


def size_label(n: int) -> str:
    """10**k as '1e5', other numbers as they are."""
    k = round(math.log10(n)) if n > 0 else 0
    return f"1e{k}" if 10**k == n else str(n)


def iter_chunks(seq: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def flatten(rows_lists: Iterable[list[Row]]) -> list[Row]:
    return [r for rows in rows_lists for r in rows]
