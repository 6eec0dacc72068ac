"""Run protocol roles among simulated nodes in one process.

Each role runs in its own thread with a :class:`SimulatedTransport`; messages
go through an in-memory hub that copies arrays (as a network would), enforces
exactly-once delivery per (sender, recipient, tag), and counts messages and
bytes per node.  If a role raises, every node waiting on it is woken with a
:class:`~smpc.errors.PeerFailure` naming it, every other role stops at its next
:meth:`~smpc.transport.Transport.check_cancelled` (the computation cannot
succeed any more), and :func:`run` re-raises the first error -- the same
failure semantics the gRPC runtime gives.

The unit tests and the op-level benchmarks use this; it is not a security
boundary (all nodes share one address space).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from smpc.errors import PeerFailure, ProtocolError
from smpc.transport import Payload, Traffic, Transport


class _Hub:
    def __init__(self, names: list[str]) -> None:
        self.names = set(names)
        self.cond = threading.Condition()
        self.boxes: dict[tuple[str, str, str], Payload] = {}
        self.seen: set[tuple[str, str, str]] = set()
        self.failed: dict[str, BaseException] = {}


class SimulatedTransport(Transport):
    """A node's channels inside the simulator."""

    def __init__(self, me: str, hub: _Hub, timeout: float) -> None:
        super().__init__(me)
        self._hub = hub
        self._timeout = timeout

    def _send(self, to: str, tag: str, payload: Payload) -> None:
        if to not in self._hub.names:
            raise ProtocolError(f"{self.me} sent {tag!r} to unknown node {to!r}")
        key = (self.me, to, tag)
        copy = payload.copy() if isinstance(payload, np.ndarray) else bytes(payload)
        with self._hub.cond:
            if key in self._hub.seen:
                raise ProtocolError(f"{self.me} sent {tag!r} to {to} twice (replay)")
            self._hub.seen.add(key)
            self._hub.boxes[key] = copy
            self._hub.cond.notify_all()

    def _check_cancelled(self) -> None:
        with self._hub.cond:
            failed = next((n for n in self._hub.failed if n != self.me), None)
        if failed is not None:
            raise PeerFailure(failed, f"{failed} failed: {self.me} stops its role")

    def _recv(self, sender: str, tag: str) -> Payload:
        key = (sender, self.me, tag)
        deadline = time.monotonic() + self._timeout
        with self._hub.cond:
            while key not in self._hub.boxes:
                if sender in self._hub.failed:
                    raise PeerFailure(sender, f"{sender} failed before sending {tag!r}")
                if sender not in self._hub.names:
                    raise ProtocolError(f"{self.me} waits for unknown node {sender!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerFailure(sender, f"{sender} did not send {tag!r} in time")
                self._hub.cond.wait(remaining)
            return self._hub.boxes.pop(key)


@dataclass
class SimulationResult:
    """Each role's return value and each node's traffic."""

    results: dict[str, Any]
    traffic: dict[str, Traffic]
    seconds: float


def run(
    roles: Mapping[str, Callable[[Transport], Any]], timeout: float = 120.0
) -> SimulationResult:
    """Run ``roles`` (node name -> function of its transport) to completion.

    Raises the first exception any role raised (other nodes' resulting
    ``PeerFailure`` errors are secondary and dropped).
    """
    names = list(roles)
    hub = _Hub(names)
    transports = {n: SimulatedTransport(n, hub, timeout) for n in names}
    results: dict[str, Any] = {}
    errors: list[tuple[float, str, BaseException]] = []

    def body(name: str) -> None:
        try:
            results[name] = roles[name](transports[name])
        except BaseException as exc:  # re-raised by run()
            with hub.cond:
                hub.failed[name] = exc
                errors.append((time.monotonic(), name, exc))
                hub.cond.notify_all()

    start = time.perf_counter()
    threads = [threading.Thread(target=body, args=(n,), name=f"sim-{n}") for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if errors:
        primary = [e for e in errors if not isinstance(e[2], PeerFailure)] or errors
        raise primary[0][2]
    return SimulationResult(results, {n: t.traffic for n, t in transports.items()}, seconds)
