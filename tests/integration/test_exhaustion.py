"""A deviating or impatient coordinator cannot make a party keep working: real processes.

The unit tests (``tests/unit/test_limits.py``) show the limits and the cancellation on the
in-process federation.  Cancellation also depends on the runtime -- the party node's gRPC
service, its session registry and reaper, the role's thread in a separate process -- so this
test runs it over real node processes and mutual TLS.

The request: a DP quantile over 32 columns at 65,536 bins, 2,097,153 released values per
party, each an exact noise draw (about 12 microseconds of CPU each on the reference machine:
some 25 CPU seconds per party), allowed by the parties' limits, with a 3-second deadline.  The
parties' sessions expire while they draw; the coordinator gives up.  Without cancellation a
party would go on drawing for the rest of its 25 CPU seconds (more on a busier machine, which
leaves each party less CPU before the deadline) and then fail at its first send.

What is measured is work, not time: each party process's CPU seconds (``/proc/<pid>/stat``)
from the moment the analyst's request failed to the moment the party audited its role's end.
A cancelled role finishes at most the chunk of 65,536 draws it was in (about 0.8 CPU
seconds), so the bound is 4 CPU seconds; the unstopped role would spend over 15 after the
request failed (25, less at most the 2 x 5 seconds of wall time it could have run by then).
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np
import pytest

from parties.analyst.client import Client
from parties.errors import RemoteError
from parties.federation import local as federation
from parties.privacy.audit import AuditLog
from smpc import dp
from smpc.stats import StatSpec

PARTIES = ("lab-a", "lab-b")
COLUMNS = tuple(f"c{j}" for j in range(32))
LIMITS = {"max_released_values": 3_000_000, "max_session_cpu_seconds": 600.0,
          "max_request_memory_mb": 4096.0}
CPU_BOUND = 4.0
HANG_GUARD = 120.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ended(db: Path, computation: str) -> dict | None:
    """The audit record of the quantile role's end at a party, if it has ended."""
    for r in AuditLog(db, chain_only=True).records(limit=None):
        if r.event.get("computation") == computation and r.event.get("outcome") in (
                "failed", "released"):
            return r.event
    return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_party_stops_work_when_the_coordinator_gives_up(tmp_path):
    rng = np.random.default_rng(7)
    files = []
    for name in PARTIES:
        files.append(tmp_path / f"{name}.csv")
        with files[-1].open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            w.writerows(rng.uniform(0, 1, (30, len(COLUMNS))).round(6).tolist())
    spec = StatSpec("quantiles", COLUMNS, probabilities=(0.5,), bounds=(0.0, 1.0),
                    resolution=65536, dp=dp.DPRequest(epsilon=0.5, delta=1e-6))
    with federation.local_federation(files, directory=tmp_path / "fed", min_cohort_size=5,
                                     limits=LIMITS) as lay, Client(lay.directory) as client:
        pids = {p: int(lay.pid_file(p).read_text()) for p in PARTIES}
        dbs = {p: lay.node_dir(p) / "party.db" for p in PARTIES}
        with pytest.raises(RemoteError):
            client.compute(spec, timeout=3.0)
        at_failure = {p: cpu_seconds(pids[p]) for p in PARTIES}
        events = {}
        for p in PARTIES:   # wait for each role's end: a condition, with a hang guard
            stop = time.monotonic() + HANG_GUARD
            while (event := ended(dbs[p], "quantiles")) is None:
                assert time.monotonic() < stop, f"{p} never audited the end of its role"
                time.sleep(0.1)
            events[p] = event
        spent = {p: cpu_seconds(pids[p]) - at_failure[p] for p in PARTIES}
        for p in PARTIES:
            assert events[p]["outcome"] == "failed"
            assert "stopped its role" in events[p]["reason"], events[p]["reason"]
            assert spent[p] < CPU_BOUND, f"{p} kept working: {spent}"
            assert federation.node_health(lay.directory, p)["running_sessions"] == 0
