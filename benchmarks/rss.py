"""Memory of the party node processes, read from ``/proc/<pid>/status`` (Linux).

``VmHWM`` is a process's peak resident set size since it started, or since its peak was last
reset by writing ``5`` to ``/proc/<pid>/clear_refs`` (Linux >= 4.0; the benchmark's own node
processes, same user).  A case resets the peak of every party before its first call and
reads it after its last, so the peak is the one the case caused, on top of the table the node
had already loaded.  Elsewhere (no ``/proc``) every function returns empty answers and the
rows simply have no memory columns.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any


def party_pids(directory: Path) -> dict[str, int]:
    """Name -> pid of every running *party* node of a federation directory."""
    from parties.federation import local as federation

    return {n.name: n.pid for n in federation.status(directory)
            if n.alive and n.pid is not None and n.role == "party"}


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peaks(pids: dict[str, int]) -> dict[str, int]:
    """Reset each process's peak RSS; returns its current RSS (bytes) by name."""
    before: dict[str, int] = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        st = _status(pid)
        if "VmRSS" in st:
            before[name] = st["VmRSS"]
    return before


def peaks(pids: dict[str, int]) -> dict[str, int]:
    """Peak RSS (bytes) by name since the last :func:`reset_peaks`."""
    out: dict[str, int] = {}
    for name, pid in pids.items():
        st = _status(pid)
        if "VmHWM" in st:
            out[name] = st["VmHWM"]
    return out


def summary(before: dict[str, int], peak: dict[str, int]) -> dict[str, Any]:
    """Row metrics: the largest party peak and RSS before the case, per node too."""
    if not peak:
        return {}
    worst = max(peak, key=lambda n: peak[n])
    return {"party_peak_rss_bytes": peak[worst],
            "party_rss_before_bytes": before.get(worst, 0),
            "party_peak_rss_by_node": dict(sorted(peak.items()))}
