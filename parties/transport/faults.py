"""Fault injection (**tests only -- never set** ``SMPC_FAULT`` **in production**).  The environment
variable ``SMPC_FAULT`` is read once, when a node starts (:func:`install_fault`); unset, it is a
no-op.  It makes that one node misbehave at one named stage, so that crashes, slow peers and
malformed messages can be tested on real processes:

``<stage>`` or ``kill:<stage>``      the node SIGKILLs itself at that stage (no clean-up runs);
``stall:<stage>:<seconds>``         the thread reaching the stage sleeps that long, then goes on
                                    (a slow peer; ``Health`` still answers);
``corrupt:<stage>``                 (``mid-protocol``, ``mid-deal`` only) the node sends its first
                                    protocol message one element (array) or one byte (bytes)
                                    short -- a wrong-length share from a session member;
``duplicate:<stage>``               (same stages) the node sends its first protocol message
                                    twice -- a replayed message.

Stages, by the kind of node that reaches them (:data:`FAULT_STAGES`):

* party -- ``on-prepare`` (the request passed every check, its charge is reserved (PENDING) and
  the session registered; the answer is not sent yet); ``after-charge`` (``Run`` received, the
  charge still PENDING, nothing sent); ``after-commit`` (the charge SPENT, ``Run`` not answered);
  ``on-run`` (``Run`` answered, the role started, before it sends anything); ``mid-protocol``
  (right after its role's first protocol message left); ``on-await`` (its role finished, every
  message it owed was sent; the coordinator's ``Await`` is not answered yet);
* dealer -- ``on-deal`` (``Deal`` received, before anything is dealt); ``mid-deal`` (after its
  first message -- the hello to the first owner -- left, before the other owner's hello, the
  owners' seeds and the correction);
* coordinator -- ``after-prepare`` (every participant prepared, before ``Run``); ``mid-run``
  (``Run`` went to every participant, before any result is collected).

A stage of another kind of node, or a malformed value, stops the node at start-up with one line.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np

from smpc.errors import InputError
from smpc.transport import Payload, Transport

log = logging.getLogger("smpc.faults")

FAULT_ENV = "SMPC_FAULT"


FAULT_STAGES: dict[str, tuple[str, ...]] = {
    "party": ("on-prepare", "after-charge", "after-commit", "on-run", "mid-protocol",
              "on-await"),
    "dealer": ("on-deal", "mid-deal"),
    "coordinator": ("after-prepare", "mid-run"),
}


FAULT_POINTS = tuple(s for stages in FAULT_STAGES.values() for s in stages)


_SEND_STAGES = ("mid-protocol", "mid-deal")   # stages reached by a send: may be corrupted


@dataclass(frozen=True)
class Fault:
    """A parsed ``SMPC_FAULT`` (module docstring): ``action`` kill | stall | corrupt |
    duplicate."""

    action: str
    stage: str
    seconds: float = 0.0

    @classmethod
    def parse(cls, text: str, kind: str) -> Fault:
        """``text`` for a node of ``kind`` (party | dealer | coordinator); InputError if it is
        malformed or names a stage this kind of node never reaches."""
        parts = text.strip().split(":")
        if len(parts) == 1:
            parts = ["kill", *parts]
        action, stage = parts[0], parts[1]
        stages = FAULT_STAGES.get(kind, ())
        ok = (action in ("kill", "corrupt", "duplicate") and len(parts) == 2) or \
            (action == "stall" and len(parts) == 3)
        sends = [s for s in stages if s in _SEND_STAGES]
        if not ok or stage not in stages or (action in ("corrupt", "duplicate")
                                             and stage not in sends):
            raise InputError(
                f"{FAULT_ENV}={text[:80]!r} is not a fault a {kind} node can inject (the forms: "
                "<stage>, kill:<stage>, stall:<stage>:<seconds>, corrupt:<stage>, "
                f"duplicate:<stage>; its stages: {', '.join(stages) or 'none'}; corrupt and "
                f"duplicate only at: {', '.join(sends) or 'none'})")
        seconds = 0.0
        if action == "stall":
            try:
                seconds = float(parts[2])
            except ValueError:
                seconds = -1.0
            if not 0 < seconds <= 3600:
                raise InputError(f"{FAULT_ENV}={text[:80]!r}: the stall must last between 0 and "
                                 "3600 seconds")
        return cls(action, stage, seconds)


_FAULT: Fault | None = None


def install_fault(kind: str) -> Fault | None:
    """Read ``SMPC_FAULT`` once, at node start (test-only; None and a no-op when unset)."""
    global _FAULT
    text = os.environ.get(FAULT_ENV, "")
    _FAULT = Fault.parse(text, kind) if text.strip() else None
    if _FAULT is not None:
        log.warning("%s=%s: test-only fault injection is armed in this %s node; never set it "
                    "in production", FAULT_ENV, text, kind)
    return _FAULT


def fault_point(name: str) -> None:
    """Test-only fault injection at stage ``name``: SIGKILL this process (``kill``) or sleep
    (``stall``) when the installed ``SMPC_FAULT`` names it; otherwise nothing."""
    f = _FAULT
    if f is None or f.stage != name or f.action not in ("kill", "stall"):
        return
    if f.action == "stall":
        log.warning("%s=stall:%s:%g: stalling here (test-only fault injection)", FAULT_ENV,
                    name, f.seconds)
        time.sleep(f.seconds)
        return
    log.warning("%s=%s: killing this process here (test-only fault injection)",
                FAULT_ENV, name)
    for h in logging.getLogger().handlers:
        h.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _FaultTransport(Transport):
    """Wraps a role's transport: the stage is reached right after the first send."""

    def __init__(self, inner: Transport, fault: Fault) -> None:
        super().__init__(inner.me)
        self.inner = inner
        self.fault = fault
        self._sent = False

    def _send(self, to: str, tag: str, payload: Payload) -> None:
        first, self._sent = not self._sent, True
        if first and self.fault.action == "corrupt":
            log.warning("%s=corrupt:%s: sending %r to %s one element short (test-only fault "
                        "injection)", FAULT_ENV, self.fault.stage, tag, to)
            payload = (payload.reshape(-1)[:-1] if isinstance(payload, np.ndarray)
                       else bytes(payload)[:-1])
        self.inner._send(to, tag, payload)
        if first and self.fault.action == "duplicate":
            log.warning("%s=duplicate:%s: sending %r to %s a second time (test-only fault "
                        "injection)", FAULT_ENV, self.fault.stage, tag, to)
            self.inner._send(to, tag, payload)
        if first:
            fault_point(self.fault.stage)

    def _recv(self, sender: str, tag: str) -> Payload:
        return self.inner._recv(sender, tag)

    def _check_cancelled(self) -> None:
        self.inner.check_cancelled()


def fault_transport(t: Transport, stage: str) -> Transport:
    """``t`` itself, unless the installed fault is at send stage ``stage`` (tests only)."""
    f = _FAULT
    if f is None or f.stage != stage:
        return t
    return _FaultTransport(t, f)
