"""The coordinator's engine: it drives protocols' stages over a control plane and a network.

:class:`Coordinator` knows nothing of gRPC: its control calls go through a
:class:`~parties.transport.control.ControlPlane` and its own role's messages through a
:class:`~parties.transport.channels.Network`, so the same engine runs behind the gRPC service
(:mod:`.node`) and, in unit tests, against party nodes in the same process
(:mod:`parties.federation.inprocess`).

:meth:`Coordinator.execute` runs a :class:`~.state.Protocol`'s stages in order.  On any
failure -- a party refusing at PREPARE, a node unreachable, a role raising, the deadline
passing -- the session moves to FAILED: every node that may hold it is told to abort (they
free it and refund a charge that never ran) and one error is raised that names the failed
node.  When a node only reports that *another* node failed ("B did not send ..."), that other
node is blamed.  No partial result is ever returned.
"""

from __future__ import annotations

import functools
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Any

import grpc

from parties.config import FederationConfig
from parties.coordinator.state import STAGE_METHODS, Protocol, SessionState, Stage
from parties.errors import DECLINE_CODES, NodeBlamed
from parties.transport.channels import Network
from parties.transport.control import (
    ControlPlane,
    Described,
    Prepare,
    Prepared,
    SessionRole,
)
from parties.transport.sessions import SessionRegistry
from smpc.errors import InputError, PeerFailure, ProtocolError, SmpcError

__all__ = ["AWAIT_GRACE", "CONTROL_TIMEOUT", "Awaits", "Coordinator"]

log = logging.getLogger("smpc.coordinator")

CONTROL_TIMEOUT = 30.0       # Prepare / Run / Describe / Abort calls
AWAIT_GRACE = 5.0            # Await calls may outlive the session deadline by this much
SECONDARY_GRACE = 1.0        # after a "peer X failed" report, wait this long for X's own error
FAN_OUT_WORKERS = 256


def _prefixed(node: str, message: str) -> str:
    return message if message.startswith(node) else f"{node}: {message}"


def blame_local(name: str, exc: BaseException) -> NodeBlamed:
    """The failure to report when a role run *here* (the coordinator's own, or a waiter)
    raised ``exc``: a peer that failed or sent a malformed message is blamed, not ``name``."""
    if isinstance(exc, NodeBlamed):
        return exc
    if isinstance(exc, PeerFailure):
        code = grpc.StatusCode.DEADLINE_EXCEEDED if exc.deadline else grpc.StatusCode.ABORTED
        return NodeBlamed(exc.peer, _prefixed(name, str(exc)), code, primary=False)
    if isinstance(exc, ProtocolError):  # a malformed message: its sender is to blame
        return NodeBlamed(exc.peer or name, _prefixed(name, str(exc)), grpc.StatusCode.ABORTED,
                          primary=exc.peer is None)
    if isinstance(exc, InputError):
        return NodeBlamed(name, _prefixed(name, str(exc)), grpc.StatusCode.INVALID_ARGUMENT)
    log.error("%s failed", name, exc_info=exc)
    return NodeBlamed(name, f"{name} failed: {exc}", grpc.StatusCode.INTERNAL)


def is_decline(failure: NodeBlamed, asked: Mapping[str, Any]) -> bool:
    """Whether a Prepare ``failure`` is a *decline*: a party asked (in ``asked``) refused by
    its own policy, itself (primary, blamed on itself, a status of
    :data:`~parties.errors.DECLINE_CODES`).  An unreachable party, a deadline, an internal
    or storage error, or a failure blamed on another node is not."""
    return (failure.primary and failure.node in asked and failure.code in DECLINE_CODES)


