"""Per-session state of a node: members, inbox, replay protection, deadline, status.

A :class:`Session` holds what one node knows about one computation:

* ``members``: the nodes of the session and their roles -- the only senders
  whose payloads are accepted (:meth:`Session.deliver`);
* an inbox keyed by ``(sender, tag)`` and a *seen* set: a second payload with
  the same ``(sender, tag)`` is refused (replay), as :mod:`smpc.transport`
  requires (exactly once per sender, recipient, tag);
* a deadline (monotonic clock): :meth:`Session.wait_message` raises
  :class:`~smpc.errors.PeerFailure` naming the sender when its payload has not
  arrived by then, or as soon as the session is aborted (naming the node whose
  failure caused the abort, when known);
* a status (:class:`Status`) and the role's outcome or error;
  :meth:`Session.check_active` raises once it is aborted or expired, so that a
  role that is still computing stops (cooperative cancellation).

A :class:`SessionRegistry` maps session ids to sessions, thread-safely.  A
session is freed (its rows, payloads and outcome dropped) by :meth:`free`
(success or failure, after the outcome was collected), by :meth:`abort`, and by
the reaper thread once its deadline plus a grace period has passed.  Freed ids
are remembered (bounded) so that a reused id is refused with ALREADY_EXISTS and
a late message for a closed session gets a clear "closed" status instead of
"unknown".  :meth:`SessionRegistry.count` exists for tests and health checks.

Nothing here logs payloads; log lines carry session ids, tags, node names and
byte counts only.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import grpc

from parties.errors import SessionError
from smpc.errors import PeerFailure, ProtocolError
from smpc.transport import Payload

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")

__all__ = ["Session", "SessionRegistry", "Status"]

log = logging.getLogger("smpc.sessions")

REAP_GRACE_SECONDS = 5.0
MAX_RETIRED = 10_000


class Status(enum.Enum):
    PREPARED = "prepared"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"


_FINAL = (Status.DONE, Status.FAILED, Status.ABORTED)


class Session:
    """One node's state for one session (see the module docstring).

    ``job`` is the role-specific data (spec, selected rows, model ...) that the
    node keeps until the session is freed.
    """

    def __init__(
        self, session_id: str, me: str, members: Mapping[str, str], timeout: float,
        kind: str = "", job: Any = None,
    ) -> None:
        self.id = session_id
        self.me = me
        self.members = dict(members)
        self.kind = kind
        self.job = job
        self.created = time.monotonic()
        self.deadline = self.created + max(float(timeout), 0.0)
        self.status = Status.PREPARED
        self.outcome: Any = None
        self.error: BaseException | None = None
        self.abort_reason = ""
        self.failed_node: str | None = None
        self.thread: threading.Thread | None = None
        #: a data owner's ``Await`` answered ``ready``: only an ``Await`` after it releases
        self.ready_reported = False
        self._cond = threading.Condition()
        self._inbox: dict[tuple[str, str], Payload] = {}
        self._seen: set[tuple[str, str]] = set()
        self.bytes_received = 0

    # ------------------------------------------------------------------ time

    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(self.deadline - time.monotonic(), 0.0)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    # -------------------------------------------------------------- messages

    def check_sender(self, sender: str) -> None:
        """Raise SessionError(PERMISSION_DENIED) unless ``sender`` is a member."""
        if sender not in self.members or sender == self.me:
            raise SessionError(
                f"{sender!r} is not a member of session {self.id}",
                grpc.StatusCode.PERMISSION_DENIED,
            )

    def deliver(self, sender: str, tag: str, payload: Payload) -> None:
        """Store a payload from ``sender``; refuses non-members, replays, closed sessions."""
        self.check_sender(sender)
        key = (sender, tag)
        with self._cond:
            if self.status in _FINAL:
                raise SessionError(
                    f"session {self.id} is {self.status.value}",
                    grpc.StatusCode.FAILED_PRECONDITION,
                )
            if key in self._seen:
                raise SessionError(
                    f"replay refused: {sender} already delivered {tag!r} in session {self.id}",
                    grpc.StatusCode.ALREADY_EXISTS,
                )
            self._seen.add(key)
            self._inbox[key] = payload
            self.bytes_received += getattr(payload, "nbytes", None) or len(payload)
            self._cond.notify_all()

    def wait_message(self, sender: str, tag: str) -> Payload:
        """The payload ``sender`` sent under ``tag``; PeerFailure on deadline or abort."""
        if sender not in self.members:
            raise ProtocolError(f"{self.me} waits for {sender!r}, not a member of the session")
        key = (sender, tag)
        with self._cond:
            while key not in self._inbox:
                if self.status == Status.ABORTED:
                    blame = self.failed_node or sender
                    raise PeerFailure(
                        blame, f"session aborted while {self.me} waited for {tag!r} from "
                        f"{sender}: {self.abort_reason}")
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise PeerFailure(
                        sender, f"{sender} did not send {tag!r} to {self.me} before the "
                        "session deadline", deadline=True)
                self._cond.wait(left)
            return self._inbox.pop(key)

    def check_active(self) -> None:
        """Raise :class:`~smpc.errors.PeerFailure` if this session's role must stop: the
        session was aborted (naming the node whose failure caused it, when known) or its
        deadline passed.  The role's cancellation check (:meth:`smpc.transport.Transport.
        check_cancelled`) calls it between steps.
        """
        if self.status == Status.ABORTED:
            raise PeerFailure(
                self.failed_node or self.me, f"session {self.id} was aborted "
                f"({self.abort_reason}): {self.me} stopped its role")
        if self.expired:
            raise PeerFailure(
                self.me, f"the deadline of session {self.id} passed: {self.me} stopped its role",
                deadline=True)

    # ---------------------------------------------------------------- status

    def set_running(self) -> None:
        with self._cond:
            if self.status != Status.PREPARED:
                raise SessionError(
                    f"session {self.id} is {self.status.value}, not prepared",
                    grpc.StatusCode.FAILED_PRECONDITION,
                )
            self.status = Status.RUNNING

    def finish(self, outcome: Any) -> None:
        """Record the role's result (ignored if the session was aborted meanwhile)."""
        with self._cond:
            if self.status not in _FINAL:
                self.status = Status.DONE
                self.outcome = outcome
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """Record the role's error (ignored if the session was aborted meanwhile)."""
        with self._cond:
            if self.status not in _FINAL:
                self.status = Status.FAILED
                self.error = error
            self._cond.notify_all()

    def abort(self, reason: str, failed_node: str | None = None) -> bool:
        """Abort: wake every waiter with a PeerFailure. Returns False if already final."""
        with self._cond:
            if self.status in _FINAL:
                return False
            self.status = Status.ABORTED
            self.abort_reason = reason
            self.failed_node = failed_node or None
            self._inbox.clear()
            self._cond.notify_all()
            return True

    def wait_done(self, timeout: float | None) -> bool:
        """Block until the status is final or ``timeout`` passes; True if final."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.status not in _FINAL:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def release(self) -> None:
        """Drop the payloads and the job data (rows, model) held by this session."""
        with self._cond:
            self._inbox.clear()
            self.job = None


class SessionRegistry:
    """Thread-safe map of session id -> :class:`Session` of one node (module docstring)."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._retired: OrderedDict[str, str] = OrderedDict()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def create(
        self, session_id: str, members: Mapping[str, str], timeout: float, kind: str = "",
        job: Any = None,
    ) -> Session:
        """Register a new session; a reused id (active or freed) is ALREADY_EXISTS."""
        with self._lock:
            if session_id in self._sessions or session_id in self._retired:
                raise SessionError(
                    f"session id {session_id} was already used on {self.me}",
                    grpc.StatusCode.ALREADY_EXISTS,
                )
            s = Session(session_id, self.me, members, timeout, kind, job)
            self._sessions[session_id] = s
            return s

    def get(self, session_id: str) -> Session:
        """The active session; NOT_FOUND if unknown, FAILED_PRECONDITION if closed.

        A malformed id is INVALID_ARGUMENT and is never echoed back in full.
        """
        _check_id(session_id)
        with self._lock:
            s = self._sessions.get(session_id)
            if s is not None:
                return s
            reason = self._retired.get(session_id)
        if reason is not None:
            raise SessionError(
                f"session {session_id} is closed on {self.me} ({reason})",
                grpc.StatusCode.FAILED_PRECONDITION,
            )
        raise SessionError(f"unknown session {session_id} on {self.me}")

    def find(self, session_id: str) -> Session | None:
        """The active session or None (no error, also for a malformed id)."""
        with self._lock:
            return self._sessions.get(session_id)

    def free(self, session_id: str, reason: str = "finished") -> Session | None:
        """Remove a session and drop its data; returns it (or None if it was not active)."""
        with self._lock:
            s = self._sessions.pop(session_id, None)
            if s is None:
                return None
            self._retired[session_id] = reason
            while len(self._retired) > MAX_RETIRED:
                self._retired.popitem(last=False)
        s.release()
        return s

    def abort(self, session_id: str, reason: str, failed_node: str | None = None) -> bool:
        """Abort (waking its waiters) and free a session; False if it was not active."""
        s = self.find(session_id)
        if s is None:
            return False
        was_active = s.abort(reason, failed_node)
        self.free(session_id, f"aborted: {reason}" if was_active else s.status.value)
        return was_active

    def count(self) -> int:
        """Number of sessions held in memory."""
        with self._lock:
            return len(self._sessions)

    def running(self) -> int:
        """Number of sessions whose role is running."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.status == Status.RUNNING)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def reap(self, grace: float = REAP_GRACE_SECONDS) -> list[str]:
        """Abort and free every session whose deadline passed more than ``grace`` ago."""
        now = time.monotonic()
        with self._lock:
            late = [sid for sid, s in self._sessions.items() if now > s.deadline + grace]
        for sid in late:
            log.warning("session %s expired on %s: freed", sid, self.me)
            self.abort(sid, "deadline passed")
            with self._lock:
                if sid in self._retired:
                    self._retired[sid] = "expired"
        return late

    def start_reaper(self, interval: float = 1.0, grace: float = REAP_GRACE_SECONDS) -> None:
        """Run :meth:`reap` every ``interval`` seconds in a daemon thread."""
        if self._reaper is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reap(grace)
                except Exception:  # keep reaping whatever happens
                    log.exception("session reaper failed")

        self._reaper = threading.Thread(target=loop, name=f"reaper-{self.me}", daemon=True)
        self._reaper.start()

    def close(self, reason: str = "node shutting down") -> None:
        """Stop the reaper and abort every session."""
        self._stop.set()
        for sid in self.ids():
            self.abort(sid, reason)


def _check_id(session_id: str) -> None:
    """Refuse a malformed session id (8-64 of [A-Za-z0-9_-]) before any lookup."""
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        shown = str(session_id)[:24] + ("..." if len(str(session_id)) > 24 else "")
        raise SessionError(f"malformed session id {shown!r}", grpc.StatusCode.INVALID_ARGUMENT)

