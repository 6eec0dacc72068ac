"""CPU time the federation's node processes spend per call, read from ``/proc/<pid>/stat``.

On a 2-core machine a small computation is bound by CPU, not by the network: four node
processes (three parties and the coordinator) and the client share two cores, so the sum of
their CPU time per call is a floor under the wall time (half of it, at best).  A protocol case
reads every node's user + system time before and after its timed calls and reports the
difference per call, by node and in total, with the client process's own (the kernel counts in
clock ticks, 10 ms here: over 3-5 timed calls a node's figure is good to 2-3 ms).  Elsewhere (no
``/proc``) every function returns empty answers and the rows have no CPU columns.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any


def node_pids(directory: Path) -> dict[str, int]:
    """Name -> pid of every running node (parties, coordinator, dealer) of a federation."""
    from parties.federation import local as federation

    return {n.name: n.pid for n in federation.status(directory)
            if n.alive and n.pid is not None}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process so far (all its threads), by name; and the
    calling process's own under ``""``."""
    out: dict[str, float] = {"": time.process_time()}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for name, pid in pids.items():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def per_call(before: dict[str, float], after: dict[str, float], calls: int
             ) -> dict[str, Any]:
    """Row metrics: CPU seconds per call over all nodes, by node, and the client's."""
    nodes = {n: (after[n] - before[n]) / calls for n in after if n and n in before}
    if not nodes or calls < 1:
        return {}
    return {"node_cpu_s_per_call": sum(nodes.values()),
            "node_cpu_by_node_s": {n: round(v, 6) for n, v in sorted(nodes.items())},
            "client_cpu_s_per_call": (after[""] - before[""]) / calls}