class Awaits:
    """Waiters running in threads (a party's ``Await``, a local role), collected by
    :meth:`collect`: every result, or the first failure (see :meth:`Coordinator.await_all`)."""

    def __init__(self, hard_end: float) -> None:
        self.hard_end = hard_end
        self.events: queue.Queue[tuple[str, Any, NodeBlamed | None]] = queue.Queue()
        self.names: list[str] = []

    def start(self, name: str, fn: Callable[[], Any]) -> None:
        def watch() -> None:
            try:
                self.events.put((name, fn(), None))
            except BaseException as exc:
                self.events.put((name, None, blame_local(name, exc)))

        self.names.append(name)
        threading.Thread(target=watch, daemon=True, name=f"await-{name}").start()

    def collect(self) -> dict[str, Any]:
        pending = set(self.names)
        results: dict[str, Any] = {}
        secondary: NodeBlamed | None = None
        secondary_end = self.hard_end
        while pending:
            end = self.hard_end if secondary is None else min(self.hard_end, secondary_end)
            try:
                name, value, failure = self.events.get(
                    timeout=max(end - time.monotonic(), 0.0))
            except queue.Empty:
                if secondary is not None:
                    raise secondary from None
                late = sorted(pending)[0]
                raise NodeBlamed(late, f"{late} did not finish before the session deadline",
                                 grpc.StatusCode.DEADLINE_EXCEEDED) from None
            pending.discard(name)
            if failure is None:
                results[name] = value
                continue
            if failure.primary:
                raise failure
            if secondary is None:
                secondary = failure
                secondary_end = time.monotonic() + SECONDARY_GRACE
        if secondary is not None:
            raise secondary
        return results


class Coordinator:
    """Runs protocols: session states, fan-out of control calls, awaiting, aborting."""

    def __init__(self, name: str, federation: FederationConfig, *, control: ControlPlane,
                 network: Network, registry: SessionRegistry | None = None,
                 dealer: str | None = None, session_timeout: float = 300.0) -> None:
        self.me = name
        self.federation = federation
        self.control = control
        self.network = network
        self.registry = registry or SessionRegistry(name)
        self.dealer = dealer
        self.session_timeout = float(session_timeout)
        self.pool = futures.ThreadPoolExecutor(max_workers=FAN_OUT_WORKERS,
                                               thread_name_prefix="fanout")
        self.states: dict[str, SessionState] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.registry.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.network.close()

    # ------------------------------------------------------------------ sessions

    def timeout(self, requested: float) -> float:
        """The session timeout: the analyst's, capped by the coordinator's own."""
        if requested and requested > 0:
            return min(float(requested), self.session_timeout)
        return self.session_timeout

    def new_state(self, protocol: str, analyst: str, timeout: float,
                  members: dict[str, SessionRole], controlled: list[str],
                  session_id: str | None = None) -> SessionState:
        sid = session_id or secrets.token_hex(16)
        st = SessionState(sid, protocol, analyst, time.monotonic() + timeout, members,
                          controlled)
        with self._lock:
            self.states[sid] = st
        return st

    # ------------------------------------------------------------- control calls

    def _gather(self, calls: dict[str, Callable[[], Any]]
                ) -> tuple[dict[str, Any], list[NodeBlamed]]:
        """Run the calls in parallel and wait for every one: the answers, and the failures in
        the calls' order."""
        futs = {node: self.pool.submit(fn) for node, fn in calls.items()}
        results: dict[str, Any] = {}
        failures: list[NodeBlamed] = []
        for node, fut in futs.items():
            try:
                results[node] = fut.result()
            except NodeBlamed as exc:
                failures.append(exc)
        return results, failures

    def fan_out(self, calls: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        """Run the calls in parallel; the first failure (a primary one if any) is raised."""
        results, failures = self._gather(calls)
        if failures:
            primary = [f for f in failures if f.primary] or failures
            raise primary[0]
        return results

    def prepare(self, st: SessionState, requests: Mapping[str, Prepare]
                ) -> dict[str, Prepared]:
        """Every node's Prepare, in parallel, all answered before anything is raised.  If
        parties only *declined* (:func:`is_decline`), the error carries every decliner's
        reason (``declines``) -- the analyst may ask again without them; any other failure is
        raised alone (nobody may be skipped)."""
        timeout = min(st.remaining(), CONTROL_TIMEOUT)

        def call(node: str, req: Prepare) -> Prepared:
            answer = self.control.prepare(node, req, timeout)
            st.prepared.append(node)
            return answer

        results, failures = self._gather(
            {n: functools.partial(call, n, r) for n, r in requests.items()})
        if not failures:
            return results
        declined = {f.node: str(f) for f in failures if is_decline(f, requests)}
        if len(declined) < len(failures):  # a failure, not only declines: none is skippable
            primary = [f for f in failures if f.primary and f.node not in declined] \
                or [f for f in failures if f.node not in declined]
            raise primary[0]
        first = failures[0]
        # the first refusal's own sentence (as when one party declines); every decliner's
        # sentence travels in ``declines`` (the smpc-declined trailer)
        message = str(first)
        raise NodeBlamed(first.node, message, first.code, declines=declined)

    def run(self, st: SessionState) -> None:
        timeout = min(st.remaining(), CONTROL_TIMEOUT)
        self.fan_out({n: functools.partial(self.control.run, n, st.id, timeout)
                      for n in st.controlled})

    def describe(self, node: str, analyst: str) -> Described:
        return self.control.describe(node, analyst, CONTROL_TIMEOUT)

    def start_awaits(self, st: SessionState) -> Awaits:
        """Send every controlled party's ``Await`` now, without waiting for the answers.

        The protocols call it just before :meth:`run`, so that each ``Await`` travels right
        behind its ``Run`` instead of one round trip after every ``Run`` answered.  A party
        that gets ``Await`` for a session still PREPARED blocks until the role it is about to
        start ends (or the deadline passes), exactly as if ``Run`` had come first: ``Await``
        never starts anything, so the order of the calls on the wire changes no guarantee --
        a party's role still starts only on ``Run``, which is sent only once every party
        accepted at ``Prepare``.  If ``Run`` fails, :meth:`execute` aborts the session
        everywhere and the waiters' answers are dropped unread.
        """
        awaits = Awaits(st.deadline + AWAIT_GRACE + 1.0)

        def await_party(node: str) -> Any:
            return self.control.await_(node, st.id, st.remaining() + AWAIT_GRACE)

        for n in st.controlled:
            awaits.start(n, functools.partial(await_party, n))
        return awaits

    def await_all(self, st: SessionState, local: dict[str, Callable[[], Any]],
                  awaits: Awaits | None = None) -> dict[str, Any]:
        """Wait for every party's Await (sent now unless ``awaits`` were started by
        :meth:`start_awaits`) and every local waiter; first failure wins.

        A failure reported *about* another node (secondary) waits up to SECONDARY_GRACE
        seconds for a primary one.  Nodes still pending at the deadline (plus grace) are
        reported as not having finished.
        """
        if awaits is None:
            awaits = self.start_awaits(st)
        for name, fn in local.items():
            awaits.start(name, fn)
        return awaits.collect()

    def abort_all(self, st: SessionState, failure: NodeBlamed) -> None:
        """Abort the session on every node it involves, and locally (best effort).

        Every controlled node is told, not only those whose Prepare answered: a Prepare that
        timed out may still have registered the session.  Abort is idempotent on the parties.
        """
        reason = str(failure)[:500]
        calls: list[futures.Future[Any]] = []
        for node in st.controlled:
            if node == failure.node and failure.code == grpc.StatusCode.UNAVAILABLE:
                continue  # it is gone; its sessions died with it
            calls.append(self.pool.submit(self.control.abort, node, st.id, reason,
                                          failure.node, 5.0))
        if st.dealer_node:
            calls.append(self.pool.submit(self.control.abort_dealer, st.dealer_node, st.id,
                                          reason, failure.node, 5.0))
        self.registry.abort(st.id, reason, failure.node)
        for c in calls:
            try:
                c.result()
            except NodeBlamed as exc:
                log.info("session %s: abort not delivered: %s", st.id, exc)

    # ---------------------------------------------------------------- the driver

    def execute(self, protocol: Protocol) -> Any:
        """Run the protocol's stages in their declared order (each transition checked); on
        failure abort everywhere and raise one :class:`NodeBlamed`."""
        st = protocol.state
        try:
            for stage in protocol.stages:
                st.enter(stage)
                getattr(protocol, STAGE_METHODS[stage])()
            result = protocol.result()
            st.enter(Stage.DONE)
            st.result = result
            return result
        except BaseException as exc:
            failure = exc if isinstance(exc, NodeBlamed) else NodeBlamed(
                self.me, f"{self.me} failed: {exc}",
                grpc.StatusCode.INVALID_ARGUMENT if isinstance(exc, InputError)
                else grpc.StatusCode.INTERNAL)
            if not isinstance(exc, (NodeBlamed, SmpcError)):
                log.exception("session %s: unexpected error", st.id)
            st.failure = failure
            if st.stage is not Stage.FAILED:
                st.enter(Stage.FAILED)
            log.info("session %s failed at %s: blamed %s: %s", st.id,
                     st.history[-2][0] if len(st.history) > 1 else "start", failure.node,
                     failure)
            self.abort_all(st, failure)
            raise failure from None
        finally:
            self.registry.free(st.id, st.stage.value)
            with self._lock:
                self.states.pop(st.id, None)
            log.info("session %s: %s in %.2f s", st.id, st.stage.value,
                     time.monotonic() - st.started)
